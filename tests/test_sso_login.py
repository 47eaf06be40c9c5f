"""The IdP's login page and session cookie over HTTP: form, CSRF, failures, throttling,
no session fixation, cookie flags, sign-out, and the security headers of every browser page."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import Account, Server, add_user, unique_slug
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from requests.adapters import HTTPAdapter
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
from sso_helpers import (
    ACS_PORT,
    Browser,
    SamlService,
    assert_refused,
    authn_request,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    redirect_url,
    saml_service,
)

from idp.saml import constants as c

ERROR = re.compile(r'<p class="error" role="alert" id="login-error">([^<]*)</p>')
PER_ADDRESS_LIMIT = 50  # IDP_LOGIN_MAX_FAILURES_PER_IP's default
PER_EMAIL_LIMIT = 5  # IDP_LOGIN_MAX_FAILURES' default


@pytest.fixture(scope="module")
def org_name(server: Server, owner: Account) -> str:
    """An organization whose display name differs from its slug; returns the slug."""
    slug = unique_slug("globex")
    body = {"slug": slug, "name": "Globex Corporation"}
    assert server.api("POST", "/organizations", owner.token, json=body).status_code == 201
    return slug


@pytest.fixture(scope="module")
def service(server: Server, owner: Account, org_name: str) -> SamlService:
    service = saml_service(server, owner.token, org_name)
    service.configure(slo_url=f"http://127.0.0.1:{ACS_PORT}/{service.svc}/slo")
    return service


@pytest.fixture(scope="module")
def member(server: Server, owner: Account, org_name: str) -> Account:
    return add_user(server, owner.token, org_name)


def login_page(server: Server, service: SamlService) -> tuple[Browser, requests.Response]:
    """A fresh browser sent to the login page by an AuthnRequest."""
    browser = Browser(server)
    page = browser.get(onelogin_auth(service).login())
    assert is_login_page(page)
    return browser, page


def error_of(page: requests.Response) -> str:
    found = ERROR.search(page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def set_cookies(page: requests.Response) -> dict[str, str]:
    """The Set-Cookie headers of a response, by cookie name."""
    return {c.split("=", 1)[0]: c for c in page.raw.headers.getlist("Set-Cookie")}


# The form --------------------------------------------------------------------------------


def test_login_page_names_the_organization_and_service(
    server: Server, service: SamlService
) -> None:
    _, page = login_page(server, service)
    assert page.history and page.history[0].status_code == 303
    token = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">', page.text)
    assert token and len(token.group(1)) >= 32
    assert re.search(r'<input id="email" name="email" type="email"', page.text)
    assert re.search(r'<input id="password" name="password" type="password"', page.text)
    assert "Globex Corporation" in page.text
    assert f"App {service.svc}" in page.text
    assert '<label for="email">' in page.text and '<label for="password">' in page.text
    assert f'<input type="hidden" name="org" value="{service.org}">' in page.text
    assert 'id="org"' not in page.text  # the pending request fixes the organization


def test_direct_login_page_asks_for_the_organization(
    server: Server, service: SamlService, member: Account
) -> None:
    browser = Browser(server)
    page = browser.get(f"{server.url}/login")
    assert is_login_page(page)
    assert re.search(r'<input id="org" name="org" type="text"[^>]*value=""', page.text)
    prefilled = browser.get(f"{server.url}/login", params={"org": service.org})
    assert re.search(
        rf'<input id="org" name="org" type="text"[^>]*value="{service.org}"', prefilled.text
    )
    missing = browser.login(page, member.email, member.password)
    assert missing.status_code == 400 and "organization" in error_of(missing)
    elsewhere = browser.login(page, member.email, member.password, org="acme")
    assert elsewhere.status_code == 401
    assert browser.sid is None
    answer = browser.login(prefilled, member.email, member.password, org=service.org)
    assert answer.status_code == 200 and "You are signed in" in answer.text
    assert browser.sid
    auth = onelogin_auth(service)
    sso = browser.get(auth.login())  # signed in to the organization: no login page
    onelogin_accepts(service, posted_message(sso.text), auth.get_last_request_id())


def test_pending_request_fixes_the_organization(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    answer = browser.login(page, member.email, member.password, org="acme")
    assert posted_message(answer.text).action == service.config["acs_url"]


def test_unknown_email_and_wrong_password_get_the_same_answer(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    wrong_password = browser.login(page, member.email, "not-the-password")
    unknown_email = browser.login(page, "nobody-" + member.email, member.password)
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert error_of(wrong_password) == error_of(unknown_email)
    assert "idp_session" not in set_cookies(wrong_password)
    assert "idp_session" not in set_cookies(unknown_email)
    assert browser.sid is None
    assert 'name="password"' in wrong_password.text
    assert "not-the-password" not in wrong_password.text


def test_login_without_the_browsers_csrf_token_is_refused(
    server: Server, service: SamlService, member: Account
) -> None:
    _, page = login_page(server, service)
    other = Browser(server)
    answer = other.login(page, member.email, member.password)
    assert answer.status_code == 400
    assert "expired" in error_of(answer)
    assert other.sid is None


def test_failures_per_email_answer_429_with_retry_after(
    server: Server, owner: Account, org_name: str, service: SamlService
) -> None:
    victim = add_user(server, owner.token, org_name)
    browser, page = login_page(server, service)
    for _ in range(PER_EMAIL_LIMIT):
        assert browser.login(page, victim.email, "wrong-password").status_code == 401
    throttled = browser.login(page, victim.email, victim.password)
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 900
    assert "Try again in" in error_of(throttled)
    assert browser.sid is None
    other_user = add_user(server, owner.token, org_name)
    assert posted_message(browser.login(page, other_user.email, other_user.password).text)


class FromAddress(HTTPAdapter):
    """Connects from another loopback address, as another client would."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_failures_per_client_address_answer_429(
    server: Server, service: SamlService, member: Account
) -> None:
    browser = Browser(server)
    browser.session.mount("http://", FromAddress("127.0.0.2"))
    page = browser.get(onelogin_auth(service).login())
    for i in range(PER_ADDRESS_LIMIT):
        email = f"guess-{i}@example.test"
        assert browser.login(page, email, "password").status_code == 401
    throttled = browser.login(page, member.email, member.password)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0

    elsewhere, page = login_page(server, service)
    assert posted_message(elsewhere.login(page, member.email, member.password).text)


