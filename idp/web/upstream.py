"""Upstream sign-in: "Continue with {provider}" (POST /oidc/start) and the provider's answer
(GET /oidc/callback).

The flow is the authorization code flow with PKCE (S256), ``state`` and ``nonce``. What the
callback needs (the organization, provider, nonce, code verifier and pending SSO request) waits
in Redis under the state, spent at the first answer; the answer is bound to the browser that
started it by a random HttpOnly cookie whose digest is kept with it. After the ID token is
verified and the identity bound to an account, the pending SSO request goes on exactly as
after a password.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask import Blueprint, Response, redirect, request
from sqlalchemy.orm import Session

from idp import audit, oidc_client
from idp.domain import identity_providers as upstreams
from idp.domain import organizations
from idp.domain.errors import Forbidden
from idp.runtime import runtime
from idp.store.models import Account, IdentityProvider, Organization
from idp.web import browser, second_factor
from idp.web.pages import Refused
from idp.web.sso import remember

bp = Blueprint("upstream", __name__)

BINDING_COOKIE = "idp_oidc"
WAIT_TTL_S = 600
EXPIRED = "This sign-in took too long or was already completed. Start again."


@bp.post("/oidc/start")
def start() -> Response:
    """Send the browser to the organization's provider to sign in there."""
    rt = runtime()
    if not browser.csrf_ok():
        raise Refused(400, "csrf", "This form expired. Reload the page and try again.")
    pending_token = request.form.get("pending") or None
    pending = rt.store.peek_pending(pending_token)
    slug = pending["org"] if pending else request.form.get("org", "").strip().lower()[:63]
    org, provider = _provider(slug, request.form.get("provider", "")[:63])
    remember(None, anonymous=True)  # the state kept below counts against the address
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    force = bool(pending and pending["force_authn"])
    try:
        url = oidc_client.start(_client(provider), state, nonce, verifier, force).url
    except oidc_client.UpstreamError as exc:
        raise Refused(502, "upstream", f"{provider.name} cannot be reached: {exc}") from None
    binding = secrets.token_urlsafe(32)
    waiting = {
        "org": org.slug,
        "provider_id": provider.id,
        "nonce": nonce,
        "code_verifier": verifier,
        "pending": pending_token if pending else None,
        "next": "account" if request.form.get("next") == "account" else None,
        "binding": _digest(binding),
    }
    rt.store.hold("oidc:" + state, waiting, WAIT_TTL_S)
    response: Response = redirect(url, code=303)  # type: ignore[assignment]
    https = rt.settings.is_https
    response.set_cookie(
        BINDING_COOKIE, binding, httponly=True, secure=https, samesite="Lax", max_age=WAIT_TTL_S
    )
    return response


@bp.get("/oidc/callback")
def callback() -> Response:
    """Verify the provider's answer, bind the identity to an account, sign in, go on."""
    rt = runtime()
    waiting = _waiting(request.args.get("state", ""))
    org, provider = _provider(waiting["org"], None, waiting["provider_id"])
    if "error" in request.args or "code" not in request.args:
        reason = request.args.get("error", "no code")[:100]
        raise Refused(400, "upstream", f"{provider.name} did not sign you in ({reason}).")
    client = _client(provider)
    try:
        claims = oidc_client.exchange(
            client,
            request.args["code"][:2048],
            waiting["code_verifier"],
            waiting["nonce"],
            rt.settings.clock_skew,
        )
    except oidc_client.UpstreamError as exc:
        _refused(org, provider, str(exc))
        message = f"The answer of {provider.name} could not be verified."
        raise Refused(400, "upstream", message) from None
    account, how = _bind(org, provider, claims)
    authn_class, multi_factor = upstreams.upstream_class(claims.get("acr"), claims.get("amr"))
    session = rt.store.sign_in(
        browser.current_session(),
        org.id,
        account.id,
        account.generation,
        mfa=multi_factor,
        via=provider.id,
        authn_class=authn_class,
    )
    _queue(org, provider, account, "oidc.login.success", {"binding": how, "class": authn_class})
    response = second_factor.go_on(org.slug, waiting["pending"], waiting["next"])
    browser.set_session_cookie(response, session)
    response.delete_cookie(BINDING_COOKIE)
    return response


