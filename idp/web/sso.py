"""SP-initiated SSO (/sso), IdP-initiated SSO (/init), and the step after login (/resume)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, redirect, request, url_for

from idp import audit, providers, saml
from idp.domain import sso as decision
from idp.metrics import SIGNING_SECONDS, SSO_REQUESTS
from idp.providers import Member, Provider
from idp.runtime import runtime
from idp.saml.bindings import check_relay_state
from idp.saml.constants import NAMEID_PERSISTENT, NAMEID_TRANSIENT
from idp.sessions import BrowserSession, SignIn, SpLogin, SsoState
from idp.web import browser, second_factor
from idp.web.pages import Refused, post_form

bp = Blueprint("sso", __name__)


@dataclass(frozen=True)
class Reply:
    """Where and how an answer goes: the request it answers, the RelayState it carries back,
    and the SP's ACS it is posted to (None: the default one)."""

    request_id: str | None
    relay_state: str | None
    acs_url: str | None = None

    def sp(self, provider: Provider) -> saml.SpConfig:
        """The provider's SP configuration, answering at this ACS."""
        assert provider.sp is not None
        if self.acs_url is None or self.acs_url == provider.sp.acs_url:
            return provider.sp
        return replace(provider.sp, acs_url=self.acs_url)


@dataclass(frozen=True)
class SignedIn:
    """The browser's live sign-in to the service's organization, and its account."""

    session: BrowserSession
    signin: SignIn
    member: Member


@bp.route("/saml/<org>/<svc>/sso", methods=["GET", "POST"])
def sso(org: str, svc: str) -> Response:
    """Receive an AuthnRequest by HTTP-Redirect or HTTP-POST and answer it."""
    rt = runtime()
    if request.method == "GET":
        message = saml.decode_redirect(request.query_string)
    else:
        message = saml.decode_post(request.form)
    read = saml.read_authn(message)
    state = browser_state()
    provider, sp = ready(org, svc, state.version)
    authn = saml.check_authn(
        read, sp, provider.endpoints, now=datetime.now(UTC), clock_skew=rt.settings.clock_skew
    )
    signed = signed_in(provider, state)
    remember(f"authn:{org}/{svc}\0{authn.id}", anonymous=signed is None)
    reply = Reply(authn.id, message.relay_state, sp.acs_for(authn.acs_url, authn.acs_index))
    ask = decision.Request.of(authn)
    if signed is not None and not _is_subject(provider, signed, ask):
        signed = None
    error = saml.sso_error(
        authn, sp, has_session=signed is not None, achievable=decision.ACHIEVABLE
    )
    if error is not None:
        return _error_answer(provider, error, reply)
    if signed is None or authn.force_authn:
        return _to_login(provider, reply, ask, force=authn.force_authn)
    if _owes_factor(provider, signed, ask):
        if authn.is_passive:
            return _error_answer(provider, saml.NO_AUTHN_CONTEXT, reply)
        return _to_second_factor(provider, signed, reply, ask, False)
    return _answer(provider, signed, reply, ask)


@bp.get("/saml/<org>/<svc>/init")
def init(org: str, svc: str) -> Response:
    """IdP-initiated (unsolicited) SSO to the configured ACS."""
    relay_state = check_relay_state(request.args.get("RelayState"))
    state = browser_state()
    provider, _ = ready(org, svc, state.version)
    signed = signed_in(provider, state)
    ask = decision.Request.unsolicited()
    reply = Reply(None, relay_state)
    if signed is None:
        remember(None, anonymous=True)
        return _to_login(provider, reply, ask, force=False)
    if _owes_factor(provider, signed, ask):
        return _to_second_factor(provider, signed, reply, ask, False)
    return _answer(provider, signed, reply, ask)


@bp.get("/saml/<org>/<svc>/resume")
def resume(org: str, svc: str) -> Response:
    """After login: answer the pending request (once) with the new sign-in."""
    pending = runtime().store.take_pending(request.args.get("pending"))
    if pending is None or (pending["org"], pending["svc"]) != (org, svc):
        raise Refused(
            400,
            "pending_expired",
            "This sign-in took too long or was already completed. Start again at the application.",
        )
    state = browser_state()
    provider, _ = ready(org, svc, state.version)
    reply = Reply(pending["request_id"], pending["relay_state"], pending.get("acs_url"))
    ask = decision.Request.from_json(pending.get("ask"))
    force = pending["force_authn"]
    signed = signed_in(provider, state)
    fresh = signed is not None and signed.signin.authn_instant >= pending["created"]
    if signed is None or (force and not fresh) or not _is_subject(provider, signed, ask):
        return _to_login(provider, reply, ask, force=force)
    if _owes_factor(provider, signed, ask):
        return _to_second_factor(provider, signed, reply, ask, force)
    return _answer(provider, signed, reply, ask)


