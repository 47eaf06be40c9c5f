"""The Python client of the admin API (CONTRACT §6)::

from idp.client import SsoClient, SsoApiError

sso = SsoClient("https://sso.example.com", token=API_KEY_OR_LOGIN_TOKEN)
sso.services.create("acme-corp", {"slug": "main-app", ...})
"""

from __future__ import annotations

from idp.client.http import DEFAULT_TIMEOUT_S, Json, SsoApiError, Transport, path
from idp.client.organizations import Organizations
from idp.client.services import Services

__all__ = ["SsoApiError", "SsoClient"]


class SsoClient:
    """Every admin route, as ``sso.organizations.*`` and ``sso.services.*``.

    Methods return the API's JSON and raise SsoApiError(status, code, message) on errors;
    network failures surface as ``requests`` exceptions.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._http = Transport(base_url, token, timeout)
        self.organizations = Organizations(self._http)
        self.services = Services(self._http)

    @property
    def token(self) -> str | None:
        """The bearer credential sent with every call (login token or API key)."""
        return self._http.token

    def login(self, email: str, password: str) -> Json:
        """Sign in; later calls use the token. Returns {token, expires_at, user}."""
        answer = self._http.object(
            "POST", path("auth", "login"), body={"email": email, "password": password}
        )
        self._http.token = answer["token"]
        return answer

    def logout(self) -> None:
        """Revoke the login token and forget it."""
        self._http.empty("POST", path("auth", "logout"))
        self._http.token = None
