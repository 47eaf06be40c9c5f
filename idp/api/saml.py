"""A service's SAML IdP setup: the SP it serves, who may sign in, its signing certificates.

The rules are in :mod:`idp.domain.saml_setup`; every change is announced to every worker's
SSO cache after its commit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint

from idp.api import access
from idp.api.access import Need
from idp.api.openapi import COMPONENTS, component, operation, ref
from idp.api.shapes import GROUPS, TIMESTAMP
from idp.api.validation import validate
from idp.domain import saml_setup, sp_sources
from idp.domain.presets import PRESETS
from idp.domain.saml_setup import certificate_json
from idp.metadata_fetch import fetch_metadata
from idp.runtime import runtime
from idp.saml.attributes import USER_FIELDS
from idp.saml.constants import NAMEID_FORMATS
from idp.saml.sp_metadata import MAX_METADATA_BYTES
from idp.settings import Settings

bp = Blueprint("saml", __name__)

ENDPOINT_URL = {"type": "string", "format": "endpoint-url", "maxLength": 2048}
ATTRIBUTE_NAME = {
    "type": "string",
    "maxLength": 1024,
    "pattern": r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    "x-reason": "must be a non-empty SAML attribute name without control characters "
    "or surrounding spaces",
}
PEM = {"type": ["string", "null"], "format": "pem-certificate", "maxLength": 16384}
ACS_URLS = {
    "type": "array",
    "maxItems": 32,
    "items": {
        "type": "object",
        "required": ["url", "index"],
        "additionalProperties": False,
        "properties": {
            "url": ENDPOINT_URL,
            "index": {"type": "integer", "minimum": 0, "maximum": 65535},
            "is_default": {"type": "boolean"},
        },
    },
}
ATTRIBUTE_VALUES = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "object",
        "required": ["name", "value"],
        "additionalProperties": False,
        "properties": {
            "name": ATTRIBUTE_NAME,
            "value": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
                "x-reason": "must be a non-empty value without control characters",
            },
            "groups": GROUPS,  # absent or empty: every account
        },
    },
}
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
        "additionalProperties": ATTRIBUTE_NAME,
    },
    "sign_assertions": {"type": "boolean"},
    "sign_response": {"type": "boolean"},
    "sp_certificate": PEM,
    "want_authn_requests_signed": {"type": "boolean"},
    "slo_url": {**ENDPOINT_URL, "type": ["string", "null"]},
    "allowed_groups": GROUPS,  # empty: every account of the organization
    "require_subscription": {"type": "boolean"},
    "require_mfa": {"type": "boolean"},  # assertions only after a second factor
    "acs_urls": ACS_URLS,  # every ACS the SP may name; acs_url is the default one
    "sp_encryption_certificate": {**PEM, "format": "rsa-pem-certificate"},
    "encrypt_assertions": {"type": "boolean"},
    "attribute_values": ATTRIBUTE_VALUES,
}
SOURCES = {  # where settings may come from besides the fields sent (see domain.sp_sources)
    "preset": {
        "type": "string",
        "enum": sorted(PRESETS),
        "x-reason": "unknown preset; one of: " + ", ".join(sorted(PRESETS)),
    },
    "sp_metadata": {"type": "string", "minLength": 1, "maxLength": MAX_METADATA_BYTES},
    "sp_metadata_url": ENDPOINT_URL,
}
ECHOED = {  # read-only parts of SamlConfig
    "has_certificate": {"type": "boolean"},
    "preset": {"type": ["string", "null"]},
    "sp_metadata_url": {"type": ["string", "null"]},
    "metadata_refreshed_at": {**TIMESTAMP, "type": ["string", "null"]},
    "metadata_error": {"type": ["string", "null"]},
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

SIGNED = {
    "if": {"required": ["sign_assertions"], "properties": {"sign_assertions": {"const": False}}},
    "then": {
        "properties": {
            "sign_response": {
                "enum": [True],
                "x-reason": "must be true when sign_assertions is false: "
                "no SP accepts an unsigned response",
            }
        }
    },
}
METADATA = ("sp_metadata", "sp_metadata_url")


def _only_with(flag: str, certificate: str, reason: str, sources: tuple[str, ...]) -> Any:
    """``flag`` may be true only when ``certificate`` is given (or may come from a source)."""
    given = [{"required": [certificate], "properties": {certificate: {"type": "string"}}}]
    given += [{"required": [source]} for source in sources]
    return {
        "if": {"not": {"anyOf": given}},
        "then": {"properties": {flag: {"enum": [False], "x-reason": reason}}},
    }


def _rules(sources: tuple[str, ...]) -> list[Any]:
    return [
        SIGNED,
        _only_with(
            "want_authn_requests_signed",
            "sp_certificate",
            "can be true only with an sp_certificate to verify the requests against",
            sources,
        ),
        _only_with(
            "encrypt_assertions",
            "sp_encryption_certificate",
            "can be true only with an sp_encryption_certificate (sent, or in the SP's metadata)",
            sources,
        ),
    ]


component(
    "ConfigureSaml",
    {
        "description": "The settings, or a preset and/or the SP's metadata (XML or URL) with "
        "the settings they do not give; the merged whole must satisfy SamlSettings.",
        "type": "object",
        "additionalProperties": False,
        "properties": {**SETTINGS, **SOURCES},
        "allOf": _rules(METADATA),
        "anyOf": [
            {"required": REQUIRED},
            *({"required": [source]} for source in METADATA),
            *(
                {
                    "required": ["preset", *(f for f in REQUIRED if f not in preset.fields)],
                    "properties": {"preset": {"const": name}},
                }
                for name, preset in sorted(PRESETS.items())
            ),
        ],
    },
)
component(
    "SamlSettings",
    {
        "type": "object",
        "required": REQUIRED,
        "additionalProperties": False,
        "properties": SETTINGS,
        "allOf": _rules(()),
    },
)
component(
    "SamlConfig",
    {
        "type": "object",
        "required": [*SETTINGS, *ECHOED],
        "additionalProperties": False,
        "properties": {**SETTINGS, **ECHOED},
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
        "required": ["id", "public_key", "valid_from", "valid_until", "is_active", "status"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "public_key": {"type": "string"},
            "valid_from": TIMESTAMP,
            "valid_until": TIMESTAMP,
            "is_active": {"type": "boolean"},
            "status": {"type": "string", "enum": ["active", "next", "inactive"]},
        },
    },
)
component(
    "SamlCertificateList",
    {
        "type": "object",
        "required": ["certificates"],
        "properties": {"certificates": {"type": "array", "items": ref("SamlCertificate")}},
    },
)
component(
    "GenerateCertificate",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {"activate": {"type": "boolean"}},  # false: stage the next certificate
    },
)


@operation(
    bp,
    "PUT",
    "/organizations/<org>/services/<svc>/saml",
    summary="Configure the service's SAML IdP (owner/admin, or a key with write:service)",
    body="ConfigureSaml",
    response=ref("ConfigureSamlResponse"),
)
def configure(org: str, svc: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Replace the whole configuration; omitted optional fields go back to their defaults.

    A preset and SP metadata fill what was not sent; the metadata URL is read only after the
    caller's rights are checked, outside the transaction.
    """
    rt = runtime()
    with rt.db.read() as session:
        access.service(session, org, svc, Need.MANAGE, "write:service")
    resolved = resolve_settings(payload, rt.settings)
    with rt.db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        saml_setup.configure(session, access.actor(), organization, service, resolved)
    rt.store.announce_change(f"{org}/{svc}")
    return {"message": "SAML configuration updated successfully"}