def browser_state() -> SsoState:
    """The browser's session and the change counter, in one round trip."""
    return runtime().store.sso_state(request.cookies.get(browser.SESSION_COOKIE))


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


def signed_in(provider: Provider, state: SsoState) -> SignedIn | None:
    """The browser's sign-in to the provider's organization, if it is still good: the
    account exists, is enabled, and has not had its sign-ins ended since."""
    session = state.session
    signin = session.signins.get(provider.org_id) if session is not None else None
    if session is None or signin is None:
        return None
    member = providers.member(runtime(), provider, signin.account_id, state.version)
    if member is None or member.generation != signin.generation:
        return None
    if signin.via is not None and not providers.upstream_alive(
        runtime(), provider.org_id, signin.via, state.version
    ):
        return None  # the upstream provider it came through was removed or turned off
    return SignedIn(session, signin, member)


def remember(replay_key: str | None, anonymous: bool) -> None:
    """Mark a request ID as seen (refusing a replay) and, for a browser that is not signed
    in, count the request against its address (429 when over the limit)."""
    rt = runtime()
    replay_ttl = 2 * rt.settings.clock_skew + 60
    limit = rt.settings.pending_per_minute if anonymous else None
    outcome = rt.store.remember(browser.client_address(), limit, replay_key, replay_ttl)
    if outcome.retry_after:
        raise Refused(
            429,
            "rate_limited",
            "Too many sign-in requests came from your network. Wait a minute and try again.",
            headers={"Retry-After": str(outcome.retry_after)},
        )
    if not outcome.first_use:
        raise Refused(
            400, "replay", "This sign-in request was already used. Start again at the application."
        )


def _owes_factor(provider: Provider, signed: SignedIn, ask: decision.Request) -> bool:
    """True when only a multi-factor sign-in may answer and this one used no second factor."""
    return not signed.signin.mfa and decision.needs_second_factor(provider.access, ask)


def _to_second_factor(
    provider: Provider, signed: SignedIn, reply: Reply, ask: decision.Request, force: bool
) -> Response:
    """Step up: keep the request, then ask for the account's second factor, or send an
    account without one to enrol first."""
    token = _keep_pending(provider, reply, ask, force)
    SSO_REQUESTS.labels("second_factor_required", "").inc()
    return second_factor.step_up(provider.org_slug, signed.signin.account_id, token)


def _to_login(provider: Provider, reply: Reply, ask: decision.Request, force: bool) -> Response:
    """Keep the request in Redis (not in a cookie) and send the browser to the login page."""
    token = _keep_pending(provider, reply, ask, force)
    SSO_REQUESTS.labels("login_required", "").inc()
    return redirect(url_for("login.login_form", pending=token), code=303)  # type: ignore[return-value]


def _keep_pending(provider: Provider, reply: Reply, ask: decision.Request, force: bool) -> str:
    """Keep the SSO request in Redis while the browser signs in; returns its token."""
    pending: dict[str, Any] = {
        "org": provider.org_slug,
        "svc": provider.service_slug,
        "org_id": provider.org_id,
        "service_id": provider.service_id,
        "org_name": provider.org_name,
        "service_name": provider.service_name,
        "request_id": reply.request_id,
        "relay_state": reply.relay_state,
        "acs_url": reply.acs_url,
        "force_authn": force,
        "ask": ask.to_json(),
        "created": time.time(),
    }
    return runtime().store.put_pending(pending)


def _error_answer(provider: Provider, error: saml.ErrorStatus, reply: Reply) -> Response:
    """Post a signed SAML error Response to the ACS."""
    sp = reply.sp(provider)
    message = saml.error_response(
        error,
        sp=sp,
        idp=provider.endpoints,
        key=provider.signing_key(runtime()),
        in_response_to=reply.request_id,
        now=datetime.now(UTC),
    )
    SSO_REQUESTS.labels("saml_error", error.code.rsplit(":", 1)[-1]).inc()
    return post_form(sp.acs_url, "SAMLResponse", message, reply.relay_state)


