"""``sso.audit_events``: an organization's audit trail."""

from __future__ import annotations

from typing import Any

from idp.client.http import Json, Transport, path


class AuditEvents:
    """``sso.audit_events``: read by owners, admins and platform callers (not service keys)."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def list(self, org: str, **query: Any) -> Json:
        """{audit_events: [AuditEvent], total}, newest first; ``query`` is sent as the query
        string (``limit``, ``offset``)."""
        params = {name: value for name, value in query.items() if value is not None}
        return self._http.object(
            "GET", path("organizations", org, "audit-events"), params=params or None
        )
