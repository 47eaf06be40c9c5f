"""SP-initiated SSO (/sso), IdP-initiated SSO (/init), and the step after login (/resume)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, redirect, request, url_for

from idp import audit, providers, saml
from idp.metrics import SIGNING_SECONDS, SSO_REQUESTS
from idp.providers import Provider
from idp.runtime import runtime
from idp.saml.bindings import check_relay_state
from idp.saml.constants import NAMEID_PERSISTENT, NAMEID_TRANSIENT
from idp.sessions import IdpSession, SpLogin, SsoState
from idp.web import browser
from idp.web.pages import Refused, post_form

bp = Blueprint("sso", __name__)

Member = tuple[IdpSession, saml.UserInfo]


@bp.route("/saml/<org>/<svc>/sso", methods=["GET", "POST"])
def sso(org: str, svc: str) -> Response:
    """Receive an AuthnRequest by HTTP-Redirect or HTTP-POST and answer it."""
    rt = runtime()
    if request.method == "GET":
        message = saml.decode_redirect(request.query_string)
    else:
        message = saml.decode_post(request.form)
    read = saml.read_authn(message)
    replay_ttl = 2 * rt.settings.clock_skew + 60
    state = rt.store.sso_state(
        request.cookies.get(browser.SESSION_COOKIE),
        f"authn:{org}/{svc}\0{read.request.id}",
        replay_ttl,
    )
    provider, sp = ready(org, svc, state.version)
    authn = saml.check_authn(
        read, sp, provider.endpoints, now=datetime.now(UTC), clock_skew=rt.settings.clock_skew
    )
    if not state.first_use:
        raise Refused(
            400, "replay", "This sign-in request was already used. Start again at the application."
        )
    member = _member(provider, state)
    error = saml.sso_error(authn, sp, has_session=member is not None)
    if error is not None:
        return _error_answer(provider, error, authn.id, message.relay_state)
    if member is None or authn.force_authn:
        return _to_login(provider, authn.id, message.relay_state, force=authn.force_authn)
    return _answer(provider, member, authn.id, message.relay_state)


@bp.get("/saml/<org>/<svc>/init")
def init(org: str, svc: str) -> Response:
    """IdP-initiated (unsolicited) SSO to the configured ACS."""
    relay_state = check_relay_state(request.args.get("RelayState"))
    state = browser_state()
    provider, _ = ready(org, svc, state.version)
    member = _member(provider, state)
    if member is None:
        return _to_login(provider, None, relay_state, force=False)
    return _answer(provider, member, None, relay_state)


@bp.get("/saml/<org>/<svc>/resume")
def resume(org: str, svc: str) -> Response:
    """After login: answer the pending request (once) with the new session."""
    pending = runtime().store.take_pending(request.args.get("pending"))
    if pending is None or (pending["org"], pending["svc"]) != (org, svc):
        raise Refused(
            400,
            "pending_expired",
            "This sign-in took too long or was already completed. Start again at the application.",
        )
    state = browser_state()
    provider, _ = ready(org, svc, state.version)
    request_id, relay_state = pending["request_id"], pending["relay_state"]
    member = _member(provider, state)
    if member is None or (pending["force_authn"] and member[0].authn_instant < pending["created"]):
        return _to_login(provider, request_id, relay_state, force=pending["force_authn"])
    return _answer(provider, member, request_id, relay_state)


def browser_state() -> SsoState:
    """The browser's session and the change counter, in one round trip."""
    return runtime().store.sso_state(request.cookies.get(browser.SESSION_COOKIE), None, 0)


def ready(org: str, svc: str, version: int) -> tuple[Provider, saml.SpConfig]:
    """The service's IdP if it can answer: 404 unknown, 403 disabled or without a key."""
    provider = providers.find(runtime(), org, svc, version)
    if provider is None:
        raise Refused(404, "unknown_service", f"There is no service '{svc}' in '{org}'.")
    if provider.sp is None or not provider.enabled:
        raise Refused(
            403, "disabled", f"Single sign-on is not enabled for {provider.service_name}."
        )
    if provider.certificate is None:
        raise Refused(
            403,
            "no_certificate",
            f"{provider.service_name} has no signing certificate yet; "
            "an administrator must generate one.",
        )
    return provider, provider.sp


