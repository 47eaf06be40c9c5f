"""A service's SAML IdP setup: the SP it serves, who may sign in, its signing certificates.

The rules are in :mod:`idp.domain.saml_setup`; every change is announced to every worker's
SSO cache after its commit.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp.api import access
from idp.api.access import Need
from idp.api.openapi import component, operation, ref
from idp.api.shapes import GROUPS, TIMESTAMP
from idp.domain import saml_setup
from idp.domain.saml_setup import certificate_json
from idp.runtime import runtime
from idp.saml.attributes import USER_FIELDS
from idp.saml.constants import NAMEID_FORMATS

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
    "allowed_groups": GROUPS,  # empty: every account of the organization
    "require_subscription": {"type": "boolean"},
    "require_mfa": {"type": "boolean"},  # assertions only after a second factor
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
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        saml_setup.configure(session, access.actor(), organization, service, payload)
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
    summary="Generate a signing certificate; every older one is deactivated (owner/admin)",
    ok=201,
    response=ref("SamlCertificate"),
)
def generate_certificate(org: str, svc: str) -> tuple[dict[str, Any], int]:
    """409 while SAML is not configured. The key pair is made outside the transaction."""
    rt = runtime()
    with rt.db.read() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        saml_setup.require_configured(session, service)
    certificate = saml_setup.new_certificate(rt.settings, organization, service)
    with rt.db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        saml_setup.rotate(session, access.actor(), organization, service, certificate)
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
        return certificate_json(saml_setup.find_active(session, service))
