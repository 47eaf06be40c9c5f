"""A service's SAML IdP setup: the SP it serves, who may sign in to it, its signing certificates.

Every write takes the service's row lock first (SELECT ... FOR NO KEY UPDATE on PostgreSQL;
SQLite takes its write lock at BEGIN), so configure, delete and rotations queue up instead of
racing. Callers announce each committed change to every worker's SSO cache.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.domain.errors import Conflict, Invalid, NotFound
from idp.domain.shapes import iso
from idp.domain.sp_sources import Resolved, is_rsa_certificate
from idp.settings import Settings
from idp.store.models import Organization, SamlCertificate, SamlConfig, Service

FIELDS = (
    "enabled",
    "entity_id",
    "acs_url",
    "name_id_format",
    "attribute_mapping",
    "sign_assertions",
    "sign_response",
    "sp_certificate",
    "want_authn_requests_signed",
    "slo_url",
    "allowed_groups",
    "require_subscription",
    "require_mfa",
    "acs_urls",
    "sp_encryption_certificate",
    "encrypt_assertions",
    "attribute_values",
)
DEFAULTS: dict[str, Any] = {
    "want_authn_requests_signed": False,
    "allowed_groups": [],
    "require_subscription": False,
    "require_mfa": False,
    "acs_urls": [],
    "encrypt_assertions": False,
    "attribute_values": [],
}
SOURCE_FIELDS = ("preset", "sp_metadata_url", "metadata_refreshed_at", "metadata_error")


def config_json(config: SamlConfig) -> dict[str, Any]:
    """The stored settings, as configure takes them, and where they came from (all public:
    no IdP key material)."""
    stored = {name: getattr(config, name) for name in FIELDS}
    for name, default in DEFAULTS.items():  # rows written before the column existed
        if stored[name] is None:
            stored[name] = default
    stored["acs_urls"] = [_acs_json(entry) for entry in stored["acs_urls"]]
    stored["attribute_values"] = [dict(entry) for entry in stored["attribute_values"]]
    stored["allowed_groups"] = list(stored["allowed_groups"])
    stored.update(_sources_json(config))
    return stored


def _acs_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {"url": entry["url"], "index": entry["index"], "is_default": bool(entry["is_default"])}


def _sources_json(config: SamlConfig) -> dict[str, Any]:
    return {
        "preset": config.preset,
        "sp_metadata_url": config.sp_metadata_url,
        "metadata_refreshed_at": iso(config.metadata_refreshed_at),
        "metadata_error": config.metadata_error,
    }


def certificate_json(cert: SamlCertificate) -> dict[str, Any]:
    """SamlCertificate {id, public_key, valid_from, valid_until, is_active, status}: no
    private key."""
    return {
        "id": cert.id,
        "public_key": cert.certificate_pem,
        "valid_from": iso(cert.valid_from),
        "valid_until": iso(cert.valid_until),
        "is_active": cert.is_active,
        "status": cert.status,
    }


def settings(fields: dict[str, Any]) -> dict[str, Any]:
    """What settings store: defaults filled in, certificates canonical.

    Shaped like ``config_json`` without its sources, so the two compare equal when nothing
    would change. Invalid when the signing or encryption rules are broken.
    """
    wanted: dict[str, Any] = {name: fields.get(name, DEFAULTS.get(name)) for name in FIELDS}
    wanted["allowed_groups"] = list(wanted["allowed_groups"] or ())
    wanted["acs_urls"] = [{"is_default": False, **entry} for entry in wanted["acs_urls"]]
    for name in ("sp_certificate", "sp_encryption_certificate"):
        if wanted[name] is not None:
            wanted[name] = _canonical_pem(wanted[name], name)
    _check(wanted)
    return wanted


def describe(session: Session, svc: Service) -> dict[str, Any]:
    """The configuration with ``has_certificate`` (an active one exists); NotFound if none."""
    config = session.get(SamlConfig, svc.id)
    if config is None:
        raise not_configured(svc)
    return {**config_json(config), "has_certificate": active_certificate(session, svc) is not None}


def locked_config(session: Session, svc: Service) -> SamlConfig | None:
    """Take the service's SAML write lock and read its config (None when not configured)."""
    session.execute(select(Service.id).where(Service.id == svc.id).with_for_update(key_share=True))
    return session.get(SamlConfig, svc.id)


