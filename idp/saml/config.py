"""What the SAML core needs to know about the SP it answers (and, re-exported, this IdP)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from idp.saml.attributes import USER_FIELDS
from idp.saml.constants import NAMEID_FORMATS
from idp.saml.metadata import IdpEndpoints

__all__ = ["IdpEndpoints", "SpConfig"]


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
