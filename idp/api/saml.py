"""A service's SAML IdP setup: the SP it serves, and its signing certificates.

Every write takes the service's row lock first (SELECT ... FOR NO KEY UPDATE on PostgreSQL;
SQLite takes its write lock at BEGIN), so configure, delete and rotations queue up instead of
racing, and is announced to every worker's SSO cache after its commit.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.api import access
from idp.api.access import Need
from idp.api.errors import ApiError, conflict, not_found
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP, iso
from idp.runtime import runtime
from idp.saml.attributes import USER_FIELDS
from idp.saml.constants import NAMEID_FORMATS
from idp.store.models import Organization, SamlCertificate, SamlConfig, Service

bp = Blueprint("saml", __name__)

ENDPOINT_URL = {"type": "string", "format": "endpoint-url", "maxLength": 2048}
SETTINGS = {
    "enabled": {"type": "boolean"},
    "entity_id": {
        "type": "string",
        "maxLength": 1024,
        "pattern": r"^[^\s\x00-\x1f\x7f]+$",
        "x-reason": "must be a non-empty URI without spaces or control characters",
    },
    "acs_url": ENDPOINT_URL,
    "name_id_format": {"type": "string", "enum": sorted(NAMEID_FORMATS)},
    "attribute_mapping": {
        "type": "object",
        "propertyNames": {
            "enum": sorted(USER_FIELDS),
            "x-reason": "keys must be user fields: " + ", ".join(sorted(USER_FIELDS)),
        },
        "additionalProperties": {
            "type": "string",
            "maxLength": 1024,
            "pattern": r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
            "x-reason": "must be a non-empty SAML attribute name without control characters "
            "or surrounding spaces",
        },
    },
    "sign_assertions": {"type": "boolean"},
    "sign_response": {"type": "boolean"},
    "sp_certificate": {"type": ["string", "null"], "format": "pem-certificate", "maxLength": 16384},
    "want_authn_requests_signed": {"type": "boolean"},
    "slo_url": {**ENDPOINT_URL, "type": ["string", "null"]},
}
REQUIRED = [
    "enabled",
    "entity_id",
    "acs_url",
    "name_id_format",
    "attribute_mapping",
    "sign_assertions",
    "sign_response",
]

component(
    "ConfigureSaml",
    {
        "type": "object",
        "required": REQUIRED,
        "additionalProperties": False,
        "properties": SETTINGS,
        "allOf": [
            {
                "if": {
                    "required": ["sign_assertions"],
                    "properties": {"sign_assertions": {"const": False}},
                },
                "then": {
                    "properties": {
                        "sign_response": {
                            "enum": [True],
                            "x-reason": "must be true when sign_assertions is false: "
                            "no SP accepts an unsigned response",
                        }
                    }
                },
            },
            {
                "if": {
                    "not": {
                        "required": ["sp_certificate"],
                        "properties": {"sp_certificate": {"type": "string"}},
                    }
                },
                "then": {
                    "properties": {
                        "want_authn_requests_signed": {
                            "enum": [False],
                            "x-reason": "can be true only with an sp_certificate to verify "
                            "the requests against",
                        }
                    }
                },
            },
        ],
    },
)
component(
    "SamlConfig",
    {
        "type": "object",
        "required": [*SETTINGS, "has_certificate"],
        "additionalProperties": False,
        "properties": {**SETTINGS, "has_certificate": {"type": "boolean"}},
    },
)
component(
    "ConfigureSamlResponse",
    {
        "type": "object",
        "required": ["message"],
        "additionalProperties": False,
        "properties": {"message": {"type": "string"}},
    },
)
component(
    "SamlCertificate",
    {
        "type": "object",
        "required": ["id", "public_key", "valid_from", "valid_until", "is_active"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "public_key": {"type": "string"},
            "valid_from": TIMESTAMP,
            "valid_until": TIMESTAMP,
            "is_active": {"type": "boolean"},
        },
    },
)


def config_json(config: SamlConfig) -> dict[str, Any]:
    """The stored settings, as configure takes them (all public: no IdP key material)."""
    return {name: getattr(config, name) for name in SETTINGS}


def certificate_json(cert: SamlCertificate) -> dict[str, Any]:
    """SamlCertificate {id, public_key, valid_from, valid_until, is_active}: no private key."""
    return {
        "id": cert.id,
        "public_key": cert.certificate_pem,
        "valid_from": iso(cert.valid_from),
        "valid_until": iso(cert.valid_until),
        "is_active": cert.is_active,
    }


def active_certificate(session: Session, service_id: str) -> SamlCertificate | None:
    return session.scalar(
        select(SamlCertificate).where(
            SamlCertificate.service_id == service_id, SamlCertificate.is_active
        )
    )


def locked_config(session: Session, service: Service) -> SamlConfig | None:
    """Take the service's SAML write lock and read its config (None when not configured)."""
    session.execute(
        select(Service.id).where(Service.id == service.id).with_for_update(key_share=True)
    )
    return session.get(SamlConfig, service.id)


def desired_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """What a validated ConfigureSaml body stores: defaults filled in, the SP certificate canonical.

    Shaped like ``config_json``, so the two compare equal when nothing would change.
    """
    settings = {name: payload.get(name) for name in SETTINGS}
    settings["want_authn_requests_signed"] = payload.get("want_authn_requests_signed", False)
    if settings["sp_certificate"] is not None:
        settings["sp_certificate"] = _canonical_pem(settings["sp_certificate"])
    return settings


