"""Safe XML parsing and the XML Schema value types SAML messages carry."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from idp.saml.errors import SamlRefusal, quoted

MAX_XML_BYTES = 64 * 1024
XML_WHITESPACE = " \t\r\n"
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def parse(data: bytes) -> etree._Element:
    """Parse a received message with DTDs, entities and network access off; refuse any DTD."""
    if len(data) > MAX_XML_BYTES:
        raise SamlRefusal("too_large", f"The SAML message is larger than {MAX_XML_BYTES} bytes.")
    if b"<!DOCTYPE" in data:
        raise _dtd_refusal()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise SamlRefusal("malformed", f"The SAML message is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise _dtd_refusal()
    return root


def _dtd_refusal() -> SamlRefusal:
    """DTDs are refused outright: found in the bytes (UTF-8) or, other encodings, after parsing."""
    return SamlRefusal(
        "dtd", "The SAML message contains a DTD or entity declaration, which is never accepted."
    )


def text(element: etree._Element) -> str:
    """The text of a simple element, refusing comments or markup that could split it."""
    if len(element):
        raise SamlRefusal(
            "malformed",
            f"The SAML element <{etree.QName(element).localname}> holds markup or a comment "
            "where plain text is expected.",
        )
    return (element.text or "").strip(XML_WHITESPACE)


def boolean(element: etree._Element, name: str) -> bool:
    """An optional xs:boolean attribute (true/false/1/0), false when absent."""
    value = element.get(name)
    if value is None:
        return False
    try:
        return BOOLEANS[value.strip(XML_WHITESPACE)]
    except KeyError:
        raise SamlRefusal(
            "malformed", f"{name}={quoted(value)} is not a boolean (true, false, 1 or 0)."
        ) from None


def parse_instant(value: str, name: str) -> datetime:
    """An xs:dateTime in UTC; without a zone it is read as UTC."""
    try:
        if "T" not in value:
            raise ValueError
        instant = datetime.fromisoformat(value.strip(XML_WHITESPACE))
        if instant.tzinfo is None:
            return instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):
        raise SamlRefusal("malformed", f"{name}={quoted(value)} is not a valid time.") from None


def format_instant(instant: datetime) -> str:
    """An xs:dateTime in UTC with a ``Z``, to the second."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
