"""``sso.organizations``: the tenants, created and deleted by operators and platform keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp.client.http import Json, Transport, merged, path
from idp.client.users import Users


class Organizations:
    """``sso.organizations``.

    ``users`` is the same object as ``sso.users`` (where v1.1 code found it).
    """

    def __init__(self, http: Transport, users: Users) -> None:
        self._http = http
        self.users = users

    def list(self) -> Json:
        """{organizations: [Organization]}: every one for a platform caller, else its own."""
        return self._http.object("GET", path("organizations"))

    def create(self, payload: Mapping[str, Any] | None = None, /, **fields: Any) -> Json:
        """Create an organization ({slug, name}) → Organization; operators and platform keys
        only (403 otherwise). Its accounts, the first owner included, come from ``sso.users``."""
        return self._http.object("POST", path("organizations"), body=merged(payload, fields))

    def get(self, org: str) -> Json:
        """Organization {id, slug, name, created_at}."""
        return self._http.object("GET", path("organizations", org))

    def delete(self, org: str) -> None:
        """Delete the organization with everything it owns (operators and platform keys only)."""
        self._http.empty("DELETE", path("organizations", org))
