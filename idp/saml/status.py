"""SAML error statuses answered to the SP (not refusals: the SP asked a fair question)."""

from __future__ import annotations

from dataclasses import dataclass

from idp.saml import constants as c


@dataclass(frozen=True)
class ErrorStatus:
    """A top-level status code, its second-level code and a StatusMessage."""

    top: str
    code: str
    message: str


NO_PASSIVE = ErrorStatus(
    c.STATUS_RESPONDER,
    c.STATUS_NO_PASSIVE,
    "The request does not allow the user to sign in and there is no current IdP session.",
)
INVALID_NAMEID_POLICY = ErrorStatus(
    c.STATUS_REQUESTER,
    c.STATUS_INVALID_NAMEID_POLICY,
    "The requested NameID format is not the one configured for this service.",
)
REQUEST_DENIED = ErrorStatus(
    c.STATUS_RESPONDER,
    c.STATUS_REQUEST_DENIED,
    "The user may not sign in to this service.",
)
NO_AUTHN_CONTEXT = ErrorStatus(
    c.STATUS_RESPONDER,
    c.STATUS_NO_AUTHN_CONTEXT,
    "The service asks for a kind of authentication this IdP cannot provide.",
)
UNKNOWN_PRINCIPAL = ErrorStatus(
    c.STATUS_REQUESTER,
    c.STATUS_UNKNOWN_PRINCIPAL,
    "The logout request names a user or session that is not signed in here.",
)
