"""``sso.identity_providers``: an organization's upstream OpenID Providers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from idp.client.http import Json, Transport, merged, path


class IdentityProviders:
    """``sso.identity_providers``: "Continue with ..." on an organization's login page.

    Bodies: ``name``, ``issuer``, ``client_id``, ``client_secret`` (never returned; left out,
    the stored one is kept), ``scopes``, ``allowed_domains``, ``jit``, ``default_role``,
    ``enabled``.
    """

    def __init__(self, http: Transport) -> None:
        self._http = http

    def put(
        self, org: str, slug: str, payload: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> Json:
        """Create or replace a provider → IdentityProvider (with ``redirect_uri``, to register
        at the provider, and ``has_client_secret``)."""
        body = merged(payload, fields)
        return self._http.object(
            "PUT", path("organizations", org, "identity-providers", slug), body=body
        )

    def get(self, org: str, slug: str) -> Json:
        """IdentityProvider."""
        return self._http.object("GET", path("organizations", org, "identity-providers", slug))

    def list(self, org: str) -> Json:
        """{identity_providers: [IdentityProvider]}."""
        return self._http.object("GET", path("organizations", org, "identity-providers"))

    def delete(self, org: str, slug: str) -> None:
        """Delete a provider: its identities are unlinked, the sign-ins made through it end."""
        self._http.empty("DELETE", path("organizations", org, "identity-providers", slug))