def _waiting(state: str) -> dict[str, Any]:
    """What the flow of this state kept, spent now, when this browser started it."""
    rt = runtime()
    name = "oidc:" + state[:128]
    waiting = rt.store.held(name) if state else None
    if waiting is None:
        raise Refused(400, "pending_expired", EXPIRED)
    cookie = request.cookies.get(BINDING_COOKIE, "")
    if not secrets.compare_digest(_digest(cookie), waiting["binding"]):  # not spent by others
        raise Refused(400, "upstream_binding", "This answer belongs to another browser. " + EXPIRED)
    rt.store.release(name)
    return waiting


def _provider(
    org_slug: str, slug: str | None, provider_id: str | None = None
) -> tuple[Organization, IdentityProvider]:
    """The organization and its enabled provider (by slug, or by id); 404 page otherwise."""
    with runtime().db.read() as session:
        org = organizations.by_slug(session, org_slug) if org_slug else None
        provider = _find(session, org, slug, provider_id) if org is not None else None
    if org is None or provider is None or not provider.enabled:
        raise Refused(404, "unknown_provider", "There is no such sign-in provider here.")
    return org, provider


def _find(
    session: Session, org: Organization, slug: str | None, provider_id: str | None
) -> IdentityProvider | None:
    if provider_id is not None:
        provider = session.get(IdentityProvider, provider_id)
        return provider if provider is not None and provider.organization_id == org.id else None
    return next((p for p in upstreams.listing(session, org) if p.slug == slug), None)


def _client(provider: IdentityProvider) -> oidc_client.Client:
    rt = runtime()
    return oidc_client.Client(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=upstreams.client_secret(provider, rt.settings),
        scopes=tuple(provider.scopes),
        redirect_uri=rt.settings.base_url.rstrip("/") + "/oidc/callback",
    )


def _bind(org: Organization, provider: IdentityProvider, claims: Any) -> tuple[Account, str]:
    """The account the verified identity reaches (linked or made on the way), or a 403 page."""
    who = upstreams.Upstream(
        subject=str(claims["sub"]),
        email=_email(claims.get("email")),
        email_verified=claims.get("email_verified") is True,
        name=_text(claims.get("name")),
        given_name=_text(claims.get("given_name")),
        family_name=_text(claims.get("family_name")),
    )
    try:
        with runtime().db.write() as session:
            account, how = upstreams.bind(session, org, provider, who)
            if how != "returning":
                upstreams.record_binding(session, org, provider, account, how)
    except Forbidden as exc:
        _refused(org, provider, exc.message)
        raise Refused(403, "upstream_refused", exc.message) from None
    return account, how


def _text(value: object) -> str | None:
    """A profile claim as stored: one line of printable text, at most 200 characters."""
    if not isinstance(value, str):
        return None
    return " ".join("".join(ch for ch in value if ch.isprintable()).split())[:200] or None


def _email(value: object) -> str | None:
    """An email claim the IdP can store and compare; anything else counts as none."""
    if not isinstance(value, str) or len(value) > 320 or "@" not in value:
        return None
    return value if value.isprintable() and " " not in value else None


def _refused(org: Organization, provider: IdentityProvider, reason: str) -> None:
    _queue(org, provider, None, "oidc.refused", {"reason": reason[:300]})


def _queue(
    org: Organization,
    provider: IdentityProvider,
    account: Account | None,
    action: str,
    after: dict[str, Any],
) -> None:
    actor = audit.Actor("user", account.id) if account is not None else audit.Actor("anonymous")
    event = audit.queued(
        actor,
        action,
        "login",
        organization_id=org.id,
        user_id=account.id if account is not None else None,
        after={"provider": provider.slug, "address": browser.client_address(), **after},
    )
    audit.flush_when_due(runtime(), runtime().store.queue_event(event))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
