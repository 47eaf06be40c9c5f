"""What the SAML core needs to know about the SP it answers (and, re-exported, this IdP)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from idp.saml.attributes import USER_FIELDS, AttributeValue
from idp.saml.constants import NAMEID_FORMATS
from idp.saml.metadata import IdpEndpoints

__all__ = ["AES128_GCM", "AES256_GCM", "AcsUrl", "IdpEndpoints", "SpConfig"]

AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"


@dataclass(frozen=True)
class AcsUrl:
    """One of the SP's AssertionConsumerService endpoints (HTTP-POST)."""

    url: str
    index: int
    is_default: bool = False


@dataclass(frozen=True)
class SpConfig:
    """A service's SAML configuration (CONTRACT §3 ``saml.configure``)."""

    entity_id: str
    acs_url: str
    name_id_format: str
    attribute_mapping: Mapping[str, str]
    sign_assertions: bool
    sign_response: bool
    sp_certificate: str | None = None
    want_authn_requests_signed: bool = False
    slo_url: str | None = None
    acs_urls: tuple[AcsUrl, ...] = ()  # every ACS the SP may name; acs_url is the default
    encrypt_assertions: bool = False
    encryption_certificate: str | None = None  # the SP's PEM encryption certificate
    content_encryption: str = AES256_GCM  # AES128_GCM when the SP lists only that
    attribute_values: tuple[AttributeValue, ...] = ()  # constants, and values per group

    def acs_for(self, url: str | None, index: int | None) -> str | None:
        """The ACS a request names by URL and/or index (exact match only; the first listed
        wins), or the default one when it names none; None when the SP has no such ACS.

        The default ``acs_url`` can always be named by its URL; an index names only a listed
        ACS (the default one has index 0 when none is listed)."""
        if url is None and index is None:
            return self.acs_url
        listed = self.acs_urls or (AcsUrl(self.acs_url, 0, True),)
        if index is None and url == self.acs_url:
            return url
        return next(
            (
                endpoint.url
                for endpoint in listed
                if url in (None, endpoint.url) and index in (None, endpoint.index)
            ),
            None,
        )

    def __post_init__(self) -> None:
        if self.name_id_format not in NAMEID_FORMATS:
            raise ValueError(f"unknown NameID format {self.name_id_format!r}")
        unknown = set(self.attribute_mapping) - USER_FIELDS
        if unknown:
            raise ValueError(f"attribute_mapping names unknown user fields {sorted(unknown)}")
        if not (self.sign_assertions or self.sign_response):
            raise ValueError("at least one of sign_assertions and sign_response must be true")
        if self.want_authn_requests_signed and not self.sp_certificate:
            raise ValueError("want_authn_requests_signed needs sp_certificate")
        if self.encrypt_assertions and not self.encryption_certificate:
            raise ValueError("encrypt_assertions needs an encryption certificate")
        if self.content_encryption not in (AES256_GCM, AES128_GCM):
            raise ValueError(f"unsupported content encryption {self.content_encryption!r}")
