"""The CONTRACT §4 rules a received request must pass, and the policy answers to the SP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from lxml import etree

from idp.saml import constants as c
from idp.saml.authn_context import choose_class
from idp.saml.bindings import ReceivedMessage
from idp.saml.config import IdpEndpoints, SpConfig
from idp.saml.errors import SamlRefusal, quoted
from idp.saml.requests import AuthnRequest, LogoutRequest
from idp.saml.signing import is_signed, verify_enveloped, verify_query
from idp.saml.status import INVALID_NAMEID_POLICY, NO_AUTHN_CONTEXT, NO_PASSIVE, ErrorStatus
from idp.saml.xml import format_instant


def check_authn_request(
    request: AuthnRequest, sp: SpConfig, idp: IdpEndpoints, *, now: datetime, clock_skew: int
) -> None:
    """Refuse an AuthnRequest that breaks a rule of CONTRACT §4 (signature checked apart)."""
    _check_destination(request.destination, idp.sso_url)
    if sp.acs_for(request.acs_url, request.acs_index) is None:
        named = quoted(request.acs_url) if request.acs_url is not None else ""
        if request.acs_index is not None:
            named = f"{named} (index {request.acs_index})".strip()
        raise SamlRefusal(
            "acs_mismatch",
            f"The request asks for the answer at {named}, which is not the ACS URL configured "
            "for this service (nor one of its listed ACS URLs); update the SAML configuration "
            "or the SP.",
        )
    if request.protocol_binding is not None and request.protocol_binding != c.BINDING_POST:
        raise SamlRefusal(
            "binding",
            f"The request asks for the answer by {quoted(request.protocol_binding)}; "
            "this IdP answers only with the HTTP-POST binding.",
        )
    _check_instant(request.issue_instant, now, clock_skew)


def check_logout_request(
    request: LogoutRequest, idp: IdpEndpoints, *, now: datetime, clock_skew: int
) -> None:
    """Refuse a LogoutRequest sent elsewhere, outside the clock skew or already expired."""
    _check_destination(request.destination, idp.slo_url)
    _check_instant(request.issue_instant, now, clock_skew)
    expiry = request.not_on_or_after
    if expiry is not None and now - expiry >= timedelta(seconds=clock_skew):
        raise SamlRefusal(
            "stale",
            f"The logout request expired at {format_instant(expiry)}; sign out again at the SP.",
        )


def check_issuer(issuer: str, sp: SpConfig) -> None:
    """The message must come from the configured SP."""
    if issuer != sp.entity_id:
        raise SamlRefusal(
            "issuer_mismatch",
            f"The message comes from the SP {quoted(issuer)}, but this service is configured "
            f"for {quoted(sp.entity_id)}; check the SP entity ID in the SAML configuration.",
        )


def check_signature(message: ReceivedMessage, root: etree._Element, sp: SpConfig) -> None:
    """Require a signature when the SP config says so; verify a present one if we can.

    HTTP-Redirect messages are signed over the query (``SigAlg``/``Signature``), HTTP-POST
    ones by an enveloped XML signature. Without ``sp_certificate`` a signature is ignored.
    """
    if message.binding == c.BINDING_REDIRECT:
        signed = message.query_signature is not None
    else:
        signed = is_signed(root)
    if not signed:
        if sp.want_authn_requests_signed:
            raise SamlRefusal(
                "signature_missing",
                "This service accepts only signed requests and the request is not signed; "
                "enable request signing at the SP.",
            )
        return
    if sp.sp_certificate is None:
        return
    if message.query_signature is not None:
        query = message.query_signature
        verify_query(query.signed, query.algorithm, query.value, sp.sp_certificate)
    else:
        verify_enveloped(root, sp.sp_certificate)


def sso_error(
    request: AuthnRequest, sp: SpConfig, *, has_session: bool, achievable: Sequence[str]
) -> ErrorStatus | None:
    """The SAML error to answer at the ACS instead of signing in, if any, in this order.

    InvalidNameIDPolicy when NameIDPolicy/@Format is neither unspecified nor the configured
    format; NoAuthnContext when the RequestedAuthnContext fits none of the ``achievable``
    classes (every class any sign-in at this IdP could achieve for the request, e.g.
    ``PASSWORD_SIGN_IN``); NoPassive when IsPassive and the user would have to log in (no
    session, or ForceAuthn asks for a fresh login).
    """
    requested = request.name_id_format
    if requested not in (None, c.NAMEID_UNSPECIFIED, sp.name_id_format):
        return INVALID_NAMEID_POLICY
    if choose_class(request.requested_context, achievable) is None:
        return NO_AUTHN_CONTEXT
    if request.is_passive and (not has_session or request.force_authn):
        return NO_PASSIVE
    return None


def _check_destination(destination: str | None, expected: str) -> None:
    if destination is not None and destination != expected:
        raise SamlRefusal(
            "destination",
            f"The message is addressed to {quoted(destination)}, not to this IdP endpoint "
            f"{quoted(expected)}; check the IdP metadata the SP uses.",
        )


def _check_instant(instant: datetime, now: datetime, clock_skew: int) -> None:
    skew = timedelta(seconds=clock_skew)
    if abs(now - instant) > skew:
        when = "before" if instant < now else "after"
        raise SamlRefusal(
            "stale",
            f"The message was issued at {format_instant(instant)}, more than {clock_skew} s "
            f"{when} the IdP's clock; start the sign-in again, or check the SP's clock.",
        )
