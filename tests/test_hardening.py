"""Hardened browser pages over HTTP: no caching, no referrer, a strict CSP whose script hash is
the script the SSO answer really carries, no framing, no sniffing, HSTS and Secure cookies
behind an https base URL, and CSRF protection on every cookie-authenticated POST."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import (
    Account,
    Server,
    add_user,
    free_port,
    start_server,
    stop_server,
)
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
from sso_helpers import (
    ACS_PORT,
    Browser,
    SamlService,
    authn_request,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    redirect_url,
    saml_service,
)

HSTS = "Strict-Transport-Security"
PASSKEY_SCRIPT = (Path(__file__).parent.parent / "idp" / "web" / "passkeys.js").read_text()
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PENDING_FIELD = re.compile(r'name="pending" value="([^"]+)"')
PER_EMAIL_LIMIT = 5  # IDP_LOGIN_MAX_FAILURES' default


@pytest.fixture(scope="module")
def service(server: Server, owner: Account) -> SamlService:
    return saml_service(server, owner.token, owner.org)


@pytest.fixture(scope="module")
def with_slo(server: Server, owner: Account) -> SamlService:
    service = saml_service(server, owner.token, owner.org)
    service.configure(slo_url=f"http://127.0.0.1:{ACS_PORT}/{service.svc}/slo")
    return service


@pytest.fixture
def member(server: Server, owner: Account) -> Account:
    return add_user(server, owner.token, owner.org)


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy as directive -> values."""
    parsed: dict[str, list[str]] = {}
    for part in filter(str.strip, policy.split(";")):
        name, *values = part.split()
        assert name not in parsed, f"{name} twice in {policy}"
        parsed[name] = values
    return parsed


