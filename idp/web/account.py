"""GET /account and its forms: a signed-in person's second factors in one organization.

Reached with ``?org=SLUG`` (or alone when the browser is signed in to one organization). An
account that has a factor must have used one in this sign-in before it changes any (a stolen
password alone cannot remove them). Enrolling a first factor, confirmed by a working code or
ceremony, makes the current sign-in multi-factor and shows ten recovery codes once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import segno
from flask import Blueprint, Response, redirect, render_template, request, url_for
from markupsafe import Markup

from idp import audit, keys
from idp.domain import mfa, organizations, passkeys
from idp.metrics import MFA_OUTCOMES
from idp.runtime import runtime
from idp.sessions import BrowserSession, SignIn
from idp.store.models import Account, Organization
from idp.web import browser, second_factor
from idp.web.pages import error_page

bp = Blueprint("account", __name__)

ENROL_TTL_S = 600
MAX_FIELD = 20_000


@dataclass(frozen=True)
class Here:
    """The browser's sign-in to the organization whose account page this is."""

    org: Organization
    account: Account
    session: BrowserSession
    signin: SignIn
    factors: mfa.Factors
    pending: str | None

    @property
    def actor(self) -> audit.Actor:
        """The account itself, acting on its own factors."""
        return audit.Actor("user", self.account.id)


class Away(Exception):
    """The page cannot be shown as asked: answer this instead."""

    def __init__(self, response: Response) -> None:
        super().__init__("redirected")
        self.response = response


def _org_slug(session: BrowserSession | None) -> str:
    given = (request.values.get("org") or "").strip().lower()[:63]
    if given or session is None or len(session.signins) != 1:
        return given
    with runtime().db.read() as db:
        org = db.get(Organization, next(iter(session.signins)))
    return org.slug if org is not None else ""


def _here(changing: bool) -> Here:
    """The signed-in account of ``?org=``; else sign in (or give the second factor) first."""
    rt = runtime()
    session = browser.current_session()
    slug = _org_slug(session)
    pending = request.values.get("pending") or None
    if not slug:
        target = url_for("login.login_form", next="account")
        raise Away(redirect(target, code=303))  # type: ignore[arg-type]
    with rt.db.read() as db:
        org = organizations.by_slug(db, slug)
        signin = session.signins.get(org.id) if org is not None and session else None
        account = db.get(Account, signin.account_id) if signin is not None else None
        factors = mfa.factors(db, account.id) if account is not None else None
    usable = account is not None and not account.disabled and signin is not None
    if not usable or account.generation != signin.generation:  # type: ignore[union-attr]
        target = url_for("login.login_form", org=slug, next="account")
        raise Away(redirect(target, code=303))  # type: ignore[arg-type]
    assert org is not None and session is not None and signin is not None
    assert account is not None and factors is not None
    if factors.any and not signin.mfa:
        raise Away(second_factor.ask(slug, account, pending, "account", step_up=True))
    if not browser.csrf_ok() and changing:
        raise Away(error_page(400, "This form expired", "Reload the page and try again."))
    return Here(org, account, session, signin, factors, pending)


def _page(template: str, here: Here, status: int = 200, **context: Any) -> Response:
    token, seed = browser.csrf_token()
    html = render_template(
        template,
        csrf_token=token,
        org=here.org,
        account=here.account,
        factors=here.factors,
        pending=here.pending,
        **context,
    )
    response = Response(html, status=status, mimetype="text/html")
    browser.set_csrf_cookie(response, seed)
    return response


View = Callable[..., Response]


def _view(changing: bool) -> Callable[[View], View]:
    """Wrap a view so it gets the signed-in account first, or answers the redirect instead."""

    def wrap(view: View) -> View:
        def run(**kwargs: Any) -> Response:
            try:
                here = _here(changing)
            except Away as away:
                return away.response
            return view(here, **kwargs)

        run.__name__ = view.__name__
        run.__doc__ = view.__doc__
        return run

    return wrap


def _back(here: Here) -> Response:
    target = url_for("account.overview", org=here.org.slug, pending=here.pending)
    return redirect(target, code=303)  # type: ignore[return-value]


@bp.get("/account")
@_view(changing=False)
def overview(here: Here) -> Response:
    """The factors of the account: authenticator app, passkeys, recovery codes."""
    rt = runtime()
    with rt.db.read() as db:
        keys = passkeys.listing(db, here.account.id)
    options = passkeys.registration_options(rt, here.org, here.account, keys)
    return _page(
        "account.html",
        here,
        passkeys=keys,
        passkey_options=options,
        passkey_script=browser.PASSKEY_SCRIPT,
        service_name=_pending_service(here.pending),
    )


@bp.get("/account/totp")
@_view(changing=False)
def totp_form(here: Here) -> Response:
    """A new authenticator seed, as a QR code and as text, to confirm with a code."""
    rt = runtime()
    seed = mfa.new_totp_seed()
    sealed = keys.encrypt_totp_secret(here.account.id, seed, rt.settings.secret_key)
    rt.store.hold(_enrol_name(here), {"seed": sealed}, ENROL_TTL_S)  # encrypted in Redis too
    return _totp_page(here, seed)


