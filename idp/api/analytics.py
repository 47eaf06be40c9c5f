"""GET /services/{svc}/analytics: successful SSO Responses issued, from the audit trail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.openapi import component, operation, ref
from idp.domain import services
from idp.runtime import runtime

bp = Blueprint("analytics", __name__)

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
    """Counts over the service's sso.success events; queued events are moved in first."""
    rt = runtime()
    audit.try_flush(rt)
    with rt.db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:analytics")
        return services.sign_in_stats(session, service)
