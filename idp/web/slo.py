"""Single Logout (/slo): a LogoutRequest ends the IdP session; the SP gets a LogoutResponse."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, redirect, render_template, request

from idp import saml
from idp.runtime import runtime
from idp.sessions import IdpSession
from idp.web import browser
from idp.web.pages import Refused, post_form
from idp.web.sso import browser_state, ready

bp = Blueprint("slo", __name__)


@bp.route("/saml/<org>/<svc>/slo", methods=["GET", "POST"])
def slo(org: str, svc: str) -> Response:
    """Verify the LogoutRequest, end the session, answer by the binding it came with."""
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
    replay_ttl = 2 * rt.settings.clock_skew + 60
    if not rt.store.first_use(f"logout:{org}/{svc}\0{logout.id}", replay_ttl):
        raise Refused(400, "replay", "This sign-out request was already used.")
    session = state.session or _session_by_index(provider.service_id, logout)
    if session is not None:
        rt.store.end_session(session)
    key = provider.signing_key(rt)
    if sp.slo_url is None:
        response = Response(
            render_template(
                "message.html",
                title="You are signed out",
                message=f"You have been signed out of {provider.service_name}.",
            ),
            mimetype="text/html",
        )
    elif message.binding == saml.BINDING_REDIRECT:
        url = saml.logout_response_redirect(
            logout, sp=sp, idp=provider.endpoints, key=key, relay_state=message.relay_state, now=now
        )
        response = redirect(url, code=303)  # type: ignore[assignment]
    else:
        body = saml.logout_response_post(logout, sp=sp, idp=provider.endpoints, key=key, now=now)
        response = post_form(
            sp.slo_url, "SAMLResponse", body, message.relay_state, "Signing you out"
        )
    browser.clear_session_cookie(response)
    return response


def _session_by_index(service_id: str, logout: saml.LogoutRequest) -> IdpSession | None:
    """Without the cookie (e.g. a cross-site POST): the session that gave this SP the
    request's SessionIndex, if it told the SP the same NameID."""
    store = runtime().store
    for index in logout.session_indexes:
        found = store.session_for_index(index)
        login = found.sps.get(service_id) if found else None
        if login is not None and login.name_id == logout.name_id.value:
            return found
    return None
