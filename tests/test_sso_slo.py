"""Single Logout through a running server: LogoutRequests from python3-saml and pysaml2, our
signed LogoutResponses verified by them, and the IdP session really ended."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import Account, Server, add_user
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST
from saml_core_helpers import key_pair
from sso_helpers import (
    ACS_PORT,
    Browser,
    SamlService,
    assert_refused,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    onelogin_request,
    posted_message,
    pysaml2_accepts,
    pysaml2_redirect,
    pysaml2_sp,
    saml_service,
)

from idp.saml import constants as c


@pytest.fixture
def member(server: Server, owner: Account, org: str) -> Account:
    """An account of the test's organization (the module's owner is an operator)."""
    return add_user(server, owner.token, org)


def with_slo(server: Server, owner: Account, org: str, **config: Any) -> SamlService:
    """A service whose SP has a Single Logout endpoint."""
    service = saml_service(server, owner.token, org, **config)
    service.configure(slo_url=f"http://127.0.0.1:{ACS_PORT}/{service.svc}/slo")
    return service


def sign_in(service: SamlService, account: Account, browser: Browser) -> tuple[str, str]:
    """SP-initiated SSO by python3-saml; the NameID and SessionIndex it received."""
    auth = onelogin_auth(service)
    page = browser.sso(auth.login(), account.email, account.password)
    response = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    return response.get_nameid(), response.get_session_index()


def signed_out(service: SamlService, browser: Browser, **security: Any) -> bool:
    """True when the browser's next SSO asks for a login."""
    return is_login_page(browser.get(onelogin_auth(service, **security).login()))


def expired_session_cookie(page: requests.Response) -> bool:
    """True when the answer makes the browser drop its IdP session cookie."""
    return any(
        cookie.startswith("idp_session=;") and "Expires=Thu, 01 Jan 1970" in cookie
        for cookie in page.raw.headers.getlist("Set-Cookie")
    )


def logout_statuses(page: requests.Response) -> list[str]:
    """The status codes of the LogoutResponse an HTTP-Redirect answer carries."""
    query = parse_qs(urlsplit(page.headers["Location"]).query)
    xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(query["SAMLResponse"][0])
    root = etree.fromstring(xml)
    return [code.get("Value") for code in root.iter(f"{{{c.SAMLP_NS}}}StatusCode")]


def onelogin_logout_url(
    service: SamlService, name_id: str, session_index: str, **security: Any
) -> tuple[str, str]:
    """A python3-saml LogoutRequest by HTTP-Redirect: its ID and URL."""
    auth = onelogin_auth(service, **security)
    url = auth.logout(
        return_to="https://sp.test/bye?x=1&y=2",
        name_id=name_id,
        session_index=session_index,
        name_id_format=service.config["name_id_format"],
    )
    return auth.get_last_request_id(), url


