"""Building the IdP's Responses: a signed assertion for the SP, or a signed error status."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from lxml import etree

from idp.saml import constants as c
from idp.saml.attributes import UserInfo, attributes
from idp.saml.config import IdpEndpoints, SpConfig
from idp.saml.encryption import encrypt_assertion
from idp.saml.nameid import NameId
from idp.saml.signing import SigningKey
from idp.saml.status import ErrorStatus
from idp.saml.xml import format_instant

NSMAP = {"samlp": c.SAMLP_NS, "saml": c.SAML_NS}
NOT_BEFORE_MARGIN = timedelta(seconds=60)


def _p(name: str) -> str:
    return f"{{{c.SAMLP_NS}}}{name}"


def _a(name: str) -> str:
    return f"{{{c.SAML_NS}}}{name}"


def new_id() -> str:
    """A fresh, unguessable SAML ID (an NCName: it starts with an underscore)."""
    return "_" + secrets.token_hex(20)


def protocol_message(
    name: str, idp: IdpEndpoints, destination: str, in_response_to: str | None, issued: str
) -> etree._Element:
    """A ``samlp`` response root with ID, times, Destination, InResponseTo and our Issuer."""
    message = etree.Element(_p(name), nsmap=NSMAP)
    message.set("ID", new_id())
    message.set("Version", "2.0")
    message.set("IssueInstant", issued)
    message.set("Destination", destination)
    if in_response_to is not None:
        message.set("InResponseTo", in_response_to)
    etree.SubElement(message, _a("Issuer")).text = idp.entity_id
    return message


def add_status(message: etree._Element, error: ErrorStatus | None = None) -> None:
    """Success, or the error's two-level status code and message."""
    status = etree.SubElement(message, _p("Status"))
    code = etree.SubElement(status, _p("StatusCode"))
    if error is None:
        code.set("Value", c.STATUS_SUCCESS)
        return
    code.set("Value", error.top)
    etree.SubElement(code, _p("StatusCode")).set("Value", error.code)
    etree.SubElement(status, _p("StatusMessage")).text = error.message


def build_response(
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
) -> bytes:
    """A successful Response to ``sp.acs_url``, signed as the SP's flags say.

    ``authn_context_class`` is the AuthnContextClassRef asserted (see ``choose_class``).
    """
    now = now.replace(microsecond=0)
    issued = format_instant(now)
    expires = format_instant(now + timedelta(seconds=assertion_ttl))
    response = protocol_message("Response", idp, sp.acs_url, in_response_to, issued)
    add_status(response)
    assertion = etree.SubElement(response, _a("Assertion"))
    assertion.set("ID", new_id())
    assertion.set("Version", "2.0")
    assertion.set("IssueInstant", issued)
    etree.SubElement(assertion, _a("Issuer")).text = idp.entity_id
    _subject(assertion, sp, name_id, in_response_to, expires)
    conditions = etree.SubElement(assertion, _a("Conditions"))
    conditions.set("NotBefore", format_instant(now - NOT_BEFORE_MARGIN))
    conditions.set("NotOnOrAfter", expires)
    restriction = etree.SubElement(conditions, _a("AudienceRestriction"))
    etree.SubElement(restriction, _a("Audience")).text = sp.entity_id
    statement = etree.SubElement(assertion, _a("AuthnStatement"))
    statement.set("AuthnInstant", format_instant(authn_instant))
    statement.set("SessionIndex", session_index)
    statement.set("SessionNotOnOrAfter", format_instant(session_not_on_or_after))
    context = etree.SubElement(statement, _a("AuthnContext"))
    etree.SubElement(context, _a("AuthnContextClassRef")).text = authn_context_class
    _attribute_statement(assertion, user, sp)
    _protect(response, assertion, sp, key)
    return bytes(etree.tostring(response))


def build_error_response(
    error: ErrorStatus,
    *,
    sp: SpConfig,
    idp: IdpEndpoints,
    key: SigningKey,
    in_response_to: str | None,
    now: datetime,
) -> bytes:
    """A signed Response to ``sp.acs_url`` carrying an error status and no assertion."""
    response = protocol_message("Response", idp, sp.acs_url, in_response_to, format_instant(now))
    add_status(response, error)
    key.sign(response)
    return bytes(etree.tostring(response))


def _protect(
    response: etree._Element, assertion: etree._Element, sp: SpConfig, key: SigningKey
) -> None:
    """Sign the assertion, encrypt it in its place, then sign the response, as ``sp`` says.

    The response signature covers the EncryptedAssertion (CONTRACT §8: signed, then encrypted).
    """
    if sp.sign_assertions:
        key.sign(assertion)
    if sp.encrypt_assertions:
        assert sp.encryption_certificate is not None  # SpConfig guarantees it
        encrypted = encrypt_assertion(assertion, sp.encryption_certificate, sp.content_encryption)
        response.replace(assertion, encrypted)
    if sp.sign_response:
        key.sign(response)


def _subject(
    assertion: etree._Element,
    sp: SpConfig,
    name_id: NameId,
    in_response_to: str | None,
    expires: str,
) -> None:
    subject = etree.SubElement(assertion, _a("Subject"))
    name = etree.SubElement(subject, _a("NameID"))
    name.set("Format", name_id.format)
    if name_id.name_qualifier is not None:
        name.set("NameQualifier", name_id.name_qualifier)
    if name_id.sp_name_qualifier is not None:
        name.set("SPNameQualifier", name_id.sp_name_qualifier)
    name.text = name_id.value
    confirmation = etree.SubElement(subject, _a("SubjectConfirmation"))
    confirmation.set("Method", c.CONFIRMATION_BEARER)
    data = etree.SubElement(confirmation, _a("SubjectConfirmationData"))
    data.set("NotOnOrAfter", expires)
    data.set("Recipient", sp.acs_url)
    if in_response_to is not None:
        data.set("InResponseTo", in_response_to)


def _attribute_statement(assertion: etree._Element, user: UserInfo, sp: SpConfig) -> None:
    found = attributes(user, sp.attribute_mapping, sp.attribute_values)
    if not found:
        return
    statement = etree.SubElement(assertion, _a("AttributeStatement"))
    for attribute in found:
        element = etree.SubElement(statement, _a("Attribute"))
        element.set("Name", attribute.name)
        element.set("NameFormat", attribute.name_format)
        for value in attribute.values:
            etree.SubElement(element, _a("AttributeValue")).text = value