def _answer(provider: Provider, signed: SignedIn, reply: Reply, ask: decision.Request) -> Response:
    """Sign the account's assertion, remember the SP in the sign-in, post it to the ACS.

    An account outside the service's access rules gets a 403 page and nothing is posted.
    """
    rt = runtime()
    sp = reply.sp(provider)
    if not provider.access.admits(signed.member.user.groups, signed.member.subscribed):
        raise Refused(
            403,
            "access_denied",
            f"Your account may not use {provider.service_name}. Ask an administrator of "
            f"{provider.org_name} to give you access.",
        )
    authn_class = decision.authn_class(ask, signed.signin.mfa, signed.signin.authn_class)
    if authn_class is None:  # defensive: sso_error and the step-up already ruled this out
        return _error_answer(provider, saml.NO_AUTHN_CONTEXT, reply)
    user = signed.member.user
    known = signed.signin.sps.get(provider.service_id)
    login = _sp_login(provider, signed.signin, user)
    event = audit.queued(
        audit.IDP,
        "sso.success",
        "sso",
        organization_id=provider.org_id,
        service_id=provider.service_id,
        user_id=user.id,
        after={"sp": sp.entity_id, "initiated": "sp" if reply.request_id else "idp"},
    )
    backlog = rt.store.save_session(
        signed.session, event, changed=login is not known, organization_id=provider.org_id
    )
    started = time.perf_counter()
    message = saml.sso_response(
        sp=sp,
        idp=provider.endpoints,
        key=provider.signing_key(rt),
        user=user,
        name_id=_name_id(provider, login),
        session_index=login.session_index,
        authn_instant=datetime.fromtimestamp(signed.signin.authn_instant, UTC),
        session_not_on_or_after=datetime.fromtimestamp(signed.signin.expires_at, UTC),
        in_response_to=reply.request_id,
        now=datetime.now(UTC),
        assertion_ttl=rt.settings.assertion_ttl,
        authn_context_class=authn_class,
    )
    SIGNING_SECONDS.observe(time.perf_counter() - started)
    SSO_REQUESTS.labels("success", "").inc()
    audit.flush_when_due(rt, backlog)
    return post_form(sp.acs_url, "SAMLResponse", message, reply.relay_state)


def _is_subject(provider: Provider, signed: SignedIn, ask: decision.Request) -> bool:
    """False when the SP asked about someone the signed-in account is not."""
    if ask.subject is None:  # the common case: no NameID to compute
        return True
    return decision.is_subject(ask, _issued(provider, signed), signed.member.user.email)


def _issued(provider: Provider, signed: SignedIn) -> saml.NameId | None:
    """The NameID this SP gets (or got, in this sign-in) for the account; None for a
    transient one not issued yet."""
    sp = provider.sp
    assert sp is not None
    known = signed.signin.sps.get(provider.service_id)
    if known is not None and known.name_id_format == sp.name_id_format:
        return _name_id(provider, known)
    if sp.name_id_format == NAMEID_TRANSIENT:
        return None
    return _make_name_id(provider, signed.member.user)


def _make_name_id(provider: Provider, user: saml.UserInfo) -> saml.NameId:
    sp = provider.sp
    assert sp is not None
    persistent = sp.name_id_format == NAMEID_PERSISTENT
    return saml.make_name_id(
        sp.name_id_format,
        user_id=user.id,
        email=user.email,
        sp_entity_id=sp.entity_id,
        idp_entity_id=provider.endpoints.entity_id,
        secret=runtime().nameid_key() if persistent else b"",  # only persistent uses it
    )


def _sp_login(provider: Provider, signin: SignIn, user: saml.UserInfo) -> SpLogin:
    """What this SP knows of the account in this sign-in: reused, or made at the first SSO."""
    sp = provider.sp
    assert sp is not None
    known = signin.sps.get(provider.service_id)
    if known is not None and (known.entity_id, known.name_id_format) == (
        sp.entity_id,
        sp.name_id_format,
    ):
        return known
    name_id = _make_name_id(provider, user)
    login = SpLogin(sp.entity_id, name_id.value, name_id.format, "_" + secrets.token_hex(16))
    signin.sps[provider.service_id] = login
    return login


def _name_id(provider: Provider, login: SpLogin) -> saml.NameId:
    """The sign-in's NameID for the SP, qualified for the pairwise formats."""
    if login.name_id_format in (NAMEID_PERSISTENT, NAMEID_TRANSIENT):
        return saml.NameId(
            login.name_id, login.name_id_format, provider.endpoints.entity_id, login.entity_id
        )
    return saml.NameId(login.name_id, login.name_id_format)