def _member(provider: Provider, state: SsoState) -> Member | None:
    """The browser's session and its user, if the user is a member of the organization."""
    if state.session is None:
        return None
    user = providers.user_info(runtime(), provider, state.session.user_id, state.version)
    return None if user is None else (state.session, user)


def _to_login(
    provider: Provider, request_id: str | None, relay_state: str | None, force: bool
) -> Response:
    """Keep the request in Redis (not in a cookie) and send the browser to the login page."""
    token = runtime().store.put_pending(
        {
            "org": provider.org_slug,
            "svc": provider.service_slug,
            "org_id": provider.org_id,
            "service_id": provider.service_id,
            "org_name": provider.org_name,
            "service_name": provider.service_name,
            "request_id": request_id,
            "relay_state": relay_state,
            "force_authn": force,
            "created": time.time(),
        }
    )
    SSO_REQUESTS.labels("login_required", "").inc()
    return redirect(url_for("login.login_form", pending=token), code=303)  # type: ignore[return-value]


def _error_answer(
    provider: Provider, error: saml.ErrorStatus, request_id: str | None, relay_state: str | None
) -> Response:
    """Post a signed SAML error Response to the ACS."""
    assert provider.sp is not None
    message = saml.error_response(
        error,
        sp=provider.sp,
        idp=provider.endpoints,
        key=provider.signing_key(runtime()),
        in_response_to=request_id,
        now=datetime.now(UTC),
    )
    SSO_REQUESTS.labels("saml_error", error.code.rsplit(":", 1)[-1]).inc()
    return post_form(provider.sp.acs_url, "SAMLResponse", message, relay_state)


def _answer(
    provider: Provider, member: Member, request_id: str | None, relay_state: str | None
) -> Response:
    """Sign the user's assertion, remember the SP in the session, and post it to the ACS."""
    rt = runtime()
    session, user = member
    sp = provider.sp
    assert sp is not None
    known = session.sps.get(provider.service_id)
    login = _sp_login(provider, session, user)
    event = audit.queued(
        audit.IDP,
        "sso.success",
        "sso",
        organization_id=provider.org_id,
        service_id=provider.service_id,
        user_id=user.id,
        after={"sp": sp.entity_id, "initiated": "sp" if request_id else "idp"},
    )
    backlog = rt.store.save_session(session, event, changed=login is not known)
    started = time.perf_counter()
    message = saml.sso_response(
        sp=sp,
        idp=provider.endpoints,
        key=provider.signing_key(rt),
        user=user,
        name_id=_name_id(provider, login),
        session_index=login.session_index,
        authn_instant=datetime.fromtimestamp(session.authn_instant, UTC),
        session_not_on_or_after=datetime.fromtimestamp(session.expires_at, UTC),
        in_response_to=request_id,
        now=datetime.now(UTC),
        assertion_ttl=rt.settings.assertion_ttl,
    )
    SIGNING_SECONDS.observe(time.perf_counter() - started)
    SSO_REQUESTS.labels("success", "").inc()
    audit.flush_when_due(rt, backlog)
    return post_form(sp.acs_url, "SAMLResponse", message, relay_state)


def _sp_login(provider: Provider, session: IdpSession, user: saml.UserInfo) -> SpLogin:
    """What this SP knows of the user in this session: reused, or made at the first SSO."""
    sp = provider.sp
    assert sp is not None
    known = session.sps.get(provider.service_id)
    if known is not None and (known.entity_id, known.name_id_format) == (
        sp.entity_id,
        sp.name_id_format,
    ):
        return known
    persistent = sp.name_id_format == NAMEID_PERSISTENT
    name_id = saml.make_name_id(
        sp.name_id_format,
        user_id=user.id,
        email=user.email,
        sp_entity_id=sp.entity_id,
        idp_entity_id=provider.endpoints.entity_id,
        secret=runtime().nameid_key() if persistent else b"",  # only persistent uses it
    )
    login = SpLogin(sp.entity_id, name_id.value, name_id.format, "_" + secrets.token_hex(16))
    session.sps[provider.service_id] = login
    return login


def _name_id(provider: Provider, login: SpLogin) -> saml.NameId:
    """The session's NameID for the SP, qualified for the pairwise formats."""
    if login.name_id_format in (NAMEID_PERSISTENT, NAMEID_TRANSIENT):
        return saml.NameId(
            login.name_id, login.name_id_format, provider.endpoints.entity_id, login.entity_id
        )
    return saml.NameId(login.name_id, login.name_id_format)
