"""The OpenID Connect relying party for upstream sign-in, with Authlib and its JOSE library
joserfc (no Flask, no JWT code of our own): discovery, the authorization URL (code flow, PKCE
S256, state, nonce), the code exchange, and the ID token's verification.

Provider metadata and JWKS are read with the same hardened fetch as SP metadata (https, or
http to loopback; a size limit; a timeout) and cached per process for CACHE_S; an ID token
signed with a key id the cached JWKS lacks fetches the JWKS again once (key rotation).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from idp.metadata_fetch import fetch_metadata
from idp.saml.sp_metadata import MetadataError
from idp.saml.urls import endpoint_url_problem

CACHE_S = 3600
TIMEOUT_S = 10
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


class UpstreamError(Exception):
    """The OpenID Provider cannot be used, or its answer is not to be trusted."""


@dataclass(frozen=True)
class Client:
    """One organization's registration at an OpenID Provider."""

    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    redirect_uri: str


@dataclass(frozen=True)
class Start:
    """What the browser is sent to, and what to keep until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _json(url: str, fresh: bool = False) -> dict[str, Any]:
    """A JSON document from a URL, cached for CACHE_S (``fresh``: read it again)."""
    with _cache_lock:
        cached = _cache.get(url)
    if cached is not None and not fresh and time.monotonic() - cached[0] < CACHE_S:
        return cached[1]
    try:
        document = json.loads(fetch_metadata(url, timeout_s=TIMEOUT_S))
    except (MetadataError, ValueError) as exc:
        raise UpstreamError(f"{url}: {exc}") from None
    if not isinstance(document, dict):
        raise UpstreamError(f"{url} is not a JSON object")
    with _cache_lock:
        _cache[url] = (time.monotonic(), document)
    return document


def discovery(issuer: str) -> dict[str, Any]:
    """The provider's metadata; its ``issuer`` must be the configured one exactly."""
    document = _json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if document.get("issuer") != issuer:
        raise UpstreamError("the provider's metadata names another issuer")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        url = document.get(name)
        if not isinstance(url, str):
            raise UpstreamError(f"the provider's metadata has no {name}")
        problem = endpoint_url_problem(url)  # the issuer's rule: https, or http on loopback
        if problem:
            raise UpstreamError(f"the provider's {name} {problem}")
    return document


def start(client: Client, state: str, nonce: str, code_verifier: str, force: bool) -> Start:
    """The authorization URL: code flow with PKCE S256, state and nonce (prompt=login when the
    SP asked for a fresh sign-in)."""
    endpoint = discovery(client.issuer)["authorization_endpoint"]
    extra = {"prompt": "login"} if force else {}
    session = _session(client)
    url, _ = session.create_authorization_url(
        endpoint, state=state, nonce=nonce, code_verifier=code_verifier, **extra
    )
    return Start(url, state, nonce, code_verifier)


def exchange(client: Client, code: str, code_verifier: str, nonce: str, leeway: int) -> Any:
    """Exchange the code for tokens and return the verified ID token's claims."""
    metadata = discovery(client.issuer)
    session = _session(client)
    try:
        token = session.fetch_token(
            metadata["token_endpoint"],
            code=code,
            code_verifier=code_verifier,
            timeout=TIMEOUT_S,
            allow_redirects=False,  # the secret goes to the published endpoint only
        )
    except Exception as exc:  # Authlib's OAuth errors, requests' network errors
        raise UpstreamError(f"the code exchange failed: {exc.__class__.__name__}") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise UpstreamError("the provider answered no ID token")
    return verify(client, metadata, id_token, nonce, leeway)


def verify(client: Client, metadata: dict[str, Any], id_token: str, nonce: str, leeway: int) -> Any:
    """The ID token's claims when its signature (by the provider's JWKS), issuer, audience,
    authorized party, times and nonce are right; UpstreamError otherwise."""
    options = {
        "iss": {"essential": True, "value": client.issuer},
        "aud": {"essential": True, "value": client.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    params = {"nonce": nonce, "client_id": client.client_id}
    for fresh in (False, True):
        try:
            keys = KeySet.import_key_set(_json(metadata["jwks_uri"], fresh=fresh))  # type: ignore[arg-type]
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            claims = CodeIDToken(token.claims, token.header, options, params)
            claims.validate(now=int(time.time()), leeway=leeway)
        except InvalidKeyIdError:  # no key with the token's kid: the provider may have rotated
            continue
        except (JoseError, ValueError) as exc:
            raise UpstreamError(f"the ID token is not valid: {exc}") from None
        return claims
    raise UpstreamError("the ID token is signed with a key the provider does not publish")


def _session(client: Client) -> OAuth2Session:
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        scope=" ".join(client.scopes),
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
    )
    session.trust_env = False
    return session
