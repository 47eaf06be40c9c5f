"""Services of an organization: create (within the service limit), list, get, update, delete."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict, limit_reached
from idp.api.openapi import component, operation, ref
from idp.api.organizations import SLUG
from idp.api.plans import plan_json, service_plans
from idp.api.shapes import TIMESTAMP, iso, text
from idp.runtime import runtime
from idp.store.models import Organization, Service, utcnow

bp = Blueprint("services", __name__)

SERVICE_TYPES = ("web", "mobile", "cli", "api")
PROVIDERS = ("github", "google", "microsoft")
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


def service_json(svc: Service) -> dict[str, Any]:
    """Service {id, organization_id, slug, name, service_type, client_id, redirect_uris, ...}."""
    return {
        "id": svc.id,
        "organization_id": svc.organization_id,
        "slug": svc.slug,
        "name": svc.name,
        "service_type": svc.service_type,
        "client_id": svc.client_id,
        "redirect_uris": list(svc.redirect_uris),
        "created_at": iso(svc.created_at),
        "updated_at": iso(svc.updated_at),
    }


def _audit_json(svc: Service) -> dict[str, Any]:
    """The service plus its provider scopes, for the audit trail."""
    return {**service_json(svc), **{f"{p}_scopes": _scopes(svc, p) for p in PROVIDERS}}


def _scopes(svc: Service, provider: str) -> list[str]:
    scopes: list[str] = getattr(svc, f"{provider}_scopes")
    return list(scopes)


def _apply(svc: Service, payload: dict[str, Any]) -> None:
    """Copy the given editable fields onto the service."""
    for name in EDITABLE_FIELDS:
        if name in payload:
            setattr(svc, name, payload[name])


def add_service(
    session: Session,
    actor: audit.Actor,
    organization: Organization,
    payload: dict[str, Any],
    max_services: int,
) -> Service:
    """Create a service from a validated CreateService body and record service.create.

    Slug taken → 409 conflict; limit used up → 409 limit_reached. The organization row stays
    locked until commit (SELECT ... FOR UPDATE on PostgreSQL; SQLite takes its write lock at
    BEGIN), so racing creates cannot exceed the limit.
    """
    session.execute(
        select(Organization.id).where(Organization.id == organization.id).with_for_update()
    )
    slugs = set(
        session.scalars(select(Service.slug).where(Service.organization_id == organization.id))
    )
    if payload["slug"] in slugs:
        raise conflict(
            f"Service slug '{payload['slug']}' is already taken in '{organization.slug}'"
        )
    if len(slugs) >= max_services:
        raise limit_reached(
            f"Organization '{organization.slug}' already has the maximum of {max_services} services"
        )
    now = utcnow()
    svc = Service(
        organization_id=organization.id,
        slug=payload["slug"],
        service_type=payload["service_type"],
        client_id=secrets.token_hex(16),
        created_at=now,
        updated_at=now,
    )
    _apply(svc, payload)
    session.add(svc)
    session.flush()
    audit.record(
        session,
        actor,
        "service.create",
        "service",
        svc.id,
        organization_id=organization.id,
        service_id=svc.id,
        after=_audit_json(svc),
    )
    return svc


def update_fields(
    session: Session,
    actor: audit.Actor,
    organization: Organization,
    service: Service,
    payload: dict[str, Any],
) -> None:
    """Change the editable fields present in the payload and record service.update."""
    before = _audit_json(service)
    _apply(service, payload)
    session.flush()
    audit.record(
        session,
        actor,
        "service.update",
        "service",
        service.id,
        organization_id=organization.id,
        service_id=service.id,
        before=before,
        after=_audit_json(service),
    )


def remove_service(
    session: Session, actor: audit.Actor, organization: Organization, service: Service
) -> None:
    """Delete a service (the database cascades to what it owns) and record service.delete."""
    audit.record(
        session,
        actor,
        "service.delete",
        "service",
        service.id,
        organization_id=organization.id,
        service_id=service.id,
        before=_audit_json(service),
    )
    session.delete(service)


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
        svc = add_service(
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
        query = (
            select(Service)
            .where(Service.organization_id == organization.id)
            .order_by(Service.created_at, Service.slug)
        )
        services = [service_json(svc) for svc in session.scalars(query)]
    usage = {"current_services": len(services), "max_services": runtime().settings.max_services}
    return {"services": services, "usage": usage}


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
        grants = [
            {"provider": provider, "scopes": _scopes(service, provider)}
            for provider in PROVIDERS
            if _scopes(service, provider)
        ]
        plans = [plan_json(plan) for plan in service_plans(session, service.id)]
    return {"service": service_json(service), "provider_grants": grants, "plans": plans}


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
        update_fields(session, access.actor(), organization, service, payload)
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
        remove_service(session, access.actor(), organization, service)
    runtime().store.announce_change(f"{org}/{svc}")
    return "", 204