# The session cookie ------------------------------------------------------------------------


def test_login_issues_a_new_session_id(
    server: Server, service: SamlService, member: Account
) -> None:
    planted = "attacker-chosen-session-id"
    browser = Browser(server)
    browser.session.cookies.set("idp_session", planted, domain="127.0.0.1", path="/")
    page = browser.get(onelogin_auth(service).login())
    assert is_login_page(page)
    answer = browser.login(page, member.email, member.password)
    posted_message(answer.text)
    first = browser.sid
    assert first and first != planted and len(first) >= 32

    page = browser.get(onelogin_auth(service).login(force_authn=True))
    posted_message(browser.login(page, member.email, member.password).text)
    assert browser.sid and browser.sid != first
    stale = Browser(server)
    stale.session.cookies.set("idp_session", first)
    assert is_login_page(stale.get(onelogin_auth(service).login()))


def test_session_cookie_flags_on_http(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    csrf = set_cookies(page)["idp_csrf"]
    answer = browser.session.post(
        f"{server.url}/login",
        data={
            **dict(re.findall(r'name="(csrf_token|pending)" value="([^"]*)"', page.text)),
            "email": member.email,
            "password": member.password,
        },
        allow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = set_cookies(answer)["idp_session"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in attributes
    assert "httponly" in csrf.lower() and "samesite=lax" in csrf.lower()


def test_session_lasts_eight_hours(server: Server, service: SamlService, member: Account) -> None:
    browser, page = login_page(server, service)
    message = posted_message(browser.login(page, member.email, member.password).text)
    statement = message.xml.find(f".//{{{c.SAML_NS}}}AuthnStatement")
    assert statement is not None
    issued = datetime.fromisoformat(message.xml.get("IssueInstant"))
    ends = datetime.fromisoformat(statement.get("SessionNotOnOrAfter"))
    assert abs(ends - issued - timedelta(hours=8)) < timedelta(seconds=5)


def test_logout_needs_csrf_and_ends_the_session(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    posted_message(browser.login(page, member.email, member.password).text)
    signed_in = browser.get(f"{server.url}/login")
    assert "You are signed in" in signed_in.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', signed_in.text)
    assert token

    refused = browser.post(f"{server.url}/logout", {"csrf_token": "forged"})
    assert_refused(refused, 400, "expired")
    assert not is_login_page(browser.get(onelogin_auth(service).login()))

    done = browser.post(f"{server.url}/logout", {"csrf_token": token.group(1)})
    assert done.status_code == 200 and "signed out" in done.text
    assert browser.sid is None
    assert is_login_page(browser.get(onelogin_auth(service).login()))


def test_pending_request_is_answered_once(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    answer = browser.login(page, member.email, member.password)
    posted_message(answer.text)
    resume = answer.history[-1].headers["Location"]
    assert "/resume?pending=" in resume
    again = browser.get(server.url + resume, allow_redirects=False)
    assert_refused(again, 400, "already completed")


def test_email_is_matched_without_regard_to_case(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, auth = Browser(server), onelogin_auth(service)
    page = browser.get(auth.login())
    answer = browser.login(page, f"  {member.email.upper()} ", member.password)
    response = onelogin_accepts(service, posted_message(answer.text), auth.get_last_request_id())
    assert response.get_nameid() == member.email


def test_unknown_pending_request_is_refused(server: Server, service: SamlService) -> None:
    page = Browser(server).get(f"{service.base}/resume?pending=made-up", allow_redirects=False)
    assert_refused(page, 400, "Start again at the application")


# Security headers ----------------------------------------------------------------------------


def assert_hardened(page: requests.Response) -> None:
    """No caching, no referrer, no sniffing, no framing, and only hashed inline scripts."""
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = page.headers["Content-Security-Policy"]
    directives = {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    for script in re.findall(r"<script>(.*?)</script>", page.text, re.S):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"]
    assert "<script src" not in page.text and " onload=" not in page.text


def test_security_headers_on_every_browser_page(
    server: Server, service: SamlService, member: Account
) -> None:
    browser, page = login_page(server, service)
    assert_hardened(page)
    auth = onelogin_auth(service)
    answer = browser.login(page, member.email, member.password)
    assert_hardened(answer)
    assert "<script>" in answer.text

    answer = browser.get(auth.login())
    assert_hardened(answer)
    response = onelogin_accepts(service, posted_message(answer.text), auth.get_last_request_id())
    refused = browser.get(redirect_url(service, authn_request(service, Destination="x:y")))
    assert_hardened(refused)
    assert_hardened(browser.get(f"{server.url}/login"))

    logout = auth.logout(
        name_id=response.get_nameid(),
        session_index=response.get_session_index(),
        name_id_format=NAMEID_FORMAT_EMAILADDRESS,
    )
    redirected = browser.get(logout, allow_redirects=False)
    assert redirected.status_code == 303
    assert redirected.headers["Referrer-Policy"] == "no-referrer"
    assert redirected.headers["Cache-Control"] == "no-store"

    settings = OneLogin_Saml2_Settings(service.onelogin_settings())
    request = OneLogin_Saml2_Logout_Request(settings, name_id=response.get_nameid())
    posted = browser.post(service.slo_url, {"SAMLRequest": request.get_request(deflate=False)})
    assert posted_message(posted.text).action == service.config["slo_url"]
    assert_hardened(posted)
