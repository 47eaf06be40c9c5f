"""GET /organizations/{org}/audit-events: an organization's audit trail, newest first."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import func, select

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.api_keys import LIMIT, OFFSET, query_int
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP, iso
from idp.runtime import runtime
from idp.store.models import Event

bp = Blueprint("audit", __name__)

OPTIONAL_ID = {"type": ["string", "null"]}

component(
    "AuditEvent",
    {
        "type": "object",
        "required": [
            "id",
            "created_at",
            "actor",
            "action",
            "resource_type",
            "resource_id",
            "service_id",
            "user_id",
            "summary",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "created_at": TIMESTAMP,
            "actor": {
                "type": "object",
                "required": ["type", "id"],
                "additionalProperties": False,
                "properties": {
                    "type": {
                        "type": "string",
                        "description": "user (an account), operator, platform_key, api_key, "
                        "provision, cli, idp or anonymous",
                    },
                    "id": OPTIONAL_ID,
                },
            },
            "action": {"type": "string"},
            "resource_type": {"type": "string"},
            "resource_id": OPTIONAL_ID,
            "service_id": OPTIONAL_ID,
            "user_id": OPTIONAL_ID,
            "summary": {
                "type": "object",
                "description": "what the resource was before and after, without secrets",
                "properties": {"before": {"type": "object"}, "after": {"type": "object"}},
            },
        },
    },
)
component(
    "AuditEventList",
    {
        "type": "object",
        "required": ["audit_events", "total"],
        "additionalProperties": False,
        "properties": {
            "audit_events": {"type": "array", "items": ref("AuditEvent")},
            "total": {"type": "integer", "minimum": 0},
        },
    },
)


def event_json(event: Event) -> dict[str, Any]:
    """AuditEvent {id, created_at, actor: {type, id}, action, resource_type, resource_id, ...}."""
    return {
        "id": event.id,
        "created_at": iso(event.created_at),
        "actor": {"type": event.actor_type, "id": event.actor_id},
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "service_id": event.service_id,
        "user_id": event.user_id,
        "summary": event.summary,
    }


@operation(
    bp,
    "GET",
    "/organizations/<org>/audit-events",
    summary="The organization's audit trail, newest first (owner/admin; not API keys)",
    query=(LIMIT, OFFSET),
    response=ref("AuditEventList"),
)
def list_audit_events(org: str) -> dict[str, Any]:
    """Admin changes, provisioning, sign-ins and SSO outcomes of the organization."""
    limit, offset = query_int(LIMIT), query_int(OFFSET)
    rt = runtime()
    audit.flush(rt)  # sign-in and SSO outcomes queued in Redis
    with rt.db.read() as session:
        organization = access.organization(session, org, Need.MANAGE)
        of_org = Event.organization_id == organization.id
        total = session.scalar(select(func.count()).select_from(Event).where(of_org))
        page = session.scalars(
            select(Event)
            .where(of_org)
            .order_by(Event.created_at.desc(), Event.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return {"audit_events": [event_json(event) for event in page], "total": total or 0}
