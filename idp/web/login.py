"""GET/POST /login and POST /logout: the IdP's own sign-in page.

A sign-in is to one organization: the one of the pending SSO request, or the one named by
``?org=`` (or typed into the form when neither is known). Operators do not sign in here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request

from idp.domain import identity_providers as upstreams
from idp.domain import login as logins
from idp.domain import organizations, passkeys
from idp.domain import sso as decision
from idp.domain.errors import Throttled, WrongCredentials
from idp.metrics import LOGINS
from idp.runtime import runtime
from idp.saml.constants import NAMEID_EMAIL
from idp.store.models import Account, IdentityProvider
from idp.web import browser, second_factor
from idp.web.pages import error_page, message_page

bp = Blueprint("login", __name__)

WRONG_CREDENTIALS = "The email or password is not right. Check them and try again."
MAX_FIELD = 1024


def _page(status: int = 200, **context: Any) -> Response:
    """The login form, with the passkey button bound to this browser."""
    token, seed = browser.csrf_token()
    options = passkeys.authentication_options(
        runtime(), second_factor.login_binding(seed or browser.csrf_seed() or ""), []
    )
    response = Response(
        render_template(
            "login.html",
            csrf_token=token,
            upstreams=_upstreams(context.get("org")),
            passkey_options=options,
            passkey_script=browser.PASSKEY_SCRIPT,
            **context,
        ),
        status=status,
        mimetype="text/html",
    )
    browser.set_csrf_cookie(response, seed)
    return response


def _upstreams(org_slug: str | None) -> list[IdentityProvider]:
    """The organization's enabled upstream providers, for its "Continue with" buttons."""
    if not org_slug:
        return []
    with runtime().db.read() as session:
        org = organizations.by_slug(session, org_slug[:63])
        return [] if org is None else upstreams.listing(session, org, enabled_only=True)


def _pending(token: str | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The pending SSO request of a token, and the page context that names its service."""
    pending = runtime().store.peek_pending(token)
    if pending is None:
        return None, {}
    context = {
        "pending": token,
        "org": pending["org"],
        "org_name": pending["org_name"],
        "service_name": pending["service_name"],
    }
    subject = decision.Request.from_json(pending.get("ask")).subject
    if subject is not None and subject.format == NAMEID_EMAIL:
        context["email"] = subject.value  # the SP asked about this person
    return pending, context


@bp.get("/login")
def login_form() -> Response:
    """The form; with ?pending= it names the organization and service being signed in to."""
    pending, context = _pending(request.args.get("pending"))
    if pending is None:
        context["org"] = request.args.get("org", "")[:MAX_FIELD]
        context["next"] = _next(request.args)
        if browser.current_session() is not None and not context["org"]:
            return message_page("You are signed in", "You can close this page.", signed_in=True)
    return _page(**context)


def _next(values: Any) -> str | None:
    """Where to go after signing in without a pending request: only the account page."""
    return "account" if values.get("next") == "account" else None


@bp.post("/login")
def login() -> Response:
    """Check CSRF, throttle, verify the password, then sign the browser in to the org."""
    pending, context = _pending(request.form.get("pending") or None)
    org = context.get("org") or request.form.get("org", "").strip().lower()[:MAX_FIELD]
    email = request.form.get("email", "").strip()[:MAX_FIELD]
    password = request.form.get("password", "")[:MAX_FIELD]
    context = {**context, "org": org, "email": email, "next": _next(request.form)}
    if not browser.csrf_ok():
        return _page(400, error="This form expired. Please sign in again.", **context)
    if not email or not password or not org:
        return _page(400, error="Enter your organization, email and password.", **context)
    attempt = logins.Attempt(
        email=email,
        password=password,
        organization=org,
        address=browser.client_address(),
        via="page",
        service_id=pending["service_id"] if pending else None,
    )
    try:
        verified = logins.sign_in(runtime(), attempt, throttle_required=True)
    except Throttled as exc:
        minutes = max(1, round(exc.retry_after / 60))
        error = f"Too many sign-in attempts. Try again in {minutes} minute(s)."
        response = _page(429, error=error, **context)
        response.headers["Retry-After"] = str(exc.retry_after)
        LOGINS.labels("throttled").inc()
        return response
    except WrongCredentials:
        LOGINS.labels("failure").inc()
        return _page(401, error=WRONG_CREDENTIALS, **context)
    account = verified.subject
    assert isinstance(account, Account)
    token = context.get("pending")
    if verified.factor_required:
        LOGINS.labels("second_factor").inc()
        return second_factor.ask(org, account, token, context["next"], step_up=False)
    LOGINS.labels("success").inc()
    session = runtime().store.sign_in(
        browser.current_session(), account.organization_id, account.id, account.generation
    )
    response = second_factor.go_on(org, token, context["next"])
    browser.set_session_cookie(response, session)
    return response


@bp.post("/logout")
def logout() -> Response:
    """End every sign-in of this browser (CSRF-protected)."""
    if not browser.csrf_ok():
        return error_page(400, "Sign-out failed", "This form expired. Reload the page and retry.")
    session = browser.current_session()
    if session is not None:
        runtime().store.end_session(session)
    response = message_page(
        "You are signed out", "You have been signed out of the identity provider."
    )
    browser.clear_session_cookie(response)
    return response
