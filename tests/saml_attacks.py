"""Hostile SAML messages for the refusal tests and the fuzzers: the XML attacks of CONTRACT §4
and signature-wrapping moves on signed AuthnRequests and LogoutRequests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from lxml import etree

from idp.saml import constants as c

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>"
)
XXE_FILE = b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
XXE_PARAMETER = b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
XXE_NETWORK = b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">'
BARE_DOCTYPE = b"<!DOCTYPE samlp:AuthnRequest>"
# prologue and the Issuer text that uses its entity (CONTRACT §4: DTDs and entities refused)
XML_ATTACKS: dict[str, tuple[bytes, str | None]] = {
    "billion-laughs": (BILLION_LAUGHS, "&lol9;"),
    "xxe-file": (XXE_FILE, "&xxe;"),
    "xxe-parameter-entity": (XXE_PARAMETER, None),
    "external-dtd": (XXE_NETWORK, None),
    "doctype": (BARE_DOCTYPE, None),
}

SIGNATURE = f"{{{c.DS_NS}}}Signature"
REFERENCE = f"{{{c.DS_NS}}}SignedInfo/{{{c.DS_NS}}}Reference"
ISSUER = f"{{{c.SAML_NS}}}Issuer"
NAMEID = f"{{{c.SAML_NS}}}NameID"
SESSION_INDEX = f"{{{c.SAMLP_NS}}}SessionIndex"
EXTENSIONS = f"{{{c.SAMLP_NS}}}Extensions"
ASSERTION = f"{{{c.SAML_NS}}}Assertion"

Move = Callable[[etree._Element], etree._Element]


def _extensions(root: etree._Element) -> etree._Element:
    """The root's Extensions element (after its Issuer and Signature), made if missing."""
    found = root.find(EXTENSIONS)
    if found is None:
        found = etree.Element(EXTENSIONS)
        after = [e for e in (root.find(ISSUER), root.find(SIGNATURE)) if e is not None]
        root.insert(max((root.index(e) for e in after), default=-1) + 1, found)
    return found


def _forged_root(root: etree._Element) -> etree._Element:
    """An unsigned copy of the message under another ID, pointing the answer elsewhere."""
    forged = copy.deepcopy(root)
    for signature in forged.iter(SIGNATURE):
        signature.getparent().remove(signature)
    forged.set("ID", "_forged")
    if forged.get("AssertionConsumerServiceURL") is not None:
        forged.set("AssertionConsumerServiceURL", "https://attacker.example/acs")
    return forged


def wrapped_in_a_forged_root(root: etree._Element) -> etree._Element:
    """XSW: the signed message hidden in the Extensions of a forged, unsigned one."""
    forged = _forged_root(root)
    _extensions(forged).append(root)
    return forged


def signature_moved_to_a_forged_root(root: etree._Element) -> etree._Element:
    """XSW: the forged root carries the signature, whose Reference names the hidden original."""
    forged = _forged_root(root)
    signature = next(root.iter(SIGNATURE), None)
    if signature is not None:
        signature.getparent().remove(signature)
        forged.insert(1, signature)
    _extensions(forged).append(root)
    return forged


def reference_to_another_id(root: etree._Element) -> etree._Element:
    """The signature's Reference points at another element of the document."""
    other = etree.SubElement(_extensions(root), ASSERTION, ID="_other")
    for reference in root.iter(f"{{{c.DS_NS}}}Reference"):
        reference.set("URI", "#_other")
    other.text = "unsigned"
    return root


def duplicate_id(root: etree._Element) -> etree._Element:
    """A second element with the root's ID, which a resolver could pick instead."""
    etree.SubElement(_extensions(root), ASSERTION, ID=root.get("ID") or "_x")
    return root


def second_request_element(root: etree._Element) -> etree._Element:
    """An unsigned second request inside the signed one."""
    _extensions(root).append(_forged_root(root))
    return root


def second_assertion(root: etree._Element) -> etree._Element:
    """An Assertion smuggled into the request."""
    assertion = etree.SubElement(_extensions(root), ASSERTION, ID="_assertion", Version="2.0")
    etree.SubElement(assertion, ISSUER).text = "https://attacker.example"
    subject = etree.SubElement(assertion, f"{{{c.SAML_NS}}}Subject")
    etree.SubElement(subject, NAMEID).text = "admin@example.com"
    return root


def second_issuer(root: etree._Element) -> etree._Element:
    """Another Issuer after the first."""
    issuer = root.find(ISSUER)
    extra = etree.Element(ISSUER)
    extra.text = "https://attacker.example"
    root.insert(root.index(issuer) + 1 if issuer is not None else 0, extra)
    return root


def _comment_inside(tag: str) -> Move:
    def move(root: etree._Element) -> etree._Element:
        """A comment splitting the text (exclusive C14N drops it, the signature still holds)."""
        for element in root.iter(tag):
            text = element.text or ""
            comment = etree.Comment("")
            comment.tail = text[len(text) // 2 :] or "x"
            element.text = text[: len(text) // 2]
            element.append(comment)
        return root

    move.__name__ = f"comment_inside_{etree.QName(tag).localname}"
    return move


AUTHN_MOVES: dict[str, Move] = {
    "wrapped in a forged root": wrapped_in_a_forged_root,
    "signature moved to a forged root": signature_moved_to_a_forged_root,
    "reference to another ID": reference_to_another_id,
    "duplicate ID": duplicate_id,
    "second request element": second_request_element,
    "second Assertion": second_assertion,
    "second Issuer": second_issuer,
    "comment inside Issuer": _comment_inside(ISSUER),
}
LOGOUT_MOVES: dict[str, Move] = {
    **AUTHN_MOVES,
    "comment inside NameID": _comment_inside(NAMEID),
    "comment inside SessionIndex": _comment_inside(SESSION_INDEX),
}


def wrapped(signed: bytes, moves: Sequence[Move]) -> bytes:
    """A signed message after the signature-wrapping moves, in order."""
    root = etree.fromstring(signed)
    for move in moves:
        root = move(root)
    out: bytes = etree.tostring(root)
    return out
