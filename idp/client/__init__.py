"""The Python client of the admin API (CONTRACT §6)::

from idp.client import SsoClient, SsoApiError

sso = SsoClient("https://sso.example.com", token=PLATFORM_KEY)  # or sso.login(...)
sso.organizations.create({"slug": "acme-corp", "name": "Acme Corp"})
sso.users.create("acme-corp", {"email": "jane@acme.com", "role": "owner"})
sso.services.create("acme-corp", {"slug": "main-app", ...})
"""

from __future__ import annotations

from idp.client.audit import AuditEvents
from idp.client.http import DEFAULT_TIMEOUT_S, Json, SsoApiError, Transport, path
from idp.client.identity_providers import IdentityProviders
from idp.client.organizations import Organizations
from idp.client.services import Services
from idp.client.users import Users

__all__ = ["SsoApiError", "SsoClient"]


class SsoClient:
    """Every admin route, as ``sso.organizations``, ``sso.users``, ``sso.services``,
    ``sso.identity_providers`` and ``sso.audit_events``.

    Methods return the API's JSON and raise SsoApiError(status, code, message) on errors;
    network failures surface as ``requests`` exceptions.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._http = Transport(base_url, token, timeout)
        self.users = Users(self._http)
        self.organizations = Organizations(self._http, self.users)
        self.services = Services(self._http)
        self.audit_events = AuditEvents(self._http)
        self.identity_providers = IdentityProviders(self._http)

    @property
    def token(self) -> str | None:
        """The bearer credential sent with every call (login token, API key or platform key)."""
        return self._http.token

    def login(
        self,
        email: str,
        password: str,
        organization: str | None = None,
        code: str | None = None,
    ) -> Json:
        """Sign in an organization's account (``organization``: its slug) or, without it, an
        operator; later calls use the token. An account with a second factor also gives a
        TOTP or recovery ``code``. Returns {token, expires_at, user}."""
        body = {"email": email, "password": password}
        if organization is not None:
            body["organization"] = organization
        if code is not None:
            body["code"] = code
        answer = self._http.object("POST", path("auth", "login"), body=body)
        self._http.token = answer["token"]
        return answer

    def logout(self) -> None:
        """Revoke the login token and forget it."""
        self._http.empty("POST", path("auth", "logout"))
        self._http.token = None
