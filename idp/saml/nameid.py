"""The NameID the IdP asserts for a user, per the SP's configured format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from idp.saml import constants as c

PERSISTENT_LABEL = b"idp saml persistent nameid\x00"


@dataclass(frozen=True)
class NameId:
    """A SAML NameID: value, format and optional qualifiers."""

    value: str
    format: str
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None


def make_name_id(
    name_id_format: str,
    *,
    user_id: str,
    email: str,
    sp_entity_id: str,
    idp_entity_id: str,
    secret: bytes,
) -> NameId:
    """The NameID to assert for a user to one SP.

    emailAddress: the email; unspecified: the user id; persistent: an opaque HMAC-SHA256 of
    (user id, SP entity ID) under ``secret`` (stable per user and SP, unlinkable across SPs);
    transient: a fresh random value on every call, so the caller makes it once per IdP session
    and SP and reuses the stored NameID for later SSO and logout in that session.
    """
    if name_id_format == c.NAMEID_EMAIL:
        return NameId(email, name_id_format)
    if name_id_format == c.NAMEID_UNSPECIFIED:
        return NameId(user_id, name_id_format)
    if name_id_format == c.NAMEID_PERSISTENT:
        value = persistent_value(secret, user_id, sp_entity_id)
    elif name_id_format == c.NAMEID_TRANSIENT:
        value = secrets.token_urlsafe(32)
    else:
        raise ValueError(f"unknown NameID format {name_id_format!r}")
    return NameId(value, name_id_format, idp_entity_id, sp_entity_id)


def persistent_value(secret: bytes, user_id: str, sp_entity_id: str) -> str:
    """The persistent pairwise identifier of a user at one SP."""
    message = PERSISTENT_LABEL + user_id.encode() + b"\x00" + sp_entity_id.encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def subject_matches(subject: NameId, issued: NameId, email: str) -> bool:
    """Whether an AuthnRequest's Subject names the signed-in user.

    True when its value is the NameID the IdP asserts to this SP (``issued``, compared
    exactly), or, for an emailAddress or unspecified Subject, the user's ``email`` (compared
    case-insensitively, surrounding whitespace ignored). An empty Subject matches nobody.
    """
    if not subject.value:
        return False
    if values_equal(subject.value, issued.value):
        return True
    if subject.format not in (c.NAMEID_EMAIL, c.NAMEID_UNSPECIFIED):
        return False
    return values_equal(subject.value.strip().lower(), email.strip().lower())


def values_equal(received: str, expected: str) -> bool:
    """A constant-time comparison (of UTF-8 bytes: ``compare_digest`` takes ASCII ``str`` only)."""
    return hmac.compare_digest(received.encode(), expected.encode())
