"""The SAML 2.0 protocol core: plain Python over lxml and python-xmlsec, no Flask, no storage.

The web layer's steps (``sp`` is a :class:`SpConfig`, ``idp`` the :class:`IdpEndpoints`,
``key`` the active certificate's cached :class:`SigningKey`, ``now`` an aware UTC datetime):

SP-initiated SSO (``/sso``)
  1. ``message = decode_redirect(request.query_string)`` (GET: the raw query string, whose
     exact bytes the Redirect signature covers) or ``decode_post(request.form)`` (POST).
  2. ``authn = parse_authn_request(message, sp, idp, now=now, clock_skew=skew)``, or in two
     steps, ``read = read_authn(message)`` then ``check_authn(read, sp, idp, ...)``, when the
     request ID is wanted before the SP's configuration is at hand.
  3. Replay: ``SET NX EX`` on ``authn.id`` in the web layer's replay cache; if it was seen,
     refuse like a :class:`SamlRefusal` with reason ``replay``.
  4. ``error = sso_error(authn, sp, has_session=..., achievable=PASSWORD_SIGN_IN)``
     (``achievable``: every class a sign-in here could reach, ``SECOND_FACTOR_SIGN_IN`` once
     the user can use a second factor); if not None, post
     ``error_response(error, ..., in_response_to=authn.id)`` to ``sp.acs_url``.
  5. Make the user log in when there is no session, or ``authn.force_authn``, or
     ``authn.subject`` is set and ``subject_matches(authn.subject, issued, user.email)`` is
     false (``issued``: the NameID step 6 gives the signed-in user), or the session's
     ``achieved`` classes (``PASSWORD_SIGN_IN`` after a password, ``SECOND_FACTOR_SIGN_IN``
     after a second factor) give ``choose_class(authn.requested_context, achieved) is None``.
     When ``authn.is_passive``, answer ``NO_PASSIVE`` as in step 4 instead.
  6. ``name_id = make_name_id(sp.name_id_format, ...)``, or the NameID the session already
     holds for this SP (a transient NameID is random on every call).
  7. Post ``sso_response(..., in_response_to=authn.id, authn_context_class=chosen)``, with
     ``chosen = choose_class(authn.requested_context, achieved)``, as ``SAMLResponse`` with
     ``message.relay_state`` (unchanged) as ``RelayState`` to ``sp.acs_url``.

IdP-initiated SSO (``/init``): ``check_relay_state(request.args.get("RelayState"))``, then
steps 5 to 7 with ``in_response_to=None`` and ``chosen = choose_class(None, achieved)``.

Single Logout (``/slo``)
  1. Decode as in SSO step 1.
  2. ``logout = parse_logout_request(message, sp, idp, now=now, clock_skew=skew)``.
  3. If the browser's session gave this SP a NameID and SessionIndex and
     ``logout_matches(logout, name_id, session_index)`` is false, keep the session and answer
     with ``status=UNKNOWN_PRINCIPAL``; otherwise end the IdP session and answer Success
     (``status=None``). With ``sp.slo_url``: when ``message.binding == BINDING_REDIRECT``
     redirect to ``logout_response_redirect(...)``, else post ``logout_response_post(...)``
     as ``SAMLResponse`` (with ``RelayState``) to ``sp.slo_url``.

A received message that must not be acted on raises :class:`SamlRefusal` (``reason`` for
metrics, ``message`` for the HTML page, status 400); nothing else escapes the decoders and
parsers. Policy answers (NoPassive, InvalidNameIDPolicy, NoAuthnContext, RequestDenied) are
:class:`ErrorStatus` values answered to the SP as a signed error Response; UnknownPrincipal
is answered in a LogoutResponse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from idp.saml.attributes import UserInfo
from idp.saml.authn_context import (
    PASSWORD_SIGN_IN,
    SECOND_FACTOR_SIGN_IN,
    RequestedContext,
    choose_class,
)
from idp.saml.bindings import (
    ReceivedMessage,
    check_relay_state,
    decode_post,
    decode_redirect,
    encode_post,
    redirect_url,
)
from idp.saml.config import IdpEndpoints, SpConfig
from idp.saml.constants import BINDING_POST, BINDING_REDIRECT
from idp.saml.errors import SamlRefusal
from idp.saml.logout import build_logout_response, logout_matches
from idp.saml.nameid import NameId, make_name_id, subject_matches
from idp.saml.requests import AuthnRequest, LogoutRequest, read_authn_request, read_logout_request
from idp.saml.response import build_error_response, build_response
from idp.saml.signing import SigningKey
from idp.saml.status import (
    INVALID_NAMEID_POLICY,
    NO_AUTHN_CONTEXT,
    NO_PASSIVE,
    REQUEST_DENIED,
    UNKNOWN_PRINCIPAL,
    ErrorStatus,
)
from idp.saml.validation import (
    check_authn_request,
    check_issuer,
    check_logout_request,
    check_signature,
    sso_error,
)
from idp.saml.xml import parse

__all__ = [
    "BINDING_POST",
    "BINDING_REDIRECT",
    "INVALID_NAMEID_POLICY",
    "NO_AUTHN_CONTEXT",
    "NO_PASSIVE",
    "PASSWORD_SIGN_IN",
    "REQUEST_DENIED",
    "SECOND_FACTOR_SIGN_IN",
    "UNKNOWN_PRINCIPAL",
    "AuthnRequest",
    "ErrorStatus",
    "IdpEndpoints",
    "LogoutRequest",
    "NameId",
    "ReadAuthnRequest",
    "ReceivedMessage",
    "RequestedContext",
    "SamlRefusal",
    "SigningKey",
    "SpConfig",
    "UserInfo",
    "check_authn",
    "check_relay_state",
    "choose_class",
    "decode_post",
    "decode_redirect",
    "error_response",
    "logout_matches",
    "logout_response_post",
    "logout_response_redirect",
    "make_name_id",
    "parse_authn_request",
    "parse_logout_request",
    "read_authn",
    "sso_error",
    "sso_response",
    "subject_matches",
]


@dataclass(frozen=True)
class ReadAuthnRequest:
    """A parsed AuthnRequest that has not been judged yet (its ID can feed a replay cache)."""

    message: ReceivedMessage
    root: etree._Element
    request: AuthnRequest


def read_authn(message: ReceivedMessage) -> ReadAuthnRequest:
    """Parse an AuthnRequest without judging it against any SP; refuses what is malformed."""
    root = parse(message.xml)
    return ReadAuthnRequest(message, root, read_authn_request(root))


def check_authn(
    read: ReadAuthnRequest, sp: SpConfig, idp: IdpEndpoints, *, now: datetime, clock_skew: int
) -> AuthnRequest:
    """Judge a read AuthnRequest for ``sp``: all of CONTRACT §4 but the replay check."""
    _check_sender(read.message, read.root, read.request.issuer, sp)
    check_authn_request(read.request, sp, idp, now=now, clock_skew=clock_skew)
    return read.request


def parse_authn_request(
    message: ReceivedMessage, sp: SpConfig, idp: IdpEndpoints, *, now: datetime, clock_skew: int
) -> AuthnRequest:
    """Parse and validate an AuthnRequest for ``sp`` (all of CONTRACT §4 but the replay check)."""
    return check_authn(read_authn(message), sp, idp, now=now, clock_skew=clock_skew)


def parse_logout_request(
    message: ReceivedMessage, sp: SpConfig, idp: IdpEndpoints, *, now: datetime, clock_skew: int
) -> LogoutRequest:
    """Parse and validate a LogoutRequest from ``sp``, its signature checked like AuthnRequests."""
    root = parse(message.xml)
    request = read_logout_request(root)
    _check_sender(message, root, request.issuer, sp)
    check_logout_request(request, idp, now=now, clock_skew=clock_skew)
    return request


def sso_response(
    *,
    sp: SpConfig,
    idp: IdpEndpoints,
    key: SigningKey,
    user: UserInfo,
    name_id: NameId,
    session_index: str,
    authn_instant: datetime,
    session_not_on_or_after: datetime,
    in_response_to: str | None,
    now: datetime,
    assertion_ttl: int,
    authn_context_class: str,
) -> str:
    """The base64 ``SAMLResponse`` carrying the user's signed assertion to ``sp.acs_url``.

    ``authn_context_class`` is the AuthnContextClassRef asserted (see :func:`choose_class`).
    """
    return encode_post(
        build_response(
            sp=sp,
            idp=idp,
            key=key,
            user=user,
            name_id=name_id,
            session_index=session_index,
            authn_instant=authn_instant,
            session_not_on_or_after=session_not_on_or_after,
            in_response_to=in_response_to,
            now=now,
            assertion_ttl=assertion_ttl,
            authn_context_class=authn_context_class,
        )
    )


def error_response(
    error: ErrorStatus,
    *,
    sp: SpConfig,
    idp: IdpEndpoints,
    key: SigningKey,
    in_response_to: str | None,
    now: datetime,
) -> str:
    """The base64 ``SAMLResponse`` of a signed error Response to ``sp.acs_url``."""
    return encode_post(
        build_error_response(error, sp=sp, idp=idp, key=key, in_response_to=in_response_to, now=now)
    )


def logout_response_redirect(
    request: LogoutRequest,
    *,
    sp: SpConfig,
    idp: IdpEndpoints,
    key: SigningKey,
    relay_state: str | None,
    now: datetime,
    status: ErrorStatus | None = None,
) -> str:
    """The URL at ``sp.slo_url`` carrying a LogoutResponse, its query signed (SigAlg/Signature).

    Its status is Success, or ``status`` (e.g. ``UNKNOWN_PRINCIPAL``).
    """
    destination = _slo_url(sp)
    response = build_logout_response(
        request, idp=idp, destination=destination, now=now, status=status
    )
    return redirect_url(destination, "SAMLResponse", etree.tostring(response), relay_state, key)


def logout_response_post(
    request: LogoutRequest,
    *,
    sp: SpConfig,
    idp: IdpEndpoints,
    key: SigningKey,
    now: datetime,
    status: ErrorStatus | None = None,
) -> str:
    """The base64 ``SAMLResponse`` of a LogoutResponse with an enveloped signature.

    Its status is Success, or ``status`` (e.g. ``UNKNOWN_PRINCIPAL``).
    """
    response = build_logout_response(
        request, idp=idp, destination=_slo_url(sp), now=now, status=status
    )
    key.sign(response)
    return encode_post(etree.tostring(response))


def _check_sender(
    message: ReceivedMessage, root: etree._Element, issuer: str, sp: SpConfig
) -> None:
    check_issuer(issuer, sp)
    check_signature(message, root, sp)


def _slo_url(sp: SpConfig) -> str:
    if sp.slo_url is None:
        raise ValueError("the SP has no slo_url: show the signed-out page instead")
    return sp.slo_url
