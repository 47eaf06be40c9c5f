"""End-to-end SSO helpers: a SAML service set up through the API, a browser, two real SPs.

The SP stacks are python3-saml (OneLogin toolkit) in strict mode and pysaml2's Saml2Client
with its default xmlsec1 backend; both trust the certificate the service's API handed out.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from conftest import Server, unique_slug
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig as Pysaml2SpConfig
from saml2.response import AuthnResponse
from saml_core_helpers import key_pair, redirect_query, sign_xml

from idp.saml import constants as c

EMAIL_FORMAT = c.NAMEID_EMAIL
ACS_PORT = 9  # nothing listens there: the browser never really posts to the SP
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"


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

    @property
    def entity_id(self) -> str:
        """The IdP's entity ID (its metadata URL)."""
        return f"{self.base}/metadata"

    @property
    def sso_url(self) -> str:
        return f"{self.base}/sso"

    @property
    def slo_url(self) -> str:
        return f"{self.base}/slo"

    def api(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        """A call to this service's admin API routes (``path`` after the service)."""
        route = f"/organizations/{self.org}/services/{self.svc}{path}"
        return self.server.api(method, route, self.token, **kwargs)

    def configure(self, **changes: Any) -> None:
        """Change the SAML configuration through the API."""
        config = {**self.config, **changes}
        response = self.api("PUT", "/saml", json=config)
        assert response.status_code == 200, response.text
        self.config = config

    def rotate(self) -> str:
        """Generate a new signing certificate; returns the old one."""
        old = self.certificate
        response = self.api("POST", "/saml/certificate")
        assert response.status_code == 201, response.text
        self.certificate = response.json()["public_key"]
        return old

    def metadata(self) -> str:
        """The IdP metadata as an SP downloads it."""
        response = requests.get(self.entity_id, timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def onelogin_settings(self, certificate: str | None = None, **security: Any) -> dict[str, Any]:
        """python3-saml settings for an SP that trusts this service's IdP (or ``certificate``)."""
        sp_key, sp_certificate = key_pair("sp")
        sp: dict[str, Any] = {
            "entityId": self.config["entity_id"],
            "assertionConsumerService": {"url": self.config["acs_url"]},
            "NameIDFormat": self.config["name_id_format"],
            "x509cert": sp_certificate.decode(),
            "privateKey": sp_key.decode(),
        }
        if self.config.get("slo_url"):
            sp["singleLogoutService"] = {"url": self.config["slo_url"]}
        return {
            "strict": True,
            "sp": sp,
            "idp": {
                "entityId": self.entity_id,
                "singleSignOnService": {"url": self.sso_url},
                "singleLogoutService": {"url": self.slo_url},
                "x509cert": certificate or self.certificate,
            },
            "security": {
                "wantAssertionsSigned": self.config["sign_assertions"],
                "wantMessagesSigned": self.config["sign_response"],
                "wantNameId": True,
                "rejectDeprecatedAlgorithm": True,
                "signatureAlgorithm": c.SIG_RSA_SHA256,
                "digestAlgorithm": SHA256_DIGEST,
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

    @property
    def xml(self) -> etree._Element:
        """The posted message, parsed (only after a third-party stack verified it)."""
        return etree.fromstring(base64.b64decode(self.value))


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


def login_fields(page: str) -> dict[str, str]:
    """The hidden fields of a login form: csrf_token, and with a pending SSO request its
    token and the organization it fixes (``org``)."""
    found = re.findall(
        r'<input type="hidden" name="(csrf_token|pending|org)" value="([^"]*)"', page
    )
    return {name: html.unescape(value) for name, value in found}


def is_login_page(page: requests.Response) -> bool:
    """True when the IdP answered with its login form."""
    return page.status_code == 200 and 'name="password"' in page.text


@dataclass
class Browser:
    """A cookie-keeping HTTP client that signs in at the IdP's login page when sent there."""

    server: Server
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        # no idle keep-alive connections: they hold up the test server's shutdown
        self.session.headers["Connection"] = "close"

    def login(
        self, page: requests.Response, email: str, password: str, org: str | None = None
    ) -> requests.Response:
        """Fill and submit the login form on ``page``; follow redirects to the answer.

        The form's hidden fields (CSRF token, pending request, and the organization a pending
        request fixes) are sent as the page has them; ``org`` fills (or overrides) the
        organization, as someone typing into a direct login page would.
        """
        fields = login_fields(page.text)
        if org is not None:
            fields["org"] = org
        return self.session.post(
            f"{self.server.url}/login",
            data={**fields, "email": email, "password": password},
            timeout=10,
        )

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET, following redirects."""
        return self.session.get(url, timeout=10, **kwargs)

    def post(self, url: str, data: dict[str, str], **kwargs: Any) -> requests.Response:
        """POST a form, following redirects."""
        return self.session.post(url, data=data, timeout=10, **kwargs)

    def sso(
        self, url: str, email: str | None = None, password: str | None = None
    ) -> requests.Response:
        """Open an SSO URL; when the login page shows, sign in with the credentials."""
        return self._signed_in(self.get(url), email, password)

    def sso_post(
        self, url: str, data: dict[str, str], email: str | None = None, password: str | None = None
    ) -> requests.Response:
        """POST an SSO form (HTTP-POST binding); sign in when the login page shows."""
        return self._signed_in(self.post(url, data), email, password)

    def _signed_in(
        self, page: requests.Response, email: str | None, password: str | None
    ) -> requests.Response:
        if 'name="password"' in page.text and email and password:
            page = self.login(page, email, password)
        return page

    @property
    def sid(self) -> str | None:
        """The IdP session cookie the browser holds."""
        return self.session.cookies.get("idp_session")


def onelogin_auth(service: SamlService, **security: Any) -> OneLogin_Saml2_Auth:
    """A python3-saml SP object for building AuthnRequests and LogoutRequests."""
    request = {
        "https": "off",
        "http_host": "127.0.0.1",
        "script_name": "/",
        "get_data": {},
        "post_data": {},
    }
    return OneLogin_Saml2_Auth(request, service.onelogin_settings(**security))


def onelogin_request(
    url: str, query: str = "", post: dict[str, str] | None = None
) -> dict[str, Any]:
    """How python3-saml describes a request received at ``url`` (with its raw query)."""
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()},
        "post_data": post or {},
        "query_string": query,
        "validate_signature_from_qs": True,
    }


def onelogin_response(
    service: SamlService, message: PostedMessage, certificate: str | None = None, **security: Any
) -> tuple[OneLogin_Saml2_Response, dict[str, Any]]:
    """A python3-saml Response for a posted SAMLResponse, and the ACS request it arrived at
    (``security`` overrides the SP's security settings)."""
    request = onelogin_request(service.config["acs_url"], post={"SAMLResponse": message.value})
    settings = OneLogin_Saml2_Settings(service.onelogin_settings(certificate, **security))
    return OneLogin_Saml2_Response(settings, message.value), request


def onelogin_accepts(
    service: SamlService,
    message: PostedMessage,
    request_id: str | None,
    certificate: str | None = None,
    **security: Any,
) -> OneLogin_Saml2_Response:
    """Validate a posted SAMLResponse the way a strict python3-saml SP does; assert it is valid."""
    response, request = onelogin_response(service, message, certificate, **security)
    valid = response.is_valid(request, request_id=request_id, raise_exceptions=False)
    assert valid, response.get_error()
    return response


def onelogin_rejects(
    service: SamlService, message: PostedMessage, request_id: str | None, certificate: str
) -> str:
    """Assert a strict python3-saml SP trusting ``certificate`` rejects the Response."""
    response, request = onelogin_response(service, message, certificate)
    assert not response.is_valid(request, request_id=request_id, raise_exceptions=False)
    return str(response.get_error())


def pysaml2_sp(
    service: SamlService,
    directory: Path,
    *,
    metadata: str | None = None,
    sign_requests: bool = False,
) -> Saml2Client:
    """A pysaml2 SP (default xmlsec1 backend, SHA-256) that loaded the IdP's metadata."""
    sp_key, sp_certificate = key_pair("sp")
    (directory / "sp.key").write_bytes(sp_key)
    (directory / "sp.crt").write_bytes(sp_certificate)
    endpoints: dict[str, Any] = {
        "assertion_consumer_service": [(service.config["acs_url"], BINDING_HTTP_POST)]
    }
    if service.config.get("slo_url"):
        slo = service.config["slo_url"]
        endpoints["single_logout_service"] = [
            (slo, BINDING_HTTP_REDIRECT),
            (slo, BINDING_HTTP_POST),
        ]
    config = Pysaml2SpConfig()
    config.load(
        {
            "entityid": service.config["entity_id"],
            "service": {
                "sp": {
                    "endpoints": endpoints,
                    "want_response_signed": service.config["sign_response"],
                    "want_assertions_signed": service.config["sign_assertions"],
                    "want_assertions_or_response_signed": True,
                    "allow_unsolicited": True,
                    "authn_requests_signed": sign_requests,
                    "logout_requests_signed": sign_requests,
                    "name_id_format": service.config["name_id_format"],
                    "signing_algorithm": c.SIG_RSA_SHA256,
                    "digest_algorithm": SHA256_DIGEST,
                }
            },
            "metadata": {"inline": [metadata or service.metadata()]},
            "key_file": str(directory / "sp.key"),
            "cert_file": str(directory / "sp.crt"),
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def pysaml2_accepts(
    client: Saml2Client, message: PostedMessage, request_id: str | None
) -> AuthnResponse:
    """Validate a posted SAMLResponse with pysaml2; raises when it is not acceptable."""
    outstanding = {request_id: "/"} if request_id else {}
    response: AuthnResponse = client.parse_authn_request_response(
        message.value, BINDING_HTTP_POST, outstanding=outstanding
    )
    assert response is not None
    return response


def pysaml2_redirect(
    client: Saml2Client, service: SamlService, relay_state: str = ""
) -> tuple[str, str]:
    """A pysaml2 AuthnRequest by HTTP-Redirect: its ID and the URL to open."""
    request_id, info = client.prepare_for_authenticate(
        entityid=service.entity_id, relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
    )
    return request_id, dict(info["headers"])["Location"]


def pysaml2_post_form(
    client: Saml2Client, service: SamlService, relay_state: str | None = None, sign: bool = False
) -> tuple[str, dict[str, str]]:
    """A pysaml2 AuthnRequest for the HTTP-POST binding: its ID and the form to post."""
    request_id, request = client.create_authn_request(service.sso_url, sign=sign)
    form = {"SAMLRequest": base64.b64encode(str(request).encode()).decode()}
    if relay_state is not None:
        form["RelayState"] = relay_state
    return request_id, form


# Hand-made AuthnRequests ---------------------------------------------------------------


def instant(offset_s: float = 0) -> str:
    """An xs:dateTime ``offset_s`` seconds from now."""
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_request_id() -> str:
    return "_" + secrets.token_hex(16)


def authn_request(
    service: SamlService,
    *,
    name_id_format: str | None = None,
    doctype: str = "",
    issuer: str | None = None,
    **attributes: str | None,
) -> bytes:
    """An AuthnRequest as an SP sends it to ``service``; ``attributes`` override (None drops)
    root attributes; ``name_id_format`` defaults to the configured one ("" drops the policy)."""
    values: dict[str, str | None] = {
        "ID": new_request_id(),
        "Version": "2.0",
        "IssueInstant": instant(),
        "Destination": service.sso_url,
        "AssertionConsumerServiceURL": service.config["acs_url"],
        "ProtocolBinding": BINDING_HTTP_POST,
        **attributes,
    }
    rendered = " ".join(f'{name}="{value}"' for name, value in values.items() if value is not None)
    policy_format = service.config["name_id_format"] if name_id_format is None else name_id_format
    policy = f'<samlp:NameIDPolicy Format="{policy_format}" AllowCreate="true"/>'
    return (
        f"{doctype}"
        f'<samlp:AuthnRequest xmlns:samlp="{c.SAMLP_NS}" xmlns:saml="{c.SAML_NS}" {rendered}>'
        f"<saml:Issuer>{issuer or service.config['entity_id']}</saml:Issuer>"
        f"{policy if policy_format else ''}"
        "</samlp:AuthnRequest>"
    ).encode()


def request_id_of(xml: bytes) -> str:
    """The ID of a hand-made request."""
    found = re.search(rb' ID="([^"]+)"', xml)
    assert found
    return found.group(1).decode()


def redirect_url(
    service: SamlService, xml: bytes, relay_state: str | None = None, signer: str | None = None
) -> str:
    """The HTTP-Redirect URL for ``xml`` (query-signed by key pair ``signer``)."""
    return f"{service.sso_url}?{redirect_query(xml, relay_state, signer)}"


def post_form(
    xml: bytes, relay_state: str | None = None, signer: str | None = None
) -> dict[str, str]:
    """The HTTP-POST form for ``xml`` (with an enveloped signature by ``signer``)."""
    if signer is not None:
        xml = sign_xml(xml, signer)
    form = {"SAMLRequest": base64.b64encode(xml).decode()}
    if relay_state is not None:
        form["RelayState"] = relay_state
    return form


def assert_refused(page: requests.Response, status: int, *phrases: str) -> None:
    """An HTML error page with ``status`` naming ``phrases``: no redirect, no SAML message."""
    assert page.status_code == status, (page.status_code, page.text[:2000])
    assert not page.history, [r.status_code for r in page.history]
    assert "Location" not in page.headers
    assert page.headers["Content-Type"].startswith("text/html")
    text = html.unescape(page.text)
    assert "SAMLResponse" not in text and 'name="SAMLRequest"' not in text
    assert "<form" not in text and "<script" not in text
    for phrase in phrases:
        assert phrase in text, (phrase, text)


def signature_placement(message: PostedMessage) -> tuple[bool, bool]:
    """Whether the Response and its Assertion carry an enveloped signature."""
    root = message.xml
    ds = f"{{{c.DS_NS}}}Signature"
    assertion = root.find(f"{{{c.SAML_NS}}}Assertion")
    assert assertion is not None
    return root.find(ds) is not None, assertion.find(ds) is not None
