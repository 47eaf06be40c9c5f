"""The second step of a sign-in: a TOTP or recovery code, or a passkey (GET/POST /login/factor),
and a passkey alone on the first screen (POST /login/passkey).

A sign-in that owes its second factor waits in Redis under a random token kept in the
``idp_factor`` cookie (HttpOnly), never in a URL: it names the organization, the account and
its generation, the pending SSO request, and whether it raises an existing sign-in (step-up).
The browser gets its session cookie only once the factor is given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from idp.domain import login as logins
from idp.domain import mfa, organizations, passkeys
from idp.domain.errors import Throttled, WrongCredentials
from idp.metrics import MFA_OUTCOMES
from idp.runtime import runtime
from idp.sessions import new_token
from idp.store.models import Account, Organization
from idp.web import browser
from idp.web.pages import message_page

bp = Blueprint("second_factor", __name__)

FACTOR_COOKIE = "idp_factor"
WAIT_TTL_S = 600
MAX_FIELD = 20_000
EXPIRED = "This sign-in took too long or was already completed. Sign in again."


@dataclass(frozen=True)
class Waiting:
    """A sign-in waiting for its second factor."""

    token: str
    org_slug: str
    account_id: str
    generation: int
    pending: str | None  # the SSO request to resume afterwards
    next: str | None  # "account": back to the account page afterwards
    step_up: bool  # raises the browser's existing sign-in rather than starting one

    @property
    def binding(self) -> str:
        """What a passkey challenge for this waiting sign-in is bound to."""
        return "factor\0" + hashlib.sha256(self.token.encode()).hexdigest()


def ask(
    org_slug: str,
    account: Account,
    pending: str | None,
    next_page: str | None,
    step_up: bool,
) -> Response:
    """Keep the sign-in waiting and send the browser to the second-factor page."""
    rt = runtime()
    token = new_token()
    data = {
        "org": org_slug,
        "account_id": account.id,
        "generation": account.generation,
        "pending": pending,
        "next": next_page,
        "step_up": step_up,
    }
    rt.store.hold(_name(token), data, WAIT_TTL_S)
    response: Response = redirect(url_for("second_factor.form"), code=303)  # type: ignore[assignment]
    https = rt.settings.is_https
    response.set_cookie(
        FACTOR_COOKIE, token, httponly=True, secure=https, samesite="Lax", max_age=WAIT_TTL_S
    )
    return response


def step_up(org_slug: str, account_id: str, pending: str | None) -> Response:
    """For a signed-in account that must add a second factor: ask for it, or, when it has
    none, send it to enrol one first."""
    rt = runtime()
    with rt.db.read() as session:
        account = session.get(Account, account_id)
        factors = mfa.factors(session, account_id)
    if account is None:
        return redirect(url_for("login.login_form", pending=pending), code=303)  # type: ignore[return-value]
    if not factors.any:
        target = url_for("account.overview", org=org_slug, pending=pending)
        return redirect(target, code=303)  # type: ignore[return-value]
    return ask(org_slug, account, pending, None, step_up=True)


def _name(token: str) -> str:
    return "factor:" + token


def _waiting() -> Waiting | None:
    token = request.cookies.get(FACTOR_COOKIE)
    if not token or len(token) > 128:
        return None
    data = runtime().store.held(_name(token))
    if data is None:
        return None
    return Waiting(
        token,
        data["org"],
        data["account_id"],
        data["generation"],
        data["pending"],
        data["next"],
        data["step_up"],
    )


def _account(waiting: Waiting) -> tuple[Organization, Account] | None:
    """The waiting sign-in's organization and account, while both are as they were."""
    with runtime().db.read() as session:
        org = organizations.by_slug(session, waiting.org_slug)
        account = session.get(Account, waiting.account_id)
    if org is None or account is None or account.organization_id != org.id:
        return None
    if account.disabled or account.generation != waiting.generation:
        return None
    return org, account


def _page(waiting: Waiting, status: int = 200, error: str | None = None) -> Response:
    rt = runtime()
    with rt.db.read() as session:
        keys = passkeys.listing(session, waiting.account_id)
    options = passkeys.authentication_options(rt, waiting.binding, keys) if keys else None
    token, seed = browser.csrf_token()
    html = render_template(
        "factor.html",
        csrf_token=token,
        error=error,
        passkey_options=options,
        passkey_script=browser.PASSKEY_SCRIPT,
    )
    response = Response(html, status=status, mimetype="text/html")
    browser.set_csrf_cookie(response, seed)
    return response


@bp.get("/login/factor")
def form() -> Response:
    """Ask for the second factor of the waiting sign-in."""
    waiting = _waiting()
    if waiting is None:
        return message_page("Sign-in expired", EXPIRED, 400)
    return _page(waiting)


@bp.post("/login/factor")
def code() -> Response:
    """A TOTP or recovery code for the waiting sign-in."""
    return _check(lambda rt, waiting: mfa.check_code(rt, waiting.account_id, _code()))


