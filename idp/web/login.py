"""GET/POST /login and POST /logout: the IdP's own sign-in page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from idp import audit
from idp.auth import login_subjects, membership, user_by_email
from idp.metrics import LOGINS
from idp.runtime import runtime
from idp.store.models import User
from idp.web import browser
from idp.web.pages import error_page

bp = Blueprint("login", __name__)

WRONG_CREDENTIALS = "The email or password is not right. Check them and try again."
MAX_FIELD = 1024


def _page(status: int = 200, **context: Any) -> Response:
    token, seed = browser.csrf_token()
    response = Response(
        render_template("login.html", csrf_token=token, **context),
        status=status,
        mimetype="text/html",
    )
    browser.set_csrf_cookie(response, seed)
    return response


def _pending(token: str | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The pending SSO request of a token, and the page context that names its service."""
    pending = runtime().store.peek_pending(token)
    if pending is None:
        return None, {}
    context = {
        "pending": token,
        "org_name": pending["org_name"],
        "service_name": pending["service_name"],
    }
    return pending, context


def _message(title: str, message: str, status: int = 200, signed_in: bool = False) -> Response:
    token, seed = browser.csrf_token() if signed_in else (None, None)
    html = render_template("message.html", title=title, message=message, logout_csrf=token)
    response = Response(html, status=status, mimetype="text/html")
    browser.set_csrf_cookie(response, seed)
    return response


@bp.get("/login")
def login_form() -> Response:
    """The form; with ?pending= it names the organization and service being signed in to."""
    pending, context = _pending(request.args.get("pending"))
    if pending is None:
        session = browser.current_session()
        if session is not None:
            return _message("You are signed in", "You can close this page.", signed_in=True)
    return _page(**context)


@bp.post("/login")
def login() -> Response:
    """Check CSRF, throttle, verify the password, then start a new session."""
    rt = runtime()
    pending, context = _pending(request.form.get("pending") or None)
    email = request.form.get("email", "").strip().lower()[:MAX_FIELD]
    password = request.form.get("password", "")[:MAX_FIELD]
    if not browser.csrf_ok():
        return _page(400, error="This form expired. Please sign in again.", email=email, **context)
    if not email or not password:
        return _page(400, error="Enter your email and password.", email=email, **context)
    subjects = login_subjects(rt.settings, email, browser.client_address())
    retry_after = rt.store.take_attempt(subjects, rt.settings.login_throttle_window)
    if retry_after:
        minutes = max(1, round(retry_after / 60))
        response = _page(
            429,
            error=f"Too many sign-in attempts. Try again in {minutes} minute(s).",
            email=email,
            **context,
        )
        response.headers["Retry-After"] = str(retry_after)
        LOGINS.labels("throttled").inc()
        return response
    with rt.db.read() as session:
        user = user_by_email(session, email)
    if not rt.passwords.verify(user.password_hash if user else None, password) or user is None:
        _record_login(None, email, "login.failure", pending)
        return _page(401, error=WRONG_CREDENTIALS, email=email, **context)
    rt.store.login_succeeded(*subjects)
    return _signed_in(user, pending, context.get("pending"))


def _signed_in(user: User, pending: dict[str, Any] | None, pending_token: str | None) -> Response:
    rt = runtime()
    if pending is not None:
        with rt.db.read() as session:
            member = membership(session, pending["org_id"], user.id)
        if member is None:
            _record_login(user, user.email, "login.denied", pending)
            return error_page(
                403,
                "Not a member",
                f"Your account is not a member of {pending['org_name']}, so it cannot sign in "
                f"to {pending['service_name']}. Ask an administrator of {pending['org_name']} "
                "to add you.",
            )
    old = browser.current_session()
    if old is not None:
        rt.store.end_session(old)
    session_state = rt.store.create_session(user.id)
    _record_login(user, user.email, "login.success", pending)
    if pending is not None:
        target = url_for(
            "sso.resume", org=pending["org"], svc=pending["svc"], pending=pending_token
        )
        response: Response = redirect(target, code=303)  # type: ignore[assignment]
    else:
        response = _message("You are signed in", "You can close this page.", signed_in=True)
    browser.set_session_cookie(response, session_state)
    return response


@bp.post("/logout")
def logout() -> Response:
    """End the IdP session (CSRF-protected)."""
    if not browser.csrf_ok():
        return error_page(400, "Sign-out failed", "This form expired. Reload the page and retry.")
    session = browser.current_session()
    if session is not None:
        runtime().store.end_session(session)
    response = _message("You are signed out", "You have been signed out of the identity provider.")
    browser.clear_session_cookie(response)
    return response


def _record_login(
    user: User | None, email: str, action: str, pending: dict[str, Any] | None
) -> None:
    """Count the outcome and queue it for the audit trail (never the password)."""
    rt = runtime()
    LOGINS.labels(action.removeprefix("login.")).inc()
    event = audit.queued(
        audit.Actor("user", user.id) if user else audit.Actor("anonymous"),
        action,
        "login",
        organization_id=pending["org_id"] if pending else None,
        service_id=pending["service_id"] if pending else None,
        user_id=user.id if user else None,
        after={"email": email, "address": browser.client_address()},
    )
    audit.flush_when_due(rt, rt.store.queue_event(event))
