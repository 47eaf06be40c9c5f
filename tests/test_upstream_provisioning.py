"""Upstream identity providers from provisioning files and through the Python client: the
same state as the API, secrets only from where the file points, never shown back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import Account, Server, unique_slug

from idp.client import SsoApiError, SsoClient

ISSUER = "https://login.example.com"


def write(directory: Path, org: str, **extra: str) -> Path:
    lines = [
        "[organization]",
        f'slug = "{org}"',
        'name = "Provisioned"',
        "",
        "[[identity_providers]]",
        'slug = "corp"',
        'name = "Corp Login"',
        f'issuer = "{ISSUER}"',
        'client_id = "idp-client"',
        'client_secret_env = "CORP_OIDC_SECRET"',
        'allowed_domains = ["Example.com"]',
        "jit = true",
        *(f'{key} = "{value}"' for key, value in extra.items()),
    ]
    directory.mkdir(exist_ok=True)
    path = directory / f"{org}.toml"
    path.write_text("\n".join(lines) + "\n")
    return directory


def test_a_file_declares_a_provider_once_and_the_client_reads_it(
    server: Server, owner: Account, tmp_path: Path
) -> None:
    org = unique_slug("prov")
    directory = write(tmp_path / "files", org)
    env = {**server.env, "CORP_OIDC_SECRET": "s3cret-value"}
    with_secret = dataclasses.replace(server, env=env)
    first = with_secret.cli("provision", str(directory))
    assert "identity provider corp created" in first.stdout, first.stdout
    again = with_secret.cli("provision", str(directory))
    assert "identity provider corp" not in again.stdout  # nothing changed: nothing written

    sso = SsoClient(server.url, token=owner.token)
    provider = sso.identity_providers.get(org, "corp")
    assert provider == {
        "slug": "corp",
        "name": "Corp Login",
        "issuer": ISSUER,
        "client_id": "idp-client",
        "has_client_secret": True,
        "scopes": ["openid", "email", "profile"],
        "allowed_domains": ["example.com"],
        "jit": True,
        "default_role": "member",
        "enabled": True,
        "redirect_uri": f"{server.url}/oidc/callback",
    }
    assert "s3cret-value" not in str(sso.identity_providers.list(org))
    assert "s3cret-value" not in server.log() + first.stdout + first.stderr

    sso.identity_providers.put(org, "corp", name="Corp", issuer=ISSUER, client_id="idp-client")
    assert sso.identity_providers.get(org, "corp")["has_client_secret"] is True  # kept
    sso.identity_providers.delete(org, "corp")
    try:
        sso.identity_providers.get(org, "corp")
    except SsoApiError as error:
        assert error.status == 404
    else:
        raise AssertionError("a deleted provider is still there")


def test_a_file_naming_a_missing_secret_variable_is_refused(
    server: Server, tmp_path: Path
) -> None:
    org = unique_slug("prov")
    directory = write(tmp_path / "files", org)
    done = server.cli("provision", str(directory), check=False)
    assert done.returncode != 0
    assert "client_secret_env: CORP_OIDC_SECRET is not set" in done.stdout + done.stderr
