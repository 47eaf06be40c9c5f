"""A service's SAML IdP setup: the SP it serves, who may sign in to it, its signing certificates.

Every write takes the service's row lock first (SELECT ... FOR NO KEY UPDATE on PostgreSQL;
SQLite takes its write lock at BEGIN), so configure, delete and rotations queue up instead of
racing. Callers announce each committed change to every worker's SSO cache.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.domain.errors import Conflict, Invalid, NotFound
from idp.domain.shapes import iso
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
)
DEFAULTS: dict[str, Any] = {
    "want_authn_requests_signed": False,
    "allowed_groups": [],
    "require_subscription": False,
    "require_mfa": False,
}


def config_json(config: SamlConfig) -> dict[str, Any]:
    """The stored settings, as configure takes them (all public: no IdP key material)."""
    stored = {name: getattr(config, name) for name in FIELDS}
    stored["allowed_groups"] = list(config.allowed_groups or [])
    stored["require_subscription"] = bool(config.require_subscription)
    stored["require_mfa"] = bool(config.require_mfa)
    return stored


def certificate_json(cert: SamlCertificate) -> dict[str, Any]:
    """SamlCertificate {id, public_key, valid_from, valid_until, is_active}: no private key."""
    return {
        "id": cert.id,
        "public_key": cert.certificate_pem,
        "valid_from": iso(cert.valid_from),
        "valid_until": iso(cert.valid_until),
        "is_active": cert.is_active,
    }


def settings(fields: dict[str, Any]) -> dict[str, Any]:
    """What ConfigureSaml fields store: defaults filled in, the SP certificate canonical.

    Shaped like ``config_json``, so the two compare equal when nothing would change. Invalid
    when the signing rules are broken.
    """
    wanted = {name: fields.get(name, DEFAULTS.get(name)) for name in FIELDS}
    wanted["allowed_groups"] = list(wanted["allowed_groups"] or ())
    if wanted["sp_certificate"] is not None:
        wanted["sp_certificate"] = _canonical_pem(wanted["sp_certificate"])
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
    fields: dict[str, Any],
    *,
    unless_same: bool = False,
) -> str | None:
    """Store the whole configuration (omitted optional fields go back to their defaults) and
    record saml.configure; returns "created" or "updated", or None when ``unless_same`` and
    the stored configuration is already this one."""
    wanted = settings(fields)
    config = locked_config(session, svc)
    before = None if config is None else config_json(config)
    if unless_same and before == wanted:
        return None
    if config is None:
        config = SamlConfig(service_id=svc.id)
        session.add(config)
    for name, value in wanted.items():
        setattr(config, name, value)
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
    after = {
        "id": certificate.id,
        "sha256_fingerprint": keys.fingerprint(certificate.certificate_pem),
        "valid_from": iso(certificate.valid_from),
        "valid_until": iso(certificate.valid_until),
    }
    before = {"deactivated_certificates": retired}
    audit.record_in_service(
        session,
        actor,
        "saml.certificate.generate",
        "saml_certificate",
        certificate.id,
        org.id,
        svc.id,
        before=before,
        after=after,
    )


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


def _canonical_pem(pem: str) -> str:
    """The one certificate of a PEM text, re-encoded: nothing else is kept."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise Invalid(
            "The request is invalid", {"sp_certificate": "must be a PEM X.509 certificate"}
        ) from None
    return cert.public_bytes(Encoding.PEM).decode()
