"""Reading AuthnRequests and LogoutRequests into typed values (no policy checks here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from idp.saml import constants as c
from idp.saml.authn_context import COMPARISONS, EXACT, RequestedContext
from idp.saml.errors import SamlRefusal, quoted
from idp.saml.nameid import NameId
from idp.saml.xml import boolean, parse_instant, text

MAX_ID_LENGTH = 256
AUTHN_REQUEST = f"{{{c.SAMLP_NS}}}AuthnRequest"
LOGOUT_REQUEST = f"{{{c.SAMLP_NS}}}LogoutRequest"
ISSUER = f"{{{c.SAML_NS}}}Issuer"
NAMEID_POLICY = f"{{{c.SAMLP_NS}}}NameIDPolicy"
NAMEID = f"{{{c.SAML_NS}}}NameID"
SESSION_INDEX = f"{{{c.SAMLP_NS}}}SessionIndex"
SUBJECT = f"{{{c.SAML_NS}}}Subject"
REQUESTED_AUTHN_CONTEXT = f"{{{c.SAMLP_NS}}}RequestedAuthnContext"
AUTHN_CONTEXT_CLASS_REF = f"{{{c.SAML_NS}}}AuthnContextClassRef"
AUTHN_CONTEXT_DECL_REF = f"{{{c.SAML_NS}}}AuthnContextDeclRef"


@dataclass(frozen=True)
class AuthnRequest:
    """The parts of a received AuthnRequest the IdP acts on."""

    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    acs_url: str | None
    acs_index: int | None
    protocol_binding: str | None
    force_authn: bool
    is_passive: bool
    name_id_format: str | None
    subject: NameId | None
    requested_context: RequestedContext | None


@dataclass(frozen=True)
class LogoutRequest:
    """The parts of a received LogoutRequest the IdP acts on."""

    id: str
    issuer: str
    issue_instant: datetime
    destination: str | None
    not_on_or_after: datetime | None
    name_id: NameId
    session_indexes: tuple[str, ...]


def read_authn_request(root: etree._Element) -> AuthnRequest:
    """Read a parsed ``samlp:AuthnRequest``; refuse anything else."""
    _expect(root, AUTHN_REQUEST, "AuthnRequest")
    policy = _at_most_one(root, NAMEID_POLICY)
    return AuthnRequest(
        id=_id(root),
        issuer=_issuer(root),
        issue_instant=_issue_instant(root),
        destination=root.get("Destination"),
        acs_url=root.get("AssertionConsumerServiceURL"),
        acs_index=_acs_index(root),
        protocol_binding=root.get("ProtocolBinding"),
        force_authn=boolean(root, "ForceAuthn"),
        is_passive=boolean(root, "IsPassive"),
        name_id_format=None if policy is None else policy.get("Format"),
        subject=_subject(root),
        requested_context=_requested_context(root),
    )


def read_logout_request(root: etree._Element) -> LogoutRequest:
    """Read a parsed ``samlp:LogoutRequest`` naming its subject by a plain NameID."""
    _expect(root, LOGOUT_REQUEST, "LogoutRequest")
    name_id = _at_most_one(root, NAMEID)
    if name_id is None:
        raise SamlRefusal(
            "malformed", "The LogoutRequest has no plain NameID (encrypted IDs are not supported)."
        )
    not_on_or_after = root.get("NotOnOrAfter")
    return LogoutRequest(
        id=_id(root),
        issuer=_issuer(root),
        issue_instant=_issue_instant(root),
        destination=root.get("Destination"),
        not_on_or_after=None
        if not_on_or_after is None
        else parse_instant(not_on_or_after, "NotOnOrAfter"),
        name_id=_name_id(name_id),
        session_indexes=tuple(text(index) for index in root.findall(SESSION_INDEX)),
    )


def _acs_index(root: etree._Element) -> int | None:
    """AssertionConsumerServiceIndex (an xs:unsignedShort), if present."""
    raw = root.get("AssertionConsumerServiceIndex")
    if raw is None:
        return None
    if not raw.strip().isdigit() or int(raw) > 65535:
        raise SamlRefusal("malformed", "AssertionConsumerServiceIndex is not a valid index.")
    return int(raw)


def _subject(root: etree._Element) -> NameId | None:
    """The AuthnRequest's Subject, which must name the user by a plain NameID."""
    subject = _at_most_one(root, SUBJECT)
    if subject is None:
        return None
    name_id = _at_most_one(subject, NAMEID)
    if name_id is None:
        raise SamlRefusal(
            "malformed",
            "The AuthnRequest's Subject has no plain NameID "
            "(encrypted and base IDs are not supported).",
        )
    return _name_id(name_id)


def _requested_context(root: etree._Element) -> RequestedContext | None:
    context = _at_most_one(root, REQUESTED_AUTHN_CONTEXT)
    if context is None:
        return None
    comparison = context.get("Comparison", EXACT)
    if comparison not in COMPARISONS:
        raise SamlRefusal(
            "malformed",
            f"The RequestedAuthnContext Comparison {quoted(comparison)} is not one of "
            "exact, minimum, better or maximum.",
        )
    class_refs = tuple(text(ref) for ref in context.findall(AUTHN_CONTEXT_CLASS_REF))
    if not class_refs and context.find(AUTHN_CONTEXT_DECL_REF) is None:
        raise SamlRefusal("malformed", "The RequestedAuthnContext names no authentication context.")
    return RequestedContext(comparison, class_refs)


def _name_id(element: etree._Element) -> NameId:
    return NameId(
        value=text(element),
        format=element.get("Format") or c.NAMEID_UNSPECIFIED,
        name_qualifier=element.get("NameQualifier"),
        sp_name_qualifier=element.get("SPNameQualifier"),
    )


def _expect(root: etree._Element, tag: str, name: str) -> None:
    if root.tag != tag:
        raise SamlRefusal("malformed", f"The message is not a SAML 2.0 {name}.")
    if root.get("Version") != "2.0":
        raise SamlRefusal("malformed", f"The {name} is not SAML version 2.0.")


def _id(root: etree._Element) -> str:
    value = root.get("ID")
    if not value or len(value) > MAX_ID_LENGTH:
        raise SamlRefusal(
            "malformed", f"The message has no usable ID (1 to {MAX_ID_LENGTH} characters)."
        )
    return str(value)


def _issuer(root: etree._Element) -> str:
    issuer = _at_most_one(root, ISSUER)
    if issuer is None:
        raise SamlRefusal(
            "issuer_mismatch", "The message names no Issuer, so its sender is unknown."
        )
    return text(issuer)


def _issue_instant(root: etree._Element) -> datetime:
    value = root.get("IssueInstant")
    if value is None:
        raise SamlRefusal("malformed", "The message has no IssueInstant.")
    return parse_instant(value, "IssueInstant")


def _at_most_one(root: etree._Element, tag: str) -> etree._Element | None:
    found = root.findall(tag)
    if len(found) > 1:
        raise SamlRefusal(
            "malformed", f"The message holds more than one {quoted(etree.QName(tag).localname)}."
        )
    return found[0] if found else None
