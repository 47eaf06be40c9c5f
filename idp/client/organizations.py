"""``sso.organizations``: organizations, their members and their users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp.client.http import Json, Transport, path


class Members:
    """``sso.organizations.members``: existing users and their roles."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def add(self, org: str, payload: Mapping[str, Any]) -> Json:
        """Add an existing user ({email, role}); returns Member."""
        return self._http.object("POST", path("organizations", org, "members"), body=payload)

    def list(self, org: str) -> Json:
        """{members: [Member]}."""
        return self._http.object("GET", path("organizations", org, "members"))


class Users:
    """``sso.organizations.users``: create users (or attach existing ones) as members."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, org: str, payload: Mapping[str, Any]) -> Json:
        """{email, name?, given_name?, family_name?, groups?, password?, role?} → User."""
        return self._http.object("POST", path("organizations", org, "users"), body=payload)

    def list(self, org: str) -> Json:
        """{users: [User]}."""
        return self._http.object("GET", path("organizations", org, "users"))


class Organizations:
    """``sso.organizations``."""

    def __init__(self, http: Transport) -> None:
        self._http = http
        self.members = Members(http)
        self.users = Users(http)

    def create(self, payload: Mapping[str, Any]) -> Json:
        """Create an organization ({slug, name}); the caller becomes its owner."""
        return self._http.object("POST", path("organizations"), body=payload)

    def get(self, org: str) -> Json:
        """Organization {id, slug, name, created_at}."""
        return self._http.object("GET", path("organizations", org))