def _totp_page(here: Here, seed: str, status: int = 200, error: str | None = None) -> Response:
    uri = mfa.totp_uri(seed, here.account, here.org)
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", border=2)
    grouped = " ".join(seed[i : i + 4] for i in range(0, len(seed), 4))
    return _page("totp.html", here, status, qr=Markup(svg), seed=grouped, error=error)  # noqa: S704


@bp.post("/account/totp")
@_view(changing=True)
def totp_confirm(here: Here) -> Response:
    """Turn the authenticator on when the code it shows is right."""
    rt = runtime()
    held = rt.store.held(_enrol_name(here))
    if held is None:
        return _back(here)
    seed = keys.decrypt_totp_secret(here.account.id, held["seed"], rt.settings)
    step = mfa.matching_step(seed, request.form.get("code", "")[:64])
    if step is None or not mfa.use_totp_step(rt, here.account.id, step):
        MFA_OUTCOMES.labels("totp", "enrol_failure").inc()
        error = "That code is not right. Enter the code your app shows now."
        return _totp_page(here, seed, 400, error)
    with rt.db.write() as db:
        account = db.get(Account, here.account.id)
        assert account is not None
        codes = mfa.enrol_totp(rt, db, here.actor, account, seed)
    rt.store.release(_enrol_name(here))
    MFA_OUTCOMES.labels("totp", "enrolled").inc()
    return _enrolled(here, "Authenticator app turned on", codes)


@bp.post("/account/totp/remove")
@_view(changing=True)
def totp_remove(here: Here) -> Response:
    """Turn the authenticator app off."""
    with runtime().db.write() as db:
        account = db.get(Account, here.account.id)
        assert account is not None
        mfa.remove_totp(db, here.actor, account)
    return _back(here)


@bp.post("/account/passkeys")
@_view(changing=True)
def passkey_add(here: Here) -> Response:
    """Store a passkey after its registration ceremony verifies."""
    rt = runtime()
    credential = request.form.get("credential", "")[:MAX_FIELD]
    name = request.form.get("name", "")[:200]
    try:
        with rt.db.write() as db:
            account = db.get(Account, here.account.id)
            assert account is not None
            _, codes = passkeys.register(rt, db, here.actor, account, credential, name)
    except passkeys.Refused:
        MFA_OUTCOMES.labels("passkey", "enrol_failure").inc()
        return error_page(400, "Passkey not added", "The passkey could not be verified. Try again.")
    MFA_OUTCOMES.labels("passkey", "enrolled").inc()
    return _enrolled(here, "Passkey added", codes)


@bp.post("/account/passkeys/<passkey_id>/rename")
@_view(changing=True)
def passkey_rename(here: Here, passkey_id: str) -> Response:
    """Give a passkey a new name."""
    with runtime().db.write() as db:
        account = db.get(Account, here.account.id)
        assert account is not None
        passkeys.rename(db, here.actor, account, passkey_id, request.form.get("name", "")[:200])
    return _back(here)


@bp.post("/account/passkeys/<passkey_id>/remove")
@_view(changing=True)
def passkey_remove(here: Here, passkey_id: str) -> Response:
    """Remove a passkey."""
    with runtime().db.write() as db:
        account = db.get(Account, here.account.id)
        assert account is not None
        passkeys.remove(db, here.actor, account, passkey_id)
    return _back(here)


@bp.post("/account/recovery-codes")
@_view(changing=True)
def recovery_codes(here: Here) -> Response:
    """Replace the recovery codes with ten new ones, shown once."""
    if not here.factors.any:
        return _back(here)
    rt = runtime()
    with rt.db.write() as db:
        account = db.get(Account, here.account.id)
        assert account is not None
        codes = mfa.new_recovery_codes(rt, db, here.actor, account)
    return _page("codes.html", here, title="New recovery codes", codes=codes, continue_url=None)


def _enrolled(here: Here, title: str, codes: list[str] | None) -> Response:
    """After an enrolment: this sign-in is now multi-factor; show the codes once, and the
    way back to the service that asked for a second factor."""
    rt = runtime()
    session = here.session
    if not here.signin.mfa:
        session = rt.store.step_up(here.session, here.org.id)
    continue_url = _continue_url(here.pending)
    response = _page("codes.html", here, title=title, codes=codes, continue_url=continue_url)
    if session is not here.session:
        browser.set_session_cookie(response, session)
    return response


def _continue_url(pending: str | None) -> str | None:
    waiting = runtime().store.peek_pending(pending)
    if waiting is None:
        return None
    return url_for("sso.resume", org=waiting["org"], svc=waiting["svc"], pending=pending)


def _pending_service(pending: str | None) -> str | None:
    waiting = runtime().store.peek_pending(pending)
    return None if waiting is None else str(waiting["service_name"])


def _enrol_name(here: Here) -> str:
    return f"totp-enrol:{here.session.key}:{here.org.id}"
