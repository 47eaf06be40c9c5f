"""Attacks found in the review of MFA, SP onboarding and upstream sign-in, each kept refused:
an OpenID Provider steering the client secret to a plain-http internal host, a certificate of
an unknown key type answering 500 (and stopping every tenant's metadata refresh), and a
deeply nested passkey credential answering 500."""

from __future__ import annotations

import base64
import http.server
import json
import re
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from admin_helpers import new_service
from conftest import Account, Server, free_port, unique_slug
from sp_metadata_helpers import onelogin_metadata, pem

from idp.client import SsoClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
RSA_OID = bytes.fromhex("06092a864886f70d010101")  # rsaEncryption
UNKNOWN_OID = bytes.fromhex("06092a864886f70d01017f")  # an algorithm nobody knows


def unknown_key_certificate() -> str:
    """An RSA certificate whose key names an algorithm cryptography does not know."""
    body = "".join(pem("sp").strip().splitlines()[1:-1])
    der = base64.b64decode(body).replace(RSA_OID, UNKNOWN_OID, 1)
    lines = textwrap.wrap(base64.b64encode(der).decode(), 64)
    return "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----", ""])


@pytest.fixture(scope="module")
def rogue_issuer() -> Iterator[tuple[str, list[str]]]:
    """A loopback 'OpenID Provider' whose token endpoint is plain http to another host; the
    requests it would have received are noted (none may come)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            document = {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": "http://192.0.2.2/internal/token",
                "jwks_uri": f"{issuer}/jwks",
            }
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield issuer, seen
    httpd.shutdown()


def test_a_provider_cannot_send_the_secret_to_a_plain_http_host(
    server: Server, owner: Account, rogue_issuer: tuple[str, list[str]]
) -> None:
    issuer, seen = rogue_issuer
    sso = SsoClient(server.url, token=owner.token)
    slug = unique_slug("rogue")
    sso.identity_providers.put(
        owner.org, slug, name="Rogue", issuer=issuer, client_id="c", client_secret="topsecret"
    )
    browser = requests.Session()
    page = browser.get(f"{server.url}/login", params={"org": owner.org}, timeout=10)
    token = CSRF.search(page.text)
    assert token is not None and "Continue with Rogue" in page.text
    started = browser.post(
        f"{server.url}/oidc/start",
        data={"csrf_token": token.group(1), "org": owner.org, "provider": slug},
        allow_redirects=False,
        timeout=10,
    )
    assert started.status_code == 502, started.text  # the provider is not used at all
    assert "token_endpoint" in started.text and "Location" not in started.headers
    assert seen == ["/.well-known/openid-configuration"]
    sso.identity_providers.delete(owner.org, slug)


def test_a_certificate_of_an_unknown_key_type_is_refused_not_a_500(
    server: Server, owner: Account
) -> None:
    sso = SsoClient(server.url, token=owner.token)
    svc = new_service(sso, owner.org)["slug"]
    strange = unknown_key_certificate()
    path = f"/organizations/{owner.org}/services/{svc}/saml"
    base = {
        "enabled": True,
        "entity_id": "https://sp.example.test",
        "acs_url": "https://sp.example.test/acs",
        "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "attribute_mapping": {"email": "mail"},
        "sign_assertions": True,
        "sign_response": True,
    }
    sent = server.api("PUT", path, owner.token, json={**base, "sp_encryption_certificate": strange})
    assert sent.status_code == 400, sent.text
    assert "sp_encryption_certificate" in sent.json()["details"]
    # in metadata, a key the IdP cannot encrypt to is left out, and the SP is connected
    metadata = onelogin_metadata(None, strange)
    fields = {k: v for k, v in base.items() if k not in ("entity_id", "acs_url")}
    imported = server.api("PUT", path, owner.token, json={**fields, "sp_metadata": metadata})
    assert imported.status_code == 200, imported.text
    assert server.api("GET", path, owner.token).json()["sp_encryption_certificate"] is None


@pytest.mark.parametrize("route", ["/login/passkey"])
def test_a_deeply_nested_passkey_credential_is_a_refusal_not_a_500(
    server: Server, owner: Account, route: str
) -> None:
    browser = requests.Session()
    page = browser.get(f"{server.url}/login", params={"org": owner.org}, timeout=10)
    token = CSRF.search(page.text)
    assert token is not None
    form = {"csrf_token": token.group(1), "org": owner.org, "credential": "[" * 15000}
    answer = browser.post(f"{server.url}{route}", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 401, answer.text[:300]
