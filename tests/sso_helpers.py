"""End-to-end SSO helpers: a SAML service set up through the API, a browser, a real SP.

The SP side is python3-saml (OneLogin toolkit) in strict mode; pysaml2-based SPs can be
built from the same ``SamlService`` (see tests/saml_core_helpers.py for its client setup).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from conftest import Server, unique_slug
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
ACS_PORT = 9  # nothing listens there: the browser never really posts to the SP


@dataclass
class SamlService:
    """A service with SAML configured and a signing certificate, and its URLs."""

    server: Server
    token: str
    org: str
    svc: str
    config: dict[str, Any]
    certificate: str

    @property
    def base(self) -> str:
        """The service's IdP URL prefix."""
        return f"{self.server.url}/saml/{self.org}/{self.svc}"

    def onelogin_settings(self, **security: Any) -> dict[str, Any]:
        """python3-saml settings for an SP that trusts this service's IdP."""
        return {
            "strict": True,
            "sp": {
                "entityId": self.config["entity_id"],
                "assertionConsumerService": {"url": self.config["acs_url"]},
                "NameIDFormat": self.config["name_id_format"],
            },
            "idp": {
                "entityId": f"{self.base}/metadata",
                "singleSignOnService": {"url": f"{self.base}/sso"},
                "singleLogoutService": {"url": f"{self.base}/slo"},
                "x509cert": self.certificate,
            },
            "security": {
                "wantAssertionsSigned": self.config["sign_assertions"],
                "wantMessagesSigned": self.config["sign_response"],
                **security,
            },
        }


def saml_service(server: Server, token: str, org: str, **config: Any) -> SamlService:
    """Create a service in ``org``, configure SAML (``config`` overrides) and make a cert."""
    svc = unique_slug("app")
    body = {"slug": svc, "name": f"App {svc}", "service_type": "web", "redirect_uris": []}
    created = server.api("POST", f"/organizations/{org}/services", token, json=body)
    assert created.status_code == 201, created.text
    saml = {
        "enabled": True,
        "entity_id": f"https://{svc}.sp.test/metadata",
        "acs_url": f"http://127.0.0.1:{ACS_PORT}/{svc}/acs",
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "email", "groups": "groups"},
        "sign_assertions": True,
        "sign_response": False,
        **config,
    }
    configured = server.api("PUT", f"/organizations/{org}/services/{svc}/saml", token, json=saml)
    assert configured.status_code == 200, configured.text
    cert = server.api("POST", f"/organizations/{org}/services/{svc}/saml/certificate", token)
    assert cert.status_code == 201, cert.text
    return SamlService(server, token, org, svc, saml, cert.json()["public_key"])


@dataclass
class PostedMessage:
    """What the IdP's auto-posting page would send: target, message and RelayState."""

    action: str
    field: str
    value: str
    relay_state: str | None


def posted_message(page: str) -> PostedMessage:
    """Read the hidden form of an IdP answer page."""
    action = re.search(r'<form id="saml-form" method="post" action="([^"]+)"', page)
    message = re.search(r'name="(SAMLResponse|SAMLRequest)" value="([^"]+)"', page)
    relay = re.search(r'name="RelayState" value="([^"]*)"', page)
    assert action and message, page[:2000]
    return PostedMessage(
        html.unescape(action.group(1)),
        message.group(1),
        message.group(2),
        html.unescape(relay.group(1)) if relay else None,
    )


@dataclass
class Browser:
    """A cookie-keeping HTTP client that signs in at the IdP's login page when sent there."""

    server: Server
    session: requests.Session = field(default_factory=requests.Session)

    def login(self, page: requests.Response, email: str, password: str) -> requests.Response:
        """Fill and submit the login form on ``page``; follow redirects to the answer."""
        fields = dict(re.findall(r'name="(csrf_token|pending)" value="([^"]*)"', page.text))
        return self.session.post(
            f"{self.server.url}/login",
            data={**fields, "email": email, "password": password},
            timeout=10,
        )

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET, following redirects."""
        return self.session.get(url, timeout=10, **kwargs)

    def sso(
        self, url: str, email: str | None = None, password: str | None = None
    ) -> requests.Response:
        """Open an SSO URL; when the login page shows, sign in with the credentials."""
        page = self.get(url)
        if 'name="password"' in page.text and email and password:
            page = self.login(page, email, password)
        return page


def onelogin_auth(service: SamlService, **security: Any) -> OneLogin_Saml2_Auth:
    """A python3-saml SP object for building AuthnRequests."""
    request = {
        "https": "off",
        "http_host": "127.0.0.1",
        "script_name": "/",
        "get_data": {},
        "post_data": {},
    }
    return OneLogin_Saml2_Auth(request, service.onelogin_settings(**security))


def onelogin_accepts(
    service: SamlService, message: PostedMessage, request_id: str | None
) -> OneLogin_Saml2_Response:
    """Validate a posted SAMLResponse the way a strict python3-saml SP does; assert it is valid."""
    acs = urlsplit(service.config["acs_url"])
    request = {
        "https": "on" if acs.scheme == "https" else "off",
        "http_host": acs.netloc,
        "script_name": acs.path,
        "get_data": {},
        "post_data": {"SAMLResponse": message.value},
    }
    settings = OneLogin_Saml2_Settings(service.onelogin_settings())
    response = OneLogin_Saml2_Response(settings, message.value)
    valid = response.is_valid(request, request_id=request_id, raise_exceptions=False)
    assert valid, response.get_error()
    return response