def test_redirect_logout_answers_a_signed_redirect_python3_saml_accepts(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = with_slo(server, owner, org)
    other = with_slo(server, owner, org)
    browser = Browser(server)
    name_id, session_index = sign_in(service, member, browser)
    sign_in(other, member, browser)
    old_sid = browser.sid

    request_id, url = onelogin_logout_url(service, name_id, session_index)
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 303
    location = page.headers["Location"]
    assert location.startswith(service.config["slo_url"] + "?SAMLResponse=")
    assert expired_session_cookie(page)

    settings = service.onelogin_settings(wantMessagesSigned=True)
    query = urlsplit(location).query
    sp = OneLogin_Saml2_Auth(onelogin_request(service.config["slo_url"], query), settings)
    sp.process_slo(request_id=request_id, delete_session_cb=lambda: None)
    assert sp.get_errors() == [], sp.get_last_error_reason()
    assert sp.get_last_response_xml() and b"status:Success" in sp.get_last_response_xml().encode()
    assert "RelayState=https%3A%2F%2Fsp.test%2Fbye%3Fx%3D1%26y%3D2" in query

    forged = query.replace("RelayState=https", "RelayState=http")
    sp = OneLogin_Saml2_Auth(onelogin_request(service.config["slo_url"], forged), settings)
    sp.process_slo(request_id=request_id, delete_session_cb=lambda: None)
    assert "invalid_logout_response_signature" in sp.get_errors()

    assert signed_out(service, browser) and signed_out(other, browser)
    replayed = Browser(server)
    replayed.session.cookies.set("idp_session", old_sid)
    assert signed_out(other, replayed)


def test_post_logout_answers_a_signed_post_pysaml2_accepts(
    server: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    service = with_slo(server, owner, org, name_id_format=c.NAMEID_PERSISTENT)
    client = pysaml2_sp(service, tmp_path)
    browser = Browser(server)
    request_id, url = pysaml2_redirect(client, service)
    page = browser.sso(url, member.email, member.password)
    info = pysaml2_accepts(client, posted_message(page.text), request_id).session_info()

    logout_id, logout = client.create_logout_request(
        service.slo_url,
        service.entity_id,
        name_id=info["name_id"],
        session_indexes=[info["session_index"]],
        sign=False,
    )
    form = {"SAMLRequest": base64.b64encode(str(logout).encode()).decode(), "RelayState": "rs"}
    page = browser.post(service.slo_url, form, allow_redirects=False)
    assert expired_session_cookie(page)
    message = posted_message(page.text)
    assert message.action == service.config["slo_url"]
    assert message.relay_state == "rs"
    answer = base64.b64decode(message.value)
    assert client.sec.correctly_signed_logout_response(answer, must=True)
    parsed = client.parse_logout_request_response(message.value, BINDING_HTTP_POST)
    assert parsed.status_ok()
    assert parsed.response.in_response_to == logout_id
    assert parsed.response.issuer.text == service.entity_id
    assert signed_out(service, browser)


def test_logout_without_slo_url_shows_a_signed_out_page(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    browser = Browser(server)
    name_id, session_index = sign_in(service, member, browser)
    _, url = onelogin_logout_url(service, name_id, session_index)
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "signed out" in page.text
    assert "SAMLResponse" not in page.text and "Location" not in page.headers
    assert expired_session_cookie(page)
    assert signed_out(service, browser)


def test_cross_site_logout_without_cookie_ends_the_session_it_names(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = with_slo(server, owner, org)
    browser = Browser(server)
    name_id, session_index = sign_in(service, member, browser)
    stranger = Browser(server)

    _, url = onelogin_logout_url(service, "someone@else.test", session_index)
    page = stranger.get(url, allow_redirects=False)
    assert page.status_code == 303
    assert logout_statuses(page) == [c.STATUS_REQUESTER, c.STATUS_UNKNOWN_PRINCIPAL]
    assert not signed_out(service, browser)

    _, url = onelogin_logout_url(service, name_id, session_index)
    page = stranger.get(url, allow_redirects=False)
    assert page.status_code == 303
    assert logout_statuses(page) == [c.STATUS_SUCCESS]
    assert signed_out(service, browser)


def test_logout_request_signed_when_required(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = with_slo(
        server,
        owner,
        org,
        sp_certificate=key_pair("sp")[1].decode(),
        want_authn_requests_signed=True,
    )
    browser = Browser(server)
    auth = onelogin_auth(service, authnRequestsSigned=True)
    page = browser.sso(auth.login(), member.email, member.password)
    response = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    name_id, session_index = response.get_nameid(), response.get_session_index()

    _, unsigned = onelogin_logout_url(service, name_id, session_index)
    assert_refused(browser.get(unsigned, allow_redirects=False), 400, "accepts only signed")
    _, signed = onelogin_logout_url(service, name_id, session_index, logoutRequestSigned=True)
    forged = signed.replace("RelayState=https", "RelayState=http")
    assert_refused(browser.get(forged, allow_redirects=False), 400, "does not verify")
    assert not signed_out(service, browser, authnRequestsSigned=True)

    assert browser.get(signed, allow_redirects=False).status_code == 303
    assert signed_out(service, browser, authnRequestsSigned=True)


@pytest.mark.parametrize("problem", ["issuer", "replay"])
def test_refused_logout_request_keeps_the_session(
    server: Server, owner: Account, org: str, member: Account, problem: str
) -> None:
    service = with_slo(server, owner, org)
    browser = Browser(server)
    name_id, session_index = sign_in(service, member, browser)
    _, url = onelogin_logout_url(service, name_id, session_index)
    if problem == "issuer":
        other = saml_service(server, owner.token, org)
        page = browser.get(url.replace(f"/{service.svc}/", f"/{other.svc}/"), allow_redirects=False)
        assert_refused(page, 400, "comes from the SP")
    else:
        assert browser.get(url, allow_redirects=False).status_code == 303
        sign_in(service, member, browser)
        assert_refused(browser.get(url, allow_redirects=False), 400, "already used")
    assert not signed_out(service, browser)
