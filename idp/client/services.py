"""``sso.services``: services, plans, subscriptions, API keys, analytics, SAML IdPs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from idp.client.http import Json, Transport, path


def _service(org: str, svc: str, *rest: str) -> str:
    return path("organizations", org, "services", svc, *rest)


class Plans:
    """``sso.services.plans``: subscription plans of a service."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, org: str, svc: str, payload: Mapping[str, Any]) -> Json:
        """Create a plan; returns PlanResponse {plan, subscription_count}."""
        return self._http.object("POST", _service(org, svc, "plans"), body=payload)

    def list(self, org: str, svc: str) -> list[Json]:
        """Every plan of the service as [PlanResponse]."""
        return self._http.array("GET", _service(org, svc, "plans"))

    def update(self, org: str, svc: str, plan_id: str, payload: Mapping[str, Any]) -> Json:
        """Change the given fields; returns PlanResponse."""
        return self._http.object("PATCH", _service(org, svc, "plans", plan_id), body=payload)

    def delete(self, org: str, svc: str, plan_id: str) -> None:
        """Delete a plan without active subscriptions."""
        self._http.empty("DELETE", _service(org, svc, "plans", plan_id))


class Subscriptions:
    """``sso.services.subscriptions``: accounts' subscriptions to the service's plans."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, org: str, svc: str, payload: Mapping[str, Any]) -> Json:
        """Subscribe an account of the organization ({user_id or email, plan_id})."""
        return self._http.object("POST", _service(org, svc, "subscriptions"), body=payload)

    def list(self, org: str, svc: str) -> Json:
        """{subscriptions: [Subscription]}."""
        return self._http.object("GET", _service(org, svc, "subscriptions"))

    def cancel(self, org: str, svc: str, subscription_id: str) -> None:
        """Cancel a subscription."""
        self._http.empty("DELETE", _service(org, svc, "subscriptions", subscription_id))


class ApiKeys:
    """``sso.services.api_keys``: service-to-service keys."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, org: str, svc: str, payload: Mapping[str, Any]) -> Json:
        """Create a key; the answer's ``key`` is shown this once (``write:users`` → 400)."""
        return self._http.object("POST", _service(org, svc, "api-keys"), body=payload)

    def list(self, org: str, svc: str, limit: int = 50, offset: int = 0) -> Json:
        """{api_keys: [ApiKey], total}, newest first."""
        params = {"limit": limit, "offset": offset}
        return self._http.object("GET", _service(org, svc, "api-keys"), params=params)

    def get(self, org: str, svc: str, api_key_id: str) -> Json:
        """One ApiKey (without the key)."""
        return self._http.object("GET", _service(org, svc, "api-keys", api_key_id))

    def delete(self, org: str, svc: str, api_key_id: str) -> None:
        """Delete a key; it is refused from the next request on."""
        self._http.empty("DELETE", _service(org, svc, "api-keys", api_key_id))


class Saml:
    """``sso.services.saml``: the SAML 2.0 IdP of a service."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    def configure(self, org: str, svc: str, payload: Mapping[str, Any]) -> Json:
        """Set the Service Provider this IdP serves (and, optionally, who may use it:
        ``allowed_groups``, ``require_subscription``, ``require_mfa``); returns {message}."""
        return self._http.object("PUT", _service(org, svc, "saml"), body=payload)

    def get_config(self, org: str, svc: str) -> Json:
        """SamlConfig, including ``has_certificate``."""
        return self._http.object("GET", _service(org, svc, "saml"))

    def delete_config(self, org: str, svc: str) -> Json:
        """Remove the configuration and deactivate every certificate; returns {message}."""
        return self._http.object("DELETE", _service(org, svc, "saml"))

    def generate_certificate(self, org: str, svc: str, *, activate: bool = True) -> Json:
        """A new active signing certificate (older ones are deactivated); with
        ``activate=False`` the next one, published in metadata but not signing yet."""
        body = None if activate else {"activate": False}
        return self._http.object("POST", _service(org, svc, "saml", "certificate"), body=body)

    def activate_certificate(self, org: str, svc: str, certificate_id: str) -> Json:
        """Make the next certificate the active one (the old one is deactivated)."""
        path = _service(org, svc, "saml", "certificate", certificate_id, "activate")
        return self._http.object("POST", path)

    def list_certificates(self, org: str, svc: str) -> Json:
        """{certificates: [SamlCertificate with status active/next/inactive]}, newest first."""
        return self._http.object("GET", _service(org, svc, "saml", "certificates"))

    def get_certificate(self, org: str, svc: str) -> Json:
        """The active SamlCertificate."""
        return self._http.object("GET", _service(org, svc, "saml", "certificate"))

    @staticmethod
    def get_metadata_url(base_url: str, org: str, svc: str) -> str:
        """The IdP metadata URL to give a Service Provider."""
        return _saml_url(base_url, org, svc, "metadata")

    @staticmethod
    def get_sso_url(base_url: str, org: str, svc: str) -> str:
        """The IdP's SSO endpoint."""
        return _saml_url(base_url, org, svc, "sso")


def _saml_url(base_url: str, org: str, svc: str, endpoint: str) -> str:
    return f"{base_url.rstrip('/')}/saml/{quote(org, safe='')}/{quote(svc, safe='')}/{endpoint}"


class Services:
    """``sso.services``: the services of an organization and everything they hold."""

    def __init__(self, http: Transport) -> None:
        self._http = http
        self.plans = Plans(http)
        self.subscriptions = Subscriptions(http)
        self.api_keys = ApiKeys(http)
        self.saml = Saml(http)

    def create(self, org: str, payload: Mapping[str, Any]) -> Json:
        """Create a service; returns {service, client_id}."""
        return self._http.object("POST", path("organizations", org, "services"), body=payload)

    def list(self, org: str) -> Json:
        """{services: [Service], usage: {current_services, max_services}}."""
        return self._http.object("GET", path("organizations", org, "services"))

    def get(self, org: str, svc: str) -> Json:
        """{service, provider_grants, plans}."""
        return self._http.object("GET", _service(org, svc))

    def update(self, org: str, svc: str, payload: Mapping[str, Any]) -> Json:
        """Change the given fields; returns the Service."""
        return self._http.object("PATCH", _service(org, svc), body=payload)

    def delete(self, org: str, svc: str) -> None:
        """Delete the service with its plans, subscriptions, API keys and SAML setup."""
        self._http.empty("DELETE", _service(org, svc))

    def analytics(self, org: str, svc: str) -> Json:
        """{logins_total, logins_24h, unique_users_30d, last_login_at}: SSO Responses issued."""
        return self._http.object("GET", _service(org, svc, "analytics"))