def resolve_settings(payload: dict[str, Any], settings: Settings) -> sp_sources.Resolved:
    """Merge the preset, the SP metadata and the sent fields, and hold the result to the
    rules of fields sent by hand (400 with details otherwise)."""
    resolved = sp_sources.resolve(
        payload, datetime.now(UTC), fetch_metadata, timedelta(seconds=settings.metadata_refresh_s)
    )
    validate(resolved.settings, COMPONENTS["SamlSettings"])
    return resolved


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
        return saml_setup.describe(session, service)


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
        saml_setup.remove(session, access.actor(), organization, service)
    runtime().store.announce_change(f"{org}/{svc}")
    return {"message": "SAML configuration deleted successfully"}


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/saml/certificate",
    summary="Generate a signing certificate: active at once, every older one deactivated; "
    'with {"activate": false}, the next one, published beside the active one (owner/admin)',
    ok=201,
    body="GenerateCertificate",
    body_optional=True,
    response=ref("SamlCertificate"),
)
def generate_certificate(org: str, svc: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """409 while SAML is not configured. The key pair is made outside the transaction."""
    rt = runtime()
    with rt.db.read() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        saml_setup.require_configured(session, service)
    certificate = saml_setup.new_certificate(rt.settings, organization, service)
    store = saml_setup.rotate if payload.get("activate", True) else saml_setup.stage
    with rt.db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        store(session, access.actor(), organization, service, certificate)
    rt.store.announce_change(f"{org}/{svc}")
    return certificate_json(certificate), 201


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/saml/certificate/<certificate_id>/activate",
    summary="Make the next certificate the active one; the old one is deactivated at once",
    response=ref("SamlCertificate"),
)
def activate_certificate(org: str, svc: str, certificate_id: str) -> dict[str, Any]:
    """Owner/admin or write:service; 409 for an inactive certificate, 404 for another's."""
    rt = runtime()
    with rt.db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        certificate = saml_setup.activate(
            session, access.actor(), organization, service, certificate_id
        )
        answer = certificate_json(certificate)
    rt.store.announce_change(f"{org}/{svc}")
    return answer


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/saml/certificates",
    summary="List the service's signing certificates: active, next and inactive",
    response=ref("SamlCertificateList"),
)
def list_certificates(org: str, svc: str) -> dict[str, Any]:
    """Any account of the organization, or read:service; newest first."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:service")
        return {
            "certificates": [certificate_json(c) for c in saml_setup.certificates(session, service)]
        }


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
        return certificate_json(saml_setup.find_active(session, service))