def script_hash(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def assert_hardened(page: requests.Response, https: bool = False) -> None:
    """The headers every browser page carries; HTML pages also no caching and a strict CSP."""
    headers = page.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert (HSTS in headers) is https
    if https:
        assert re.fullmatch(r"max-age=(\d+)(; includeSubDomains)?", headers[HSTS])
        assert int(headers[HSTS].split(";")[0].split("=")[1]) >= 180 * 24 * 3600
    if not headers["Content-Type"].startswith("text/html"):
        return
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    policy = directives(headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    every_source = [value for values in policy.values() for value in values]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(every_source)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, re.S)
    allowed = set(policy.get("script-src", []))
    for attributes, body in scripts:
        if attributes.strip() == 'type="application/json" id="passkey-options"':
            json.loads(body)  # data for the passkey script, never run
            assert "<" not in body
            continue
        assert not attributes.strip(), "no script sources or nonces: hashes only"
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed, (body, allowed)
    assert not re.search(r"\son[a-z]+\s*=", page.text), "no inline event handlers"


def slo_request(service: SamlService, name_id: str) -> str:
    """A LogoutRequest by python3-saml for the HTTP-POST binding."""
    settings = OneLogin_Saml2_Settings(service.onelogin_settings())
    request = OneLogin_Saml2_Logout_Request(settings, name_id=name_id)
    return str(request.get_request(deflate=False))


# Every page over plain http -----------------------------------------------------------------


def test_every_kind_of_browser_page_is_hardened(
    server: Server, service: SamlService, with_slo: SamlService, member: Account
) -> None:
    browser = Browser(server)
    auth = onelogin_auth(service)
    to_login = browser.get(auth.login(), allow_redirects=False)
    assert to_login.status_code == 303
    login_page = browser.get(f"{server.url}{to_login.headers['Location']}")
    assert is_login_page(login_page)
    pages: dict[str, requests.Response] = {
        "redirect to login": to_login,
        "login form": login_page,
        "login refused (CSRF)": Browser(server).post(
            f"{server.url}/login", {"email": member.email, "password": member.password}
        ),
        "login refused (password)": browser.login(login_page, member.email, "wrong-password"),
    }
    answer = browser.login(login_page, member.email, member.password)
    pages["SSO answer after login"] = answer
    assert "<script>" in answer.text
    response = onelogin_accepts(service, posted_message(answer.text), auth.get_last_request_id())
    pages["SSO answer with a session"] = browser.get(onelogin_auth(service).login())
    pages["IdP-initiated answer"] = browser.get(f"{service.base}/init")
    pages["signed-in page"] = browser.get(f"{server.url}/login")
    pages["SSO refused (400)"] = browser.get(
        redirect_url(service, authn_request(service, Destination="https://evil.example/sso"))
    )
    unknown = redirect_url(service, authn_request(service)).replace(f"/{service.svc}/", "/nope/")
    pages["SSO refused (404)"] = browser.get(unknown)
    pages["resume refused"] = browser.get(f"{service.base}/resume?pending=made-up")
    pages["metadata"] = browser.get(service.entity_id)
    pages["stylesheet"] = browser.get(f"{server.url}/static/idp.css")
    pages["no such page"] = browser.get(f"{server.url}/no/such/page")
    logout = auth.logout(
        name_id=response.get_nameid(),
        session_index=response.get_session_index(),
        name_id_format=NAMEID_FORMAT_EMAILADDRESS,
    )
    pages["SLO signed-out page"] = browser.get(logout)
    assert "signed out" in pages["SLO signed-out page"].text

    slo_browser = Browser(server)
    sso = slo_browser.sso(onelogin_auth(with_slo).login(), member.email, member.password)
    pages["SLO by POST"] = slo_browser.post(
        with_slo.slo_url, {"SAMLRequest": slo_request(with_slo, member.email)}
    )
    assert posted_message(pages["SLO by POST"].text).action == with_slo.config["slo_url"]
    slo_browser.sso(onelogin_auth(with_slo).login(), member.email, member.password)
    redirect_logout = onelogin_auth(with_slo).logout(
        name_id=member.email, name_id_format=NAMEID_FORMAT_EMAILADDRESS
    )
    pages["SLO by redirect"] = slo_browser.get(redirect_logout, allow_redirects=False)
    assert pages["SLO by redirect"].status_code == 303
    signed_in_page = slo_browser.sso(f"{with_slo.base}/init", member.email, member.password)
    assert posted_message(signed_in_page.text)
    token = CSRF_FIELD.search(slo_browser.get(f"{server.url}/login").text)
    assert token
    pages["signed-out page"] = slo_browser.post(
        f"{server.url}/logout", {"csrf_token": token.group(1)}
    )
    pages["logout refused (CSRF)"] = slo_browser.post(f"{server.url}/logout", {})
    assert sso.status_code == 200

    statuses = {name: page.status_code for name, page in pages.items()}
    assert statuses == {
        "redirect to login": 303,
        "login form": 200,
        "login refused (CSRF)": 400,
        "login refused (password)": 401,
        "SSO answer after login": 200,
        "SSO answer with a session": 200,
        "IdP-initiated answer": 200,
        "signed-in page": 200,
        "SSO refused (400)": 400,
        "SSO refused (404)": 404,
        "resume refused": 400,
        "metadata": 200,
        "stylesheet": 200,
        "no such page": 404,
        "SLO signed-out page": 200,
        "SLO by POST": 200,
        "SLO by redirect": 303,
        "signed-out page": 200,
        "logout refused (CSRF)": 400,
    }
    for name, page in pages.items():
        try:
            assert_hardened(page)
        except AssertionError as failure:
            raise AssertionError(f"{name}: {failure}") from None


def test_the_csp_hash_is_the_hash_of_the_script_the_sso_answer_runs(
    server: Server, service: SamlService, member: Account
) -> None:
    page = Browser(server).sso(onelogin_auth(service).login(), member.email, member.password)
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(scripts) == 1 and "submit()" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    allowed = directives(page.headers["Content-Security-Policy"])["script-src"]
    # the answer's script, and the passkey script of the login and account pages: no other
    assert allowed == [f"'sha256-{digest}'", f"'sha256-{script_hash(PASSKEY_SCRIPT)}'"]
    assert 'id="saml-form"' in page.text and "<button" in page.text  # works without script too


# Behind TLS: an https base URL -----------------------------------------------------------------


@pytest.fixture(scope="module")
def https_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second host on the same database and Redis whose public origin is https (TLS ends at
    a proxy in front of it)."""
    port = free_port()
    env = {**server.env, "IDP_BASE_URL": f"https://127.0.0.1:{port}"}
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "https.log")
    yield running
    stop_server(running)


@dataclass
class Cookies:
    """A browser's cookies sent by hand: requests never sends Secure cookies over plain http."""

    server: Server
    jar: dict[str, str]

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        response = requests.request(
            method,
            path if path.startswith("http") else f"{self.server.url}{path}",
            headers={"Cookie": cookie, "Connection": "close"},
            allow_redirects=False,
            timeout=10,
            **kwargs,
        )
        for name, attributes in set_cookies(response).items():
            self.jar[name] = attributes[""]
        return response


def set_cookies(response: requests.Response) -> dict[str, dict[str, str]]:
    """Each Set-Cookie header as name -> attributes (lower-case; the value under "")."""
    found: dict[str, dict[str, str]] = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        (name, value), *rest = (part.strip().partition("=")[::2] for part in header.split(";"))
        found[name] = {"": value, **{k.lower(): v for k, v in rest}}
    return found


def test_https_base_url_adds_hsts_and_secure_cross_site_cookies(
    https_server: Server, owner: Account
) -> None:
    service = saml_service(https_server, owner.token, owner.org)
    metadata = requests.get(service.entity_id, timeout=10)
    assert f'entityID="https://127.0.0.1:{https_server.url.rsplit(":", 1)[1]}/' in metadata.text
    browser = Cookies(https_server, {})

    request = authn_request(service, Destination=None)  # its SSO URL is the https one
    to_login = browser.send("GET", redirect_url(service, request))
    assert to_login.status_code == 303
    assert_hardened(to_login, https=True)
    login_page = browser.send("GET", to_login.headers["Location"])
    assert_hardened(login_page, https=True)
    csrf = set_cookies(login_page)["idp_csrf"]
    assert {"secure", "httponly"} <= set(csrf) and csrf["samesite"].lower() in ("lax", "strict")
    fields = {
        "csrf_token": CSRF_FIELD.findall(login_page.text)[0],
        "pending": PENDING_FIELD.findall(login_page.text)[0],
        "email": owner.email,
        "password": owner.password,
    }
    resumed = browser.send("POST", "/login", data=fields)
    assert resumed.status_code == 303
    assert_hardened(resumed, https=True)
    session = set_cookies(resumed)["idp_session"]
    assert {"secure", "httponly"} <= set(session)
    assert session["samesite"] == "None" and session["path"] == "/"
    answer = browser.send("GET", resumed.headers["Location"])
    assert_hardened(answer, https=True)
    assert posted_message(answer.text).action == service.config["acs_url"]
    assert_hardened(browser.send("GET", "/no/such/page"), https=True)
    assert_hardened(browser.send("GET", service.entity_id), https=True)


def test_plain_http_base_url_sends_no_hsts_and_lax_cookies(
    server: Server, service: SamlService, member: Account
) -> None:
    browser = Browser(server)
    page = browser.get(onelogin_auth(service).login())
    assert HSTS not in page.headers
    answer = browser.session.post(
        f"{server.url}/login",
        data={
            "csrf_token": CSRF_FIELD.findall(page.text)[0],
            "pending": PENDING_FIELD.findall(page.text)[0],
            "email": member.email,
            "password": member.password,
        },
        allow_redirects=False,
    )
    session = set_cookies(answer)["idp_session"]
    assert "secure" not in session and session["samesite"] == "Lax" and "httponly" in session


# CSRF --------------------------------------------------------------------------------------------


@dataclass
class LoginForm:
    """A browser on the login page: its CSRF cookie and the form's token."""

    browser: Browser
    token: str | None
    pending: str | None

    def post(self, **fields: str | None) -> requests.Response:
        data = {"csrf_token": self.token, "pending": self.pending, **fields}
        return self.browser.session.post(
            f"{self.browser.server.url}/login",
            data={k: v for k, v in data.items() if v is not None},
            allow_redirects=False,
            timeout=10,
        )


def login_form(server: Server, url: str) -> LoginForm:
    browser = Browser(server)
    page = browser.get(url)
    assert is_login_page(page)
    token, pending = CSRF_FIELD.search(page.text), PENDING_FIELD.search(page.text)
    assert token
    return LoginForm(browser, token.group(1), pending.group(1) if pending else None)


FORGERIES = (
    "no token",
    "empty token",
    "wrong token",
    "other browser's token",
    "no cookie",
    "other browser's cookie",
    "oversized cookie",
)


def forge(form: LoginForm, other: LoginForm, forgery: str) -> None:
    """Spoil the form's token or the browser's CSRF cookie."""
    cookies = form.browser.session.cookies
    if forgery.endswith("token"):
        tokens = {
            "no": None,
            "empty": "",
            "wrong": "0" * len(form.token or ""),
            "other": other.token,
        }
        form.token = tokens[forgery.split()[0]]
        return
    other_cookie = other.browser.session.cookies["idp_csrf"]
    cookies.clear()
    if forgery == "other browser's cookie":
        cookies.set("idp_csrf", other_cookie)
    elif forgery == "oversized cookie":
        cookies.set("idp_csrf", "x" * 4000)


@pytest.mark.parametrize("forgery", FORGERIES)
def test_login_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    server: Server, service: SamlService, member: Account, forgery: str
) -> None:
    form = login_form(server, onelogin_auth(service).login())
    forge(form, login_form(server, f"{server.url}/login"), forgery)
    for _ in range(PER_EMAIL_LIMIT + 2):  # more than the throttle would allow
        refused = form.post(email=member.email, password="wrong-password")
        assert refused.status_code == 400 and "expired" in refused.text
    refused = form.post(email=member.email, password=member.password)
    assert refused.status_code == 400
    assert "idp_session" not in set_cookies(refused)
    assert form.browser.sid is None

    honest = login_form(server, onelogin_auth(service).login())
    answer = honest.post(email=member.email, password=member.password)
    assert answer.status_code == 303, "the refused posts were not counted by the throttle"
    assert "idp_session" in set_cookies(answer)
    if form.pending:  # the refused posts did not use up the pending request either
        retried = login_form(server, f"{server.url}/login?pending={form.pending}")
        assert retried.pending == form.pending
        resumed = retried.post(email=member.email, password=member.password)
        assert resumed.status_code == 303 and form.pending in resumed.headers["Location"]


@pytest.mark.parametrize("token", ["", "wrong", "other browser's"])
def test_logout_post_without_the_right_csrf_token_is_refused_and_keeps_the_session(
    server: Server, service: SamlService, member: Account, token: str
) -> None:
    browser = Browser(server)
    browser.sso(onelogin_auth(service).login(), member.email, member.password)
    sid = browser.sid
    assert sid
    other = login_form(server, f"{server.url}/login").token
    forged = {"": {}, "wrong": {"csrf_token": "f" * 64}, "other browser's": {"csrf_token": other}}
    refused = browser.post(f"{server.url}/logout", forged[token])
    assert refused.status_code == 400
    assert browser.sid == sid
    assert "idp_session" not in set_cookies(refused)
    still = browser.get(onelogin_auth(service).login())
    assert not is_login_page(still) and posted_message(still.text)
