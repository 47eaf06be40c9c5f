"""Where a service's SP settings come from: the fields the admin sent, the SP's metadata (given
as XML or fetched from its URL) and a preset for a well-known SP. Sent fields win over the
metadata, and the metadata over the preset.

The result still has to pass the API's settings schema (the same rules as fields sent by
hand: an ACS read from metadata must be https, say); the caller checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from idp.domain import presets
from idp.domain.errors import Invalid
from idp.saml.config import AES128_GCM, AES256_GCM
from idp.saml.sp_metadata import MetadataError, SpMetadata, parse_sp_metadata

SOURCES = ("preset", "sp_metadata", "sp_metadata_url")
MIN_REFRESH = timedelta(minutes=5)
RETRY_AFTER_FAILURE = timedelta(hours=1)

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class Resolved:
    """A configuration to store: its settings, and where they came from."""

    settings: dict[str, Any]  # every setting sent or read, without the sources
    sent: dict[str, Any]  # what the admin sent, but the metadata XML (re-merged on refresh)
    preset: str | None
    metadata_url: str | None
    content_encryption: str | None  # AES128_GCM when the SP's metadata offers only that
    refreshed_at: datetime | None  # when the metadata URL was last read
    next_refresh_at: datetime | None


def resolve(sent: dict[str, Any], now: datetime, fetch: Fetch, max_refresh: timedelta) -> Resolved:
    """Merge the preset, the SP metadata and the sent fields (Invalid when the metadata cannot
    be read: a 400 naming the source)."""
    preset = sent.get("preset")
    url = sent.get("sp_metadata_url")
    metadata = _metadata(sent, now, fetch)
    settings = presets.apply(preset, {}) if preset else {}
    if metadata is not None:
        settings.update(metadata_settings(metadata))
    settings.update({k: v for k, v in sent.items() if k not in SOURCES})
    _default_acs(settings)
    return Resolved(
        settings=settings,
        sent={k: v for k, v in sent.items() if k != "sp_metadata"},
        preset=preset,
        metadata_url=url,
        content_encryption=content_encryption(metadata),
        refreshed_at=now if url else None,
        next_refresh_at=next_refresh(metadata, now, max_refresh) if url else None,
    )


def _metadata(sent: dict[str, Any], now: datetime, fetch: Fetch) -> SpMetadata | None:
    for source in ("sp_metadata", "sp_metadata_url"):
        value = sent.get(source)
        if value is None:
            continue
        try:
            xml = fetch(value) if source == "sp_metadata_url" else value
            return parse_sp_metadata(xml, now, entity_id=sent.get("entity_id"))
        except MetadataError as exc:
            raise Invalid("The SP metadata cannot be used", {source: exc.message}) from None
    return None


def metadata_settings(metadata: SpMetadata) -> dict[str, Any]:
    """The settings SP metadata gives: entity ID, ACS URLs, SLO URL, certificates, whether it
    signs its requests, its NameID format."""
    settings: dict[str, Any] = {
        "entity_id": metadata.entity_id,
        "acs_urls": [
            {"url": acs.url, "index": acs.index, "is_default": acs.is_default}
            for acs in metadata.acs_urls
        ],
        "slo_url": metadata.slo_url,
        "sp_certificate": next(iter(metadata.signing_certificates), None),
        "sp_encryption_certificate": next(
            (pem for pem in metadata.encryption_certificates if is_rsa_certificate(pem)), None
        ),
    }
    if metadata.authn_requests_signed is not None:
        settings["want_authn_requests_signed"] = metadata.authn_requests_signed
    if metadata.name_id_format is not None:
        settings["name_id_format"] = metadata.name_id_format
    return settings


def is_rsa_certificate(pem: str) -> bool:
    """True for the certificate of an RSA key: the only kind assertions are encrypted to."""
    try:
        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    except (ValueError, UnsupportedAlgorithm):  # a key type cryptography does not know
        return False
    return isinstance(key, rsa.RSAPublicKey)


def content_encryption(metadata: SpMetadata | None) -> str | None:
    """AES-128-GCM when the SP lists encryption methods and only that GCM one; else the
    default, AES-256-GCM (None)."""
    methods = set(metadata.encryption_methods) if metadata is not None else set()
    return AES128_GCM if AES128_GCM in methods and AES256_GCM not in methods else None


def next_refresh(metadata: SpMetadata | None, now: datetime, max_refresh: timedelta) -> datetime:
    """When to read a metadata URL again: after its cacheDuration, before its validUntil,
    never sooner than MIN_REFRESH nor later than ``max_refresh`` (daily by default)."""
    wait = max_refresh
    if metadata is not None and metadata.cache_duration is not None:
        wait = min(wait, metadata.cache_duration)
    if metadata is not None and metadata.valid_until is not None:
        wait = min(wait, (metadata.valid_until - now) / 2)
    return now + max(wait, min(MIN_REFRESH, max_refresh))


def _default_acs(settings: dict[str, Any]) -> None:
    """Unless sent, ``acs_url`` (the default ACS) is the first of ``acs_urls`` marked default,
    else the one with the lowest index."""
    listed = settings.get("acs_urls") or []
    if listed and "acs_url" not in settings:
        default = next((e for e in listed if e.get("is_default")), None)
        settings["acs_url"] = (default or min(listed, key=lambda e: e["index"]))["url"]
