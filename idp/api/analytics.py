"""GET /services/{svc}/analytics: successful SSO Responses issued, from the audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint
from sqlalchemy import case, distinct, func, select

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.openapi import component, operation, ref
from idp.api.shapes import iso
from idp.runtime import runtime
from idp.store.models import Event, utcnow

bp = Blueprint("analytics", __name__)

SSO_SUCCESS = "sso.success"

component(
    "Analytics",
    {
        "type": "object",
        "required": ["logins_total", "logins_24h", "unique_users_30d", "last_login_at"],
        "properties": {
            "logins_total": {"type": "integer", "minimum": 0},
            "logins_24h": {"type": "integer", "minimum": 0},
            "unique_users_30d": {"type": "integer", "minimum": 0},
            "last_login_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
)


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/analytics",
    summary="Sign-in statistics of a service (SP- and IdP-initiated SSO)",
    response=ref("Analytics"),
)
def analytics(org: str, svc: str) -> dict[str, Any]:
    """Counts over the service's sso.success events, in one query."""
    rt = runtime()
    audit.try_flush(rt)
    now = utcnow()
    day, month = now - timedelta(hours=24), now - timedelta(days=30)
    with rt.db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:analytics")
        total, last_day, users, last = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Event.created_at >= day, 1), else_=0)), 0),
                func.count(distinct(case((Event.created_at >= month, Event.user_id)))),
                func.max(Event.created_at),
            ).where(Event.service_id == service.id, Event.action == SSO_SUCCESS)
        ).one()
    return {
        "logins_total": total,
        "logins_24h": int(last_day),
        "unique_users_30d": users,
        "last_login_at": iso(last),
    }
