"""Single Logout (/slo): a matching LogoutRequest ends the sign-in to its organization."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from flask import Blueprint, Response, redirect, render_template, request

from idp import saml
from idp.providers import Provider
from idp.runtime import runtime
from idp.sessions import BrowserSession
from idp.web import browser
from idp.web.pages import post_form
from idp.web.sso import browser_state, ready, remember, signed_in

bp = Blueprint("slo", __name__)


@bp.route("/saml/<org>/<svc>/slo", methods=["GET", "POST"])
def slo(org: str, svc: str) -> Response:
    """Verify the LogoutRequest; end the sign-in to this organization only when its NameID and
    SessionIndex are what this browser's sign-in gave the SP; answer by the request's binding
    (Success, or Requester/UnknownPrincipal when nothing matched)."""
    rt = runtime()
    state = browser_state()
    provider, sp = ready(org, svc, state.version)
    if request.method == "GET":
        message = saml.decode_redirect(request.query_string)
    else:
        message = saml.decode_post(request.form)
    now = datetime.now(UTC)
    logout = saml.parse_logout_request(
        message, sp, provider.endpoints, now=now, clock_skew=rt.settings.clock_skew
    )
    signed = signed_in(provider, state)
    remember(f"logout:{org}/{svc}\0{logout.id}", anonymous=signed is None)
    session = _matching_session(provider, state.session, logout)
    if session is not None:
        rt.store.end_signin(session, provider.org_id)
    status = None if session is not None else saml.UNKNOWN_PRINCIPAL
    response = _answer(provider, sp, message, logout, status, now)
    own = session is not None and state.session is not None and session.key == state.session.key
    if own and session is not None and not session.signins:
        browser.clear_session_cookie(response)
    return response


def _answer(
    provider: Provider,
    sp: saml.SpConfig,
    message: saml.ReceivedMessage,
    logout: saml.LogoutRequest,
    status: saml.ErrorStatus | None,
    now: datetime,
) -> Response:
    """The signed LogoutResponse by the request's binding, or the plain page without slo_url."""
    key = provider.signing_key(runtime())
    if sp.slo_url is None:
        said = "You have been signed out" if status is None else "You were not signed in"
        html = render_template(
            "message.html",
            title="You are signed out",
            message=f"{said} of {provider.service_name}.",
        )
        return Response(html, mimetype="text/html")
    if message.binding == saml.BINDING_REDIRECT:
        url = saml.logout_response_redirect(
            logout,
            sp=sp,
            idp=provider.endpoints,
            key=key,
            relay_state=message.relay_state,
            now=now,
            status=status,
        )
        return redirect(url, code=303)  # type: ignore[return-value]
    body = saml.logout_response_post(
        logout, sp=sp, idp=provider.endpoints, key=key, now=now, status=status
    )
    return post_form(sp.slo_url, "SAMLResponse", body, message.relay_state, "Signing you out")


def _matching_session(
    provider: Provider, browser_session: BrowserSession | None, logout: saml.LogoutRequest
) -> BrowserSession | None:
    """The session whose sign-in to this organization gave this SP the request's NameID (and
    SessionIndex): this browser's, or, without the cookie (a cross-site POST), the one that
    issued the request's SessionIndex."""
    store = runtime().store
    by_index = (store.session_for_index(index) for index in logout.session_indexes)
    for session in itertools.chain([browser_session], by_index):  # Redis read only if needed
        signin = session.signins.get(provider.org_id) if session is not None else None
        login = signin.sps.get(provider.service_id) if signin is not None else None
        if login is not None and saml.logout_matches(logout, login.name_id, login.session_index):
            return session
    return None