@bp.post("/login/factor/passkey")
def passkey() -> Response:
    """A passkey of the waiting sign-in's account."""

    def verify(rt: Any, waiting: Waiting) -> str | None:
        org = _account(waiting)
        if org is None:
            return None
        try:
            passkeys.authenticate(rt, _credential(), waiting.binding, org[0].id, waiting.account_id)
        except passkeys.Refused:
            return None
        return "passkey"

    return _check(verify)


def _code() -> str:
    return request.form.get("code", "")[:64]


def _credential() -> str:
    return request.form.get("credential", "")[:MAX_FIELD]


def _check(verify: Any) -> Response:
    """CSRF, the waiting sign-in, the throttle, the factor; then complete the sign-in."""
    rt = runtime()
    waiting = _waiting()
    if waiting is None:
        return message_page("Sign-in expired", EXPIRED, 400)
    if not browser.csrf_ok():
        return _page(waiting, 400, "This form expired. Please try again.")
    found = _account(waiting)
    if found is None:
        rt.store.release(_name(waiting.token))
        return message_page("Sign-in expired", EXPIRED, 400)
    org, account = found
    try:
        logins.throttle_factor(rt, org.slug, account.email, browser.client_address())
    except Throttled as exc:
        MFA_OUTCOMES.labels("any", "throttled").inc()
        return _throttled(waiting, exc)
    factor = verify(rt, waiting)
    attempt = logins.FactorAttempt(
        org, account, factor or "code", factor is not None, browser.client_address()
    )
    try:
        logins.factor_outcome(rt, attempt)
    except WrongCredentials:
        MFA_OUTCOMES.labels(attempt.factor, "failure").inc()
        return _page(waiting, 401, "That code or passkey was not accepted. Try again.")
    MFA_OUTCOMES.labels(attempt.factor, "success").inc()
    rt.store.release(_name(waiting.token))
    return complete(org, account, waiting.pending, waiting.next, waiting.step_up)


def _throttled(waiting: Waiting, exc: Throttled) -> Response:
    minutes = max(1, round(exc.retry_after / 60))
    response = _page(waiting, 429, f"Too many attempts. Try again in {minutes} minute(s).")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def complete(
    org: Organization,
    account: Account,
    pending: str | None,
    next_page: str | None,
    step_up: bool,
) -> Response:
    """A multi-factor sign-in is done: sign the browser in (or raise its sign-in), then go on."""
    store = runtime().store
    current = browser.current_session()
    signin = current.signins.get(org.id) if current is not None else None
    if step_up and current is not None and signin is not None and signin.account_id == account.id:
        session = store.step_up(current, org.id)
    else:
        session = store.sign_in(current, org.id, account.id, account.generation, mfa=True)
    response = go_on(org.slug, pending, next_page)
    browser.set_session_cookie(response, session)
    response.delete_cookie(FACTOR_COOKIE)
    return response


def go_on(org_slug: str, pending: str | None, next_page: str | None) -> Response:
    """After a sign-in: resume the pending SSO request, or open the account page, or say so."""
    if pending is not None:
        waiting = runtime().store.peek_pending(pending)
        if waiting is not None:
            target = url_for("sso.resume", org=waiting["org"], svc=waiting["svc"], pending=pending)
            return redirect(target, code=303)  # type: ignore[return-value]
    if next_page == "account":
        return redirect(url_for("account.overview", org=org_slug), code=303)  # type: ignore[return-value]
    return message_page("You are signed in", "You can close this page.", signed_in=True)


@bp.post("/login/passkey")
def first_screen() -> Response:
    """A passkey alone, with user verification, on the login page: a full sign-in."""
    rt = runtime()
    pending_token = request.form.get("pending") or None
    pending = rt.store.peek_pending(pending_token)
    slug = pending["org"] if pending is not None else request.form.get("org", "").strip().lower()
    next_page = "account" if request.form.get("next") == "account" else None
    if not browser.csrf_ok():
        return message_page("Sign-in failed", "This form expired. Reload the page and retry.", 400)
    try:
        logins.throttle_address(rt, browser.client_address())
    except Throttled as exc:
        MFA_OUTCOMES.labels("passkey", "throttled").inc()
        response = message_page("Too many attempts", "Wait a few minutes and try again.", 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    with rt.db.read() as session:
        org = organizations.by_slug(session, slug[:63]) if slug else None
    try:
        if slug and org is None:
            raise passkeys.Refused("unknown organization")
        binding = login_binding(browser.csrf_seed() or "")
        account = passkeys.authenticate(
            rt, _credential(), binding, org.id if org else None, None
        )
    except passkeys.Refused:
        MFA_OUTCOMES.labels("passkey", "failure").inc()
        return message_page(
            "Sign-in failed",
            "That passkey was not accepted here. Go back and sign in another way.",
            401,
        )
    with rt.db.read() as session:
        org = session.get(Organization, account.organization_id)
    assert org is not None
    logins.factor_outcome(
        rt, logins.FactorAttempt(org, account, "passkey", True, browser.client_address())
    )
    MFA_OUTCOMES.labels("passkey", "success").inc()
    return complete(org, account, pending_token if pending else None, next_page, step_up=False)


def login_binding(csrf_seed: str) -> str:
    """What a first-screen passkey challenge is bound to: this browser's CSRF seed."""
    return "login\0" + hashlib.sha256(csrf_seed.encode()).hexdigest()