def configure(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    resolved: Resolved,
    *,
    unless_same: bool = False,
) -> str | None:
    """Store the whole configuration (omitted optional fields go back to their defaults) and
    record saml.configure; returns "created" or "updated", or None when ``unless_same`` and
    the stored configuration is already this one (metadata refresh times aside)."""
    wanted = settings(resolved.settings)
    config = locked_config(session, svc)
    before = None if config is None else config_json(config)
    if unless_same and before is not None and _same(before, wanted, resolved):
        return None
    if config is None:
        config = SamlConfig(service_id=svc.id)
        session.add(config)
    for name, value in wanted.items():
        setattr(config, name, value)
    _store_sources(config, resolved)
    session.flush()
    after = config_json(config)
    audit.record_in_service(
        session,
        actor,
        "saml.configure",
        "saml_config",
        svc.id,
        org.id,
        svc.id,
        before=before,
        after=after,
    )
    return "created" if before is None else "updated"


def _same(before: dict[str, Any], wanted: dict[str, Any], resolved: Resolved) -> bool:
    sources = (before["preset"], before["sp_metadata_url"])
    return sources == (resolved.preset, resolved.metadata_url) and all(
        before[name] == value for name, value in wanted.items()
    )


def _store_sources(config: SamlConfig, resolved: Resolved) -> None:
    config.preset = resolved.preset
    config.sp_metadata_url = resolved.metadata_url
    config.sent = resolved.sent if resolved.metadata_url else {}
    config.content_encryption = resolved.content_encryption
    config.metadata_refreshed_at = resolved.refreshed_at
    config.metadata_next_refresh_at = resolved.next_refresh_at
    config.metadata_error = None


def metadata_read(
    session: Session, svc: Service, read_at: datetime | None, next_at: datetime | None
) -> None:
    """Note a good read of the SP's metadata URL that changed nothing."""
    config = locked_config(session, svc)
    if config is not None:
        config.metadata_refreshed_at, config.metadata_next_refresh_at = read_at, next_at
        config.metadata_error = None


def metadata_failed(session: Session, svc: Service, reason: str, retry_at: datetime) -> None:
    """Note a failed read of the SP's metadata URL: the configuration stays as it was."""
    config = locked_config(session, svc)
    if config is not None:
        config.metadata_error, config.metadata_next_refresh_at = reason[:2000], retry_at


def remove(session: Session, actor: audit.Actor, org: Organization, svc: Service) -> None:
    """Delete the configuration and deactivate every certificate (they stay, for the record);
    records saml.delete. NotFound when the service has none."""
    config = locked_config(session, svc)
    if config is None:
        raise not_configured(svc)
    before = config_json(config)
    retired = keys.deactivate_certificates(session, svc.id)
    session.delete(config)
    after = {"deactivated_certificates": retired}
    audit.record_in_service(
        session,
        actor,
        "saml.delete",
        "saml_config",
        svc.id,
        org.id,
        svc.id,
        before=before,
        after=after,
    )


def active_certificate(session: Session, svc: Service) -> SamlCertificate | None:
    """The service's active signing certificate, if any."""
    return session.scalar(
        select(SamlCertificate).where(
            SamlCertificate.service_id == svc.id, SamlCertificate.is_active
        )
    )


def find_active(session: Session, svc: Service) -> SamlCertificate:
    """The active signing certificate, or NotFound."""
    cert = active_certificate(session, svc)
    if cert is None:
        raise NotFound(f"Service '{svc.slug}' has no active SAML signing certificate")
    return cert


def require_configured(session: Session, svc: Service) -> None:
    """Conflict while SAML is not configured (a certificate needs a configuration)."""
    if session.get(SamlConfig, svc.id) is None:
        raise _cannot_generate(svc)


def new_certificate(app_settings: Settings, org: Organization, svc: Service) -> SamlCertificate:
    """A fresh key pair and certificate for the service, not yet stored (slow: make it
    outside the transaction where you can)."""
    return keys.new_certificate(app_settings, org.slug, svc)


def rotate(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    certificate: SamlCertificate,
) -> None:
    """Make ``certificate`` the active one, deactivating every older one in this transaction;
    records saml.certificate.generate. Conflict while SAML is not configured."""
    if locked_config(session, svc) is None:
        raise _cannot_generate(svc)
    retired = keys.activate_certificate(session, certificate)
    _record_certificate(session, actor, org, svc, certificate, "saml.certificate.generate", retired)


