"""Services of an organization: create (within the service limit), list, get, update, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp.api import access
from idp.api.access import Need
from idp.api.openapi import component, operation, ref
from idp.api.organizations import SLUG
from idp.api.shapes import TIMESTAMP, text
from idp.domain import plans, services
from idp.domain.plans import plan_json
from idp.domain.services import PROVIDERS, SERVICE_TYPES, service_json
from idp.runtime import runtime

bp = Blueprint("services", __name__)

SCOPES = {
    "type": "array",
    "maxItems": 50,
    "uniqueItems": True,
    "items": {
        "type": "string",
        "pattern": r"^[^\s\x00-\x1f\x7f]{1,200}$",
        "x-reason": "must be a scope: 1-200 characters without spaces or control characters",
    },
}
REDIRECT_URIS = {
    "type": "array",
    "maxItems": 50,
    "uniqueItems": True,
    "items": {"type": "string", "format": "absolute-uri", "maxLength": 2048},
}
EDITABLE_FIELDS = {
    "name": text(200),
    "github_scopes": SCOPES,
    "google_scopes": SCOPES,
    "microsoft_scopes": SCOPES,
    "redirect_uris": REDIRECT_URIS,
}

component(
    "CreateService",
    {
        "type": "object",
        "required": ["slug", "name", "service_type", "redirect_uris"],
        "additionalProperties": False,
        "properties": {
            "slug": SLUG,
            "service_type": {"type": "string", "enum": list(SERVICE_TYPES)},
            **EDITABLE_FIELDS,
        },
    },
)
component(
    "UpdateService",
    {"type": "object", "additionalProperties": False, "properties": EDITABLE_FIELDS},
)
component(
    "Service",
    {
        "type": "object",
        "required": [
            "id",
            "organization_id",
            "slug",
            "name",
            "service_type",
            "client_id",
            "redirect_uris",
            "created_at",
            "updated_at",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "organization_id": {"type": "string"},
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "service_type": {"type": "string", "enum": list(SERVICE_TYPES)},
            "client_id": {"type": "string"},
            "redirect_uris": {"type": "array", "items": {"type": "string"}},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
)
component(
    "CreateServiceResponse",
    {
        "type": "object",
        "required": ["service", "client_id"],
        "additionalProperties": False,
        "properties": {"service": ref("Service"), "client_id": {"type": "string"}},
    },
)
component(
    "ServiceListResponse",
    {
        "type": "object",
        "required": ["services", "usage"],
        "additionalProperties": False,
        "properties": {
            "services": {"type": "array", "items": ref("Service")},
            "usage": {
                "type": "object",
                "required": ["current_services", "max_services"],
                "additionalProperties": False,
                "properties": {
                    "current_services": {"type": "integer", "minimum": 0},
                    "max_services": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
)
component(
    "ProviderGrant",
    {
        "type": "object",
        "required": ["provider", "scopes"],
        "additionalProperties": False,
        "properties": {
            "provider": {"type": "string", "enum": list(PROVIDERS)},
            "scopes": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    },
)
component(
    "ServiceResponse",
    {
        "type": "object",
        "required": ["service", "provider_grants", "plans"],
        "additionalProperties": False,
        "properties": {
            "service": ref("Service"),
            "provider_grants": {"type": "array", "items": ref("ProviderGrant")},
            "plans": {"type": "array", "items": ref("Plan")},
        },
    },
)


@operation(
    bp,
    "POST",
    "/organizations/<org>/services",
    summary="Create a service (owner/admin), within the organization's service limit",
    ok=201,
    body="CreateService",
    response=ref("CreateServiceResponse"),
)
def create_service(org: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Slug taken → 409 conflict; limit used up → 409 limit_reached."""
    with runtime().db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        svc = services.create(
            session, access.actor(), organization, payload, runtime().settings.max_services
        )
    return {"service": service_json(svc), "client_id": svc.client_id}, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/services",
    summary="List the services of an organization, with the usage of the service limit",
    response=ref("ServiceListResponse"),
)
def list_services(org: str) -> dict[str, Any]:
    """Any member (API keys see only their own service, through GET /services/{svc})."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ)
        listed = [service_json(svc) for svc in services.listing(session, organization)]
    usage = {"current_services": len(listed), "max_services": runtime().settings.max_services}
    return {"services": listed, "usage": usage}


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>",
    summary="Get a service with its provider grants and plans",
    response=ref("ServiceResponse"),
)
def get_service(org: str, svc: str) -> dict[str, Any]:
    """Any member, or a key of this service with read:service."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:service")
        return {
            "service": service_json(service),
            "provider_grants": services.provider_grants(service),
            "plans": [plan_json(plan) for plan in plans.listing(session, service)],
        }


@operation(
    bp,
    "PATCH",
    "/organizations/<org>/services/<svc>",
    summary="Update a service's given fields (owner/admin, or a key with write:service)",
    body="UpdateService",
    response=ref("Service"),
)
def update_service(org: str, svc: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Only the fields present in the body change."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        services.update(session, access.actor(), organization, service, payload)
    runtime().store.announce_change(f"{org}/{svc}")
    return service_json(service)


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/services/<svc>",
    summary="Delete a service with its plans, subscriptions, API keys and SAML setup (owner)",
    ok=204,
)
def delete_service(org: str, svc: str) -> tuple[str, int]:
    """The database cascades the delete; every worker drops its cached SAML setup."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.OWN)
        services.remove(session, access.actor(), organization, service)
    runtime().store.announce_change(f"{org}/{svc}")
    return "", 204
