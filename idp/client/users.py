"""``sso.users``: the accounts of an organization (each organization owns its own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp.client.http import Json, Transport, merged, path


class Users:
    """``sso.users``: create, list, read, change and delete an organization's accounts.

    Bodies are a mapping, keyword fields, or both (keywords win): ``email``, ``name``,
    ``given_name``, ``family_name``, ``groups``, ``password``, ``role`` and, on update,
    ``disabled``.
    """

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, org: str, payload: Mapping[str, Any] | None = None, /, **fields: Any) -> Json:
        """A new account ({email, name?, given_name?, family_name?, groups?, password?,
        role?}) → User; 409 ``conflict`` when the email already has an account here."""
        body = merged(payload, fields)
        return self._http.object("POST", path("organizations", org, "users"), body=body)

    def list(self, org: str) -> Json:
        """{users: [User]}, by email."""
        return self._http.object("GET", path("organizations", org, "users"))

    def get(self, org: str, user_id: str) -> Json:
        """User {id, email, name, given_name, family_name, groups, role, disabled, mfa}."""
        return self._http.object("GET", path("organizations", org, "users", user_id))

    def update(
        self, org: str, user_id: str, payload: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Json:
        """Change the given fields → User. A new password or ``disabled=True`` ends the
        account's sign-ins and revokes its tokens; demoting or disabling the last owner → 409."""
        body = merged(payload, fields)
        return self._http.object("PATCH", path("organizations", org, "users", user_id), body=body)

    def delete(self, org: str, user_id: str) -> None:
        """Delete the account (its sign-ins end; its tokens and subscriptions go)."""
        self._http.empty("DELETE", path("organizations", org, "users", user_id))

    def reset_mfa(self, org: str, user_id: str) -> None:
        """Remove the account's second factors and recovery codes (its sign-ins end, its tokens
        are revoked): for someone who lost them all."""
        self._http.empty("DELETE", path("organizations", org, "users", user_id, "mfa"))
