"""The ``idp`` command: its subcommands, and ``idp check``'s reachability and certificate report."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from admin_helpers import storage
from conftest import Account, Server
from sqlalchemy import update
from sso_helpers import saml_service

from idp.store.models import SamlCertificate


def idp(server: Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``idp`` with the server's environment, some variables replaced."""
    return subprocess.run(
        [sys.executable, "-m", "idp", *args],
        env={**server.env, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def expire(server: Server, certificate_id: str, days: float) -> None:
    """Make a certificate expire ``days`` from now (negative: in the past)."""
    with storage(server) as session:
        session.execute(
            update(SamlCertificate)
            .where(SamlCertificate.id == certificate_id)
            .values(valid_until=datetime.now(UTC) + timedelta(days=days))
        )


def test_help_lists_every_subcommand(server: Server) -> None:
    result = idp(server, "--help")
    assert result.returncode == 0
    for command in (
        "serve",
        "migrate",
        "bootstrap",
        "users",
        "platform-keys",
        "provision",
        "check",
    ):
        assert f"  {command} " in result.stdout


def test_check_reports_reachable_stores_and_healthy_certificates(
    server: Server, owner: Account
) -> None:
    saml_service(server, owner.token, owner.org)
    result = idp(server, "check")
    assert result.returncode == 0, result.stdout
    assert "database: ok" in result.stdout
    assert "redis: ok" in result.stdout
    assert "none expires within 60 days" in result.stdout
    assert "WARNING" not in result.stdout
    assert "test-secret-key" not in result.stdout + result.stderr


def test_check_warns_of_certificates_expiring_within_60_days(
    server: Server, owner: Account
) -> None:
    soon, expired, later, healthy = (saml_service(server, owner.token, owner.org) for _ in range(4))
    certificate = {
        service.svc: server.api(
            "GET",
            f"/organizations/{owner.org}/services/{service.svc}/saml/certificate",
            owner.token,
        ).json()["id"]
        for service in (soon, expired, later)
    }
    expire(server, certificate[soon.svc], 12.5)
    expire(server, certificate[expired.svc], -3.5)
    expire(server, certificate[later.svc], 61)
    result = idp(server, "check")
    assert result.returncode == 0, result.stdout  # a warning, not a failure
    warnings = [line for line in result.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, result.stdout
    assert any(f"{owner.org}/{soon.svc}: WARNING expires in 12 days" in w for w in warnings)
    assert any(f"{owner.org}/{expired.svc}: WARNING expired 4 days ago" in w for w in warnings)
    assert not any(later.svc in w or healthy.svc in w for w in warnings)
    assert "database: ok" in result.stdout and "redis: ok" in result.stdout


def test_check_fails_when_redis_does_not_answer(server: Server) -> None:
    result = idp(server, "check", IDP_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "redis: FAILED" in result.stdout
    assert "database: ok" in result.stdout


def test_check_fails_when_the_database_does_not_answer(server: Server) -> None:
    result = idp(server, "check", IDP_DATABASE_URL="postgresql://idp:secret-pw@127.0.0.1:1/idp")
    assert result.returncode == 1
    assert "database: FAILED" in result.stdout
    assert "secret-pw" not in result.stdout + result.stderr
    assert "redis: ok" in result.stdout


def test_provision_needs_an_existing_directory(server: Server) -> None:
    result = idp(server, "provision", "/no/such/directory")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
