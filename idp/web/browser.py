"""The browser side of the IdP: session cookie, CSRF tokens, client address, page headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from flask import Response, request

from idp.runtime import runtime
from idp.sessions import BrowserSession

SESSION_COOKIE = "idp_session"
CSRF_COOKIE = "idp_csrf"
AUTOSUBMIT_SCRIPT = "document.getElementById('saml-form').submit();"
PASSKEY_SCRIPT = (Path(__file__).parent / "passkeys.js").read_text()


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    f"script-src '{_script_hash(AUTOSUBMIT_SCRIPT)}' '{_script_hash(PASSKEY_SCRIPT)}'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


BASE_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
PAGE_HEADERS = (
    *BASE_HEADERS,
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
)


def current_session() -> BrowserSession | None:
    """The live IdP session of this browser, if any."""
    return runtime().store.load_session(request.cookies.get(SESSION_COOKIE))


def set_session_cookie(response: Response, session: BrowserSession) -> None:
    """Send the session cookie: HttpOnly; Secure and SameSite=None on https, Lax on http."""
    https = runtime().settings.is_https
    response.set_cookie(
        SESSION_COOKIE,
        session.sid or "",
        httponly=True,
        secure=https,
        samesite="None" if https else "Lax",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Make the browser forget its session cookie."""
    https = runtime().settings.is_https
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=https, httponly=True, samesite="None" if https else "Lax"
    )


def _csrf_for(seed: str) -> str:
    secret = runtime().settings.secret_key
    return hmac.new(secret, b"csrf\0" + seed.encode(), hashlib.sha256).hexdigest()


def csrf_token() -> tuple[str, str | None]:
    """The token for a form, and a new CSRF cookie value when the browser has none."""
    seed = request.cookies.get(CSRF_COOKIE)
    if seed and len(seed) <= 128:
        return _csrf_for(seed), None
    seed = secrets.token_urlsafe(32)
    return _csrf_for(seed), seed


def set_csrf_cookie(response: Response, seed: str | None) -> None:
    """Send a new CSRF cookie when csrf_token() made one."""
    if seed is not None:
        https = runtime().settings.is_https
        response.set_cookie(CSRF_COOKIE, seed, httponly=True, secure=https, samesite="Lax")


def csrf_seed() -> str | None:
    """This browser's CSRF cookie value (what binds its forms and passkey challenges)."""
    seed = request.cookies.get(CSRF_COOKIE)
    return seed if seed and len(seed) <= 128 else None


def csrf_ok() -> bool:
    """True when the form's csrf_token matches this browser's CSRF cookie."""
    seed = request.cookies.get(CSRF_COOKIE)
    token = request.form.get("csrf_token", "")
    if not seed or len(seed) > 128:
        return False
    return hmac.compare_digest(token.encode(), _csrf_for(seed).encode())


def client_address() -> str:
    """The client's IP address (already corrected by ProxyFix behind trusted proxies)."""
    return request.remote_addr or "unknown"


def harden(response: Response) -> Response:
    """Headers for every browser-facing page: no caching of HTML, no referrer, strict CSP."""
    headers = response.headers
    if response.mimetype == "text/html":
        headers["Cache-Control"] = "no-store"
        headers.extend(PAGE_HEADERS)
    else:
        headers.extend(BASE_HEADERS)
    if runtime().settings.is_https:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return response