def write_config(
    session: Session,
    actor: audit.Actor,
    organization: Organization,
    service: Service,
    settings: dict[str, Any],
) -> None:
    """Take the service's SAML write lock, store the settings, and record saml.configure."""
    config = locked_config(session, service)
    before = None if config is None else config_json(config)
    if config is None:
        config = SamlConfig(service_id=service.id)
        session.add(config)
    for name, value in settings.items():
        setattr(config, name, value)
    session.flush()
    audit.record(
        session,
        actor,
        "saml.configure",
        "saml_config",
        service.id,
        organization_id=organization.id,
        service_id=service.id,
        before=before,
        after=config_json(config),
    )


def remove_config(
    session: Session, actor: audit.Actor, organization: Organization, service: Service
) -> bool:
    """Delete the SAML configuration (certificates deactivated) and record saml.delete.

    False when the service had none. Takes the service's SAML write lock.
    """
    config = locked_config(session, service)
    if config is None:
        return False
    before = config_json(config)
    retired = keys.deactivate_certificates(session, service.id)
    session.delete(config)
    audit.record(
        session,
        actor,
        "saml.delete",
        "saml_config",
        service.id,
        organization_id=organization.id,
        service_id=service.id,
        before=before,
        after={"deactivated_certificates": retired},
    )
    return True


def store_certificate(
    session: Session,
    actor: audit.Actor,
    organization: Organization,
    service: Service,
    certificate: SamlCertificate,
) -> None:
    """Make a new certificate the active one and record saml.certificate.generate.

    Call it holding the service's SAML write lock (``locked_config``).
    """
    retired = keys.activate_certificate(session, certificate)
    audit.record(
        session,
        actor,
        "saml.certificate.generate",
        "saml_certificate",
        certificate.id,
        organization_id=organization.id,
        service_id=service.id,
        before={"deactivated_certificates": retired},
        after={
            "id": certificate.id,
            "sha256_fingerprint": keys.fingerprint(certificate.certificate_pem),
            "valid_from": iso(certificate.valid_from),
            "valid_until": iso(certificate.valid_until),
        },
    )


def _canonical_pem(pem: str) -> str:
    """The one certificate of a validated PEM text, re-encoded: nothing else is kept."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_bytes(Encoding.PEM).decode()


def _not_configured(svc: str) -> ApiError:
    return not_found(f"SAML is not configured for service '{svc}'")


@operation(
    bp,
    "PUT",
    "/organizations/<org>/services/<svc>/saml",
    summary="Configure the service's SAML IdP (owner/admin, or a key with write:service)",
    body="ConfigureSaml",
    response=ref("ConfigureSamlResponse"),
)
def configure(org: str, svc: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Replace the whole configuration; omitted optional fields go back to their defaults."""
    settings = desired_settings(payload)
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        write_config(session, access.actor(), organization, service, settings)
    runtime().store.announce_change(f"{org}/{svc}")
    return {"message": "SAML configuration updated successfully"}


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/saml",
    summary="Get the service's SAML IdP configuration (any member, or read:service)",
    response=ref("SamlConfig"),
)
def get_config(org: str, svc: str) -> dict[str, Any]:
    """404 while SAML is not configured; has_certificate means an active certificate exists."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:service")
        config = session.get(SamlConfig, service.id)
        if config is None:
            raise _not_configured(svc)
        has_certificate = active_certificate(session, service.id) is not None
        return {**config_json(config), "has_certificate": has_certificate}


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/services/<svc>/saml",
    summary="Delete the SAML configuration and deactivate every certificate (owner/admin)",
    response=ref("ConfigureSamlResponse"),
)
def delete_config(org: str, svc: str) -> dict[str, Any]:
    """The configuration row goes; the certificates stay, inactive, for the record."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        if not remove_config(session, access.actor(), organization, service):
            raise _not_configured(svc)
    runtime().store.announce_change(f"{org}/{svc}")
    return {"message": "SAML configuration deleted successfully"}


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/saml/certificate",
    summary="Generate a signing certificate; every older one is deactivated (owner/admin)",
    ok=201,
    response=ref("SamlCertificate"),
)
def generate_certificate(org: str, svc: str) -> tuple[dict[str, Any], int]:
    """409 while SAML is not configured. The key pair is made outside the transaction."""
    rt = runtime()
    with rt.db.read() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        if session.get(SamlConfig, service.id) is None:
            raise _cannot_generate(svc)
    certificate = keys.new_certificate(rt.settings, organization.slug, service)
    with rt.db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        if locked_config(session, service) is None:
            raise _cannot_generate(svc)
        store_certificate(session, access.actor(), organization, service, certificate)
    rt.store.announce_change(f"{org}/{svc}")
    return certificate_json(certificate), 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/saml/certificate",
    summary="Get the active signing certificate (any member, or read:service)",
    response=ref("SamlCertificate"),
)
def get_certificate(org: str, svc: str) -> dict[str, Any]:
    """404 when no certificate is active."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:service")
        cert = active_certificate(session, service.id)
        if cert is None:
            raise not_found(f"Service '{svc}' has no active SAML signing certificate")
        return certificate_json(cert)


def _cannot_generate(svc: str) -> ApiError:
    return conflict(f"SAML is not configured for service '{svc}'; configure it first")
