"""Upstream OpenID Connect sign-in helpers: a real OpenID Provider, and a browser that signs in
through it.

The provider is the npm package oidc-provider (OpenID Certified), run by node from
tests/oidc_op (``make oidc-op`` installs it there with ``npm ci``) on a free port of
127.0.0.1, with the issuer ``http://localhost:PORT`` (another host than the IdP's 127.0.0.1, so
the two keep their cookies apart as two sites do). tests/oidc_op/server.mjs has no login UI:
its interaction route signs in the account named by ``?login=SUB``, and its ``/_admin`` routes
let a test define accounts and clients, rotate the signing key and change the next ID token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import lxml.html
import requests
from conftest import Server, free_port, unique_slug
from sso_helpers import Browser

OP_DIR = Path(__file__).parent / "oidc_op"
STARTUP_TIMEOUT_S = 30
MAX_HOPS = 10


@dataclass
class OpClient:
    """A client registered at the OpenID Provider."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def registration(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
            "token_endpoint_auth_method": "client_secret_basic",
        }


@dataclass
class OpAccount:
    """An account at the OpenID Provider: what its ID tokens say."""

    sub: str
    email: str
    email_verified: bool = True
    amr: list[str] | None = None
    acr: str | None = None
    name: str | None = None

    def claims(self) -> dict[str, Any]:
        body: dict[str, Any] = {"email": self.email, "email_verified": self.email_verified}
        for name in ("amr", "acr", "name"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


@dataclass
class OpenIdProvider:
    """A running tests/oidc_op/server.mjs."""

    issuer: str
    admin_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: dict[str, OpClient] = field(default_factory=dict)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the provider's test controls; their JSON answer."""
        response = requests.request(
            method,
            f"{self.issuer}/_admin{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
            **kwargs,
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def discovery(self) -> dict[str, Any]:
        response = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def account(
        self,
        email: str | None = None,
        *,
        sub: str | None = None,
        email_verified: bool = True,
        amr: list[str] | None = None,
        acr: str | None = None,
        name: str | None = None,
    ) -> OpAccount:
        """Define (or redefine, by ``sub``) an account: the person an ID token will be about."""
        account = OpAccount(
            sub or unique_slug("sub"),
            email or f"{unique_slug('up')}@corp.test",
            email_verified,
            ["pwd"] if amr is None else amr,
            acr,
            name,
        )
        self.admin("PUT", f"/accounts/{account.sub}", json=account.claims())
        return account

    def register(self, *clients: OpClient) -> None:
        """Add clients to the registered ones (the provider is rebuilt with them all)."""
        for client in clients:
            self.clients[client.client_id] = client
        registrations = [client.registration() for client in self.clients.values()]
        self.admin("PUT", "/clients", json={"clients": registrations})

    def rotate(self) -> tuple[str, str]:
        """Sign with a new key from now on, the JWKS listing only it: (new kid, old kid)."""
        answer = self.admin("POST", "/rotate")
        return answer["kid"], answer["previous_kid"]

    def jwks_kids(self) -> list[str]:
        response = requests.get(self.discovery()["jwks_uri"], timeout=10)
        return [key["kid"] for key in response.json()["keys"]]

    def change_next_id_token(
        self,
        claims: dict[str, Any] | None = None,
        token: str | None = None,
        signer: str = "current",
    ) -> None:
        """The next ID token the token endpoint answers: with these claims changed (None
        removes one), signed by ``signer`` ("current": the provider's own key;
        "foreign-same-kid" / "foreign-new-kid": a key it never published; "none": unsigned;
        "hs256": HMAC with the client's secret), or replaced by ``token``."""
        body = {"token": token} if token else {"claims": claims or {}, "signer": signer}
        self.admin("POST", "/next-id-token", json=body)

    def clear_changes(self) -> None:
        self.admin("DELETE", "/next-id-token")

    def interactions(self) -> list[dict[str, Any]]:
        """Every interaction so far: {uid, prompt, reasons, params} (params as the provider
        received them from the authorization request)."""
        found: list[dict[str, Any]] = self.admin("GET", "/interactions")["interactions"]
        return found

    def id_token_for(self, client: OpClient, account: OpAccount, nonce: str) -> str:
        """A genuine ID token for ``client`` about ``account``: the code flow with PKCE, as that
        client itself would run it (a fresh browser, so a fresh sign-in)."""
        verifier = secrets.token_urlsafe(48)
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(16),
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        metadata = self.discovery()
        session = requests.Session()
        target = at_provider(
            session,
            f"{metadata['authorization_endpoint']}?{urlencode(query)}",
            account.sub,
            client.redirect_uris[0],
        )
        code = parse_qs(urlsplit(target).query)["code"][0]
        answer = requests.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": client.redirect_uris[0],
                "code_verifier": verifier,
            },
            auth=(client.client_id, client.client_secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["id_token"]
        return token

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWT, unverified (the test's own look at a token)."""
    return _jwt_part(token, 1)


def jwt_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWT."""
    return _jwt_part(token, 0)


def _jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def start_provider(directory: Path, clients: list[OpClient]) -> OpenIdProvider:
    """Start server.mjs on a free port and wait until its discovery document answers."""
    if shutil.which("node") is None:
        raise RuntimeError("node is needed for the upstream sign-in tests (Node.js 20 or later)")
    if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"oidc-provider is not installed in {OP_DIR}: run `make oidc-op` "
            f"(npm ci --prefix {OP_DIR})"
        )
    port = free_port()
    issuer = f"http://localhost:{port}"
    admin_token = secrets.token_urlsafe(24)
    config = {
        "host": "127.0.0.1",
        "port": port,
        "issuer": issuer,
        "admin_token": admin_token,
        "clients": [client.registration() for client in clients],
        "accounts": {},
    }
    config_path = directory / "op.json"
    config_path.write_text(json.dumps(config))
    log_path = directory / "op.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["node", str(OP_DIR / "server.mjs"), str(config_path)],
            cwd=OP_DIR,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    provider = OpenIdProvider(
        issuer, admin_token, process, log_path, {c.client_id: c for c in clients}
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OpenID Provider exited:\n{provider.log()}")
        try:
            answer = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1)
            if answer.status_code == 200 and answer.json().get("issuer") == issuer:
                return provider
        except (requests.ConnectionError, requests.Timeout):  # still booting
            pass
        time.sleep(0.1)
    stop_provider(provider)
    raise RuntimeError(f"the OpenID Provider did not start:\n{provider.log()}")


def stop_provider(provider: OpenIdProvider) -> None:
    provider.process.terminate()
    try:
        provider.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        provider.process.kill()
        provider.process.wait(timeout=10)


# The IdP's side -----------------------------------------------------------------------------------


def callback_url(server: Server) -> str:
    """The redirect URI the IdP asks providers to register."""
    return f"{server.url}/oidc/callback"


def put_provider(
    server: Server,
    token: str,
    org: str,
    op: OpenIdProvider,
    client: OpClient,
    slug: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Configure ``op`` (through ``client``) as an upstream provider of ``org``; the answer."""
    slug = slug or unique_slug("op")
    body = {
        "name": f"Corp {slug}",
        "issuer": op.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        **fields,
    }
    response = server.api(
        "PUT", f"/organizations/{org}/identity-providers/{slug}", token, json=body
    )
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def provider_forms(page: str) -> dict[str, dict[str, str]]:
    """The login page's "Continue with ..." forms that POST to /oidc/start: their hidden fields,
    by provider slug."""
    forms: dict[str, dict[str, str]] = {}
    for form in lxml.html.fromstring(page).forms:
        if not (form.action or "").endswith("/oidc/start"):
            continue
        assert (form.method or "").upper() == "POST", lxml.html.tostring(form)
        fields = {
            str(node.get("name")): str(node.get("value") or "")
            for node in form.inputs
            if node.tag == "input" and node.get("type") == "hidden" and node.get("name")
        }
        forms[fields.get("provider", "")] = fields
    return forms


@dataclass
class Upstream:
    """One trip through the provider: where the IdP sent the browser, and where it came back."""

    start: requests.Response  # the IdP's answer to POST /oidc/start (not followed)
    authorize_url: str  # the authorization request as the browser sent it to the provider
    callback: str  # the redirect back to the IdP, as the provider answered it

    @property
    def query(self) -> dict[str, str]:
        """The authorization request's parameters as the IdP wrote them."""
        return query_of(self.start.headers["Location"])


def query_of(url: str) -> dict[str, str]:
    """A URL's query parameters (the first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def start_upstream(browser: Browser, page: requests.Response, slug: str) -> requests.Response:
    """Press "Continue with ..." for provider ``slug`` on the login page ``page``; the IdP's
    answer, not followed."""
    forms = provider_forms(page.text)
    assert slug in forms, (sorted(forms), page.text[:2000])
    return browser.session.post(
        f"{browser.server.url}/oidc/start", data=forms[slug], allow_redirects=False, timeout=10
    )


def at_provider(session: requests.Session, url: str, login: str | None, stop_at: str) -> str:
    """Follow the provider's redirects from ``url`` as a browser does, signing in as ``login``
    when the provider asks for a sign-in; the first redirect to ``stop_at`` (not followed)."""
    for _ in range(MAX_HOPS):
        if urlsplit(url).path.startswith("/interaction/") and login is not None:
            url = with_query(url, login=login)
        answer = session.get(url, allow_redirects=False, timeout=10)
        assert answer.status_code in (302, 303), (url, answer.status_code, answer.text[:2000])
        url = urljoin(url, answer.headers["Location"])
        if url.startswith(stop_at):
            return url
    raise AssertionError(f"no redirect to {stop_at} within {MAX_HOPS} hops: {url}")


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters set (replaced when present)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def to_provider(
    browser: Browser,
    page: requests.Response,
    slug: str,
    account: OpAccount | None,
    tamper: dict[str, str] | None = None,
) -> Upstream:
    """From the login page to the provider and back to the IdP's callback (not yet opened).

    ``tamper`` changes authorization request parameters on the way to the provider, as a
    meddling browser or network would: the provider then sees another challenge or nonce.
    """
    started = start_upstream(browser, page, slug)
    assert started.status_code == 303, (started.status_code, started.text[:2000])
    url = started.headers["Location"]
    if tamper:
        url = with_query(url, **tamper)
    back = at_provider(
        browser.session,
        url,
        account.sub if account else None,
        callback_url(browser.server),
    )
    return Upstream(started, url, back)


def back_at_idp(browser: Browser, upstream: Upstream) -> requests.Response:
    """Open the provider's redirect to the IdP's callback, following the IdP's redirects."""
    return browser.get(upstream.callback)


def sign_in_upstream(
    browser: Browser,
    page: requests.Response,
    slug: str,
    account: OpAccount,
    tamper: dict[str, str] | None = None,
) -> requests.Response:
    """The whole trip: "Continue with ..." on ``page``, signed in at the provider as
    ``account``, back at the IdP; the IdP's last answer (the SAMLResponse form when ``page``
    came from an SSO request, else the "You are signed in" page or a refusal)."""
    return back_at_idp(browser, to_provider(browser, page, slug, account, tamper))