def stage(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    certificate: SamlCertificate,
) -> None:
    """Store ``certificate`` as the service's next one: published in metadata beside the
    active one, not used to sign; a previous next one is retired. Conflict while SAML is not
    configured."""
    if locked_config(session, svc) is None:
        raise _cannot_generate(svc)
    retired = list(
        session.scalars(
            update(SamlCertificate)
            .where(SamlCertificate.service_id == svc.id, SamlCertificate.is_next)
            .values(is_next=False)
            .returning(SamlCertificate.id)
        )
    )
    session.flush()
    certificate.is_active, certificate.is_next = False, True
    session.add(certificate)
    session.flush()
    _record_certificate(session, actor, org, svc, certificate, "saml.certificate.stage", retired)


def activate(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, certificate_id: str
) -> SamlCertificate:
    """Make the next certificate the active one and deactivate the old one, in this
    transaction (the active one again: nothing changes). NotFound for a certificate of
    another service; Conflict for an inactive one."""
    if locked_config(session, svc) is None:
        raise _cannot_generate(svc)
    certificate = (
        session.get(SamlCertificate, certificate_id) if len(certificate_id) <= 36 else None
    )
    if certificate is None or certificate.service_id != svc.id:
        raise NotFound(f"Service '{svc.slug}' has no certificate '{certificate_id}'")
    if certificate.is_active:
        return certificate
    if not certificate.is_next:
        raise Conflict("Only the next certificate can be activated; stage a new one first")
    retired = keys.deactivate_certificates(session, svc.id)  # the active one, and this one
    certificate.is_active = True
    session.flush()
    retired = [cert_id for cert_id in retired if cert_id != certificate.id]
    _record_certificate(session, actor, org, svc, certificate, "saml.certificate.activate", retired)
    return certificate


def certificates(session: Session, svc: Service) -> list[SamlCertificate]:
    """Every certificate of the service, newest first."""
    return list(
        session.scalars(
            select(SamlCertificate)
            .where(SamlCertificate.service_id == svc.id)
            .order_by(SamlCertificate.created_at.desc(), SamlCertificate.id)
        )
    )


def _record_certificate(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    certificate: SamlCertificate,
    action: str,
    retired: list[str],
) -> None:
    after = {
        "id": certificate.id,
        "sha256_fingerprint": keys.fingerprint(certificate.certificate_pem),
        "valid_from": iso(certificate.valid_from),
        "valid_until": iso(certificate.valid_until),
        "status": certificate.status,
    }
    before = {"deactivated_certificates": retired}
    audit.record_in_service(
        session,
        actor,
        action,
        "saml_certificate",
        certificate.id,
        org.id,
        svc.id,
        before=before,
        after=after,
    )


def metadata_error_count(session: Session) -> int:
    """How many services' last read of their SP metadata URL failed."""
    query = select(func.count()).where(SamlConfig.metadata_error.is_not(None))
    return int(session.scalar(query) or 0)


def not_configured(svc: Service) -> NotFound:
    """The error for reading or deleting a configuration the service does not have."""
    return NotFound(f"SAML is not configured for service '{svc.slug}'")


def _cannot_generate(svc: Service) -> Conflict:
    return Conflict(f"SAML is not configured for service '{svc.slug}'; configure it first")


def _check(wanted: dict[str, Any]) -> None:
    """The signing rules: some signature, and signed requests only with an SP certificate."""
    if not wanted["sign_assertions"] and not wanted["sign_response"]:
        reason = "must be true when sign_assertions is false: no SP accepts an unsigned response"
        raise Invalid("The request is invalid", {"sign_response": reason})
    if wanted["want_authn_requests_signed"] and wanted["sp_certificate"] is None:
        reason = "can be true only with an sp_certificate to verify the requests against"
        raise Invalid("The request is invalid", {"want_authn_requests_signed": reason})
    encryption = wanted["sp_encryption_certificate"]
    if wanted["encrypt_assertions"] and encryption is None:
        reason = "can be true only with an sp_encryption_certificate (sent, or in the metadata)"
        raise Invalid("The request is invalid", {"encrypt_assertions": reason})
    if encryption is not None and not is_rsa_certificate(encryption):
        reason = "must hold an RSA public key (assertions are encrypted with RSA-OAEP)"
        raise Invalid("The request is invalid", {"sp_encryption_certificate": reason})


def _canonical_pem(pem: str, field: str) -> str:
    """The one certificate of a PEM text, re-encoded: nothing else is kept."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        reason = "must be a PEM X.509 certificate"
        raise Invalid("The request is invalid", {field: reason}) from None
    return cert.public_bytes(Encoding.PEM).decode()
