"""Passkeys and the multi-factor pages in a real browser (contract §7).

Debian's chromium, driven by Playwright, with a CDP virtual WebAuthn authenticator (resident
keys, user verification) standing in for a phone or a security key. The server runs with
IDP_BASE_URL=http://localhost:PORT: the WebAuthn RP ID is the host of the public origin, and
localhost is a secure context where 127.0.0.1 is not a valid RP ID.

The SP side is a strict python3-saml SP: the browser's POST to the ACS is caught by a route
(nothing listens there) and the SAMLResponse it carried is verified like any SP would.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyotp
import pytest
from conftest import Account, Server, flush_redis, free_port, server_env, start_server, stop_server
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect, sync_playwright
from playwright.sync_api import Request as BrowserRequest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sso_helpers import PostedMessage, SamlService, onelogin_accepts, onelogin_auth, saml_service
from sso_v2_helpers import MFA, Person, create_org, create_person

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RECOVERY_CODE = re.compile(r"^[A-Za-z0-9]{5}-[A-Za-z0-9]{5}$")
FACTOR_URL = re.compile(r"/login/factor(\?|$)")
PASSKEY_NAME = "Work laptop"
# CSP violations reach the console by themselves; this makes sure, and names the directive
REPORT_CSP = """
document.addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
});
"""
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}

expect.set_options(timeout=WAIT_MS)


# -- the server and the browser -----------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """This module's server, public at http://localhost:PORT (WebAuthn needs a valid RP ID);
    conftest's ``owner`` fixture uses it too."""
    flush_redis(redis_url)
    port = free_port()
    base = f"http://localhost:{port}"
    env = server_env(database_url, redis_url, port, IDP_BASE_URL=base)
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield dataclasses.replace(running, url=base)
    stop_server(running)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Debian chromium for the module (CI installs it: `make test`)."""
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@dataclass
class Keyring:
    """The passkeys of one physical authenticator, carried from one browser profile to the
    next. Its state (sign counters included) is taken back when a tab closes: a copy with
    an older counter would be refused as a cloned authenticator, rightly."""

    credentials: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Tab:
    """A fresh browser profile with one page, its virtual authenticator, what the page
    complained about, and every SAML message it posted to an ACS."""

    context: BrowserContext
    page: Page
    cdp: CDPSession
    authenticator: str
    keyring: Keyring
    problems: list[str] = field(default_factory=list)
    posted: list[BrowserRequest] = field(default_factory=list)

    def close(self) -> None:
        """Put the authenticator's credentials back on the keyring; close the profile."""
        try:
            self.keyring.credentials = self.credentials()
        finally:
            self.context.close()

    def credentials(self) -> list[dict[str, Any]]:
        """The credentials the virtual authenticator holds (private keys included)."""
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        credentials: list[dict[str, Any]] = found["credentials"]
        return credentials

    def cookies(self) -> set[str]:
        """The names of the cookies the browser holds."""
        return {cookie["name"] for cookie in self.context.cookies()}


def open_tab(
    chromium: Browser, viewport: dict[str, int] | None = None, keyring: Keyring | None = None
) -> Tab:
    """A new profile whose authenticator holds the ``keyring``'s passkeys (as on a second
    visit with the same phone); ACS posts are answered by the test, not sent."""
    context = chromium.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
    context.add_init_script(REPORT_CSP)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    tab = Tab(context, page, cdp, added["authenticatorId"], keyring or Keyring())
    for credential in tab.keyring.credentials:
        cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": tab.authenticator, "credential": credential},
        )
    page.on("console", lambda msg: _console(tab, msg.type, msg.text))
    page.on("pageerror", lambda exc: tab.problems.append(f"page error: {exc}"))

    def acs(route: Any, request: BrowserRequest) -> None:
        if request.method == "POST":
            tab.posted.append(request)
        route.fulfill(status=200, content_type="text/plain", body="received by the SP")

    context.route(lambda url: url.endswith("/acs"), acs)
    return tab


def _console(tab: Tab, kind: str, text: str) -> None:
    if kind == "error" or "Content Security Policy" in text:
        tab.problems.append(f"console {kind}: {text}")


@pytest.fixture
def tabs(chromium: Browser) -> Iterator[Callable[..., Tab]]:
    """Opens tabs for one test and closes them afterwards."""
    opened: list[Tab] = []

    def make(**kwargs: Any) -> Tab:
        opened.append(open_tab(chromium, **kwargs))
        return opened[-1]

    yield make
    for tab in opened:
        tab.close()


# -- the organization, its service, its people ----------------------------------------------


@pytest.fixture(scope="module")
def org(server: Server, owner: Account) -> str:
    return create_org(server, owner.token, "mfa")


@pytest.fixture(scope="module")
def service(server: Server, owner: Account, org: str) -> SamlService:
    """A SAML service that does not itself require MFA: the class asserted is the one used."""
    return saml_service(server, owner.token, org)


def sign_in_with_password(tab: Tab, person: Person, server: Server | None = None) -> None:
    """Fill the login page shown (or, with ``server``, opened for the person's organization)
    and submit it."""
    page = tab.page
    if server is not None:
        page.goto(f"{server.url}/login?org={person.org}")
    page.locator('input[name="email"]').fill(person.email)
    page.locator('input[name="password"]').fill(person.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def open_account(tab: Tab, server: Server, org: str) -> None:
    tab.page.goto(f"{server.url}/account?org={org}")
    expect(tab.page).to_have_url(re.compile(r"/account\?org="))


def recovery_codes(page: Page) -> list[str]:
    """The recovery codes shown on the page (after waiting for the list of ten)."""
    items = page.locator("#recovery-codes li code")
    expect(items).to_have_count(10)
    return [code.strip() for code in items.all_inner_texts()]


def posted_response(tab: Tab, service: SamlService, action: Callable[[], None]) -> PostedMessage:
    """Do ``action``, wait until the browser posts a SAMLResponse to the service's ACS."""
    acs = service.config["acs_url"]
    try:
        with tab.page.expect_request(
            lambda request: request.url == acs and request.method == "POST", timeout=WAIT_MS
        ) as caught:
            action()
    except PlaywrightTimeout:
        seen = tab.page.locator("body").inner_text()
        pytest.fail(f"nothing posted to the ACS; at {tab.page.url}: {seen!r} {tab.problems}")
    expect(tab.page).to_have_url(acs)  # the SP's answer is shown: the route has run
    form = parse_qs(caught.value.post_data or "")
    assert "SAMLResponse" in form, form
    relay = form.get("RelayState", [None])[0]
    return PostedMessage(acs, "SAMLResponse", form["SAMLResponse"][0], relay)


@dataclass
class Enrolled:
    """A person who added a passkey through /account, and what the browser saw doing it."""

    person: Person
    keyring: Keyring
    codes_at_enrolment: list[str]
    account_page_after: str
    codes_shown_after: int
    passkeys_listed: int
    problems: list[str]


@pytest.fixture(scope="module")
def passkey_person(server: Server, owner: Account, org: str, chromium: Browser) -> Enrolled:
    """Open /account, which asks to sign in first; sign in with the password, land back on
    /account, name and add a passkey (the account's first factor)."""
    person = create_person(server, owner.token, org)
    tab = open_tab(chromium)
    try:
        tab.page.goto(f"{server.url}/account?org={org}")
        expect(tab.page).to_have_url(re.compile(r"/login\?org=[^&]+&next=account$"))
        sign_in_with_password(tab, person)
        expect(tab.page).to_have_url(f"{server.url}/account?org={org}")
        tab.page.get_by_label("Passkey name").fill(PASSKEY_NAME)
        tab.page.get_by_role("button", name="Add a passkey").click()
        codes = recovery_codes(tab.page)
        open_account(tab, server, org)
        main = tab.page.locator("main")
        expect(main).to_contain_text(PASSKEY_NAME)
        return Enrolled(
            person,
            tab.keyring,
            codes,
            main.inner_text(),
            tab.page.locator("#recovery-codes li").count(),
            tab.page.locator('form[action$="/rename"]').count(),
            tab.problems,
        )
    finally:
        tab.close()


# -- the tests ----------------------------------------------------------------------------


def test_a_passkey_is_added_at_the_account_page_with_recovery_codes_shown_once(
    passkey_person: Enrolled,
) -> None:
    codes = passkey_person.codes_at_enrolment
    assert len(set(codes)) == 10 and all(RECOVERY_CODE.match(code) for code in codes), codes
    # the authenticator holds one discoverable credential for the IdP's host
    [credential] = passkey_person.keyring.credentials
    assert credential["rpId"] == "localhost"
    assert credential["isResidentCredential"] is True
    # listed once, with its name, on the next visit; the codes are not shown again
    assert passkey_person.passkeys_listed == 1
    assert PASSKEY_NAME in passkey_person.account_page_after
    assert passkey_person.codes_shown_after == 0
    assert not any(code in passkey_person.account_page_after for code in codes)
    assert "10 of 10 left" in passkey_person.account_page_after
    assert passkey_person.problems == []


def test_b_a_passkey_alone_signs_in_to_a_service_with_the_mfa_class(
    tabs: Callable[..., Tab], service: SamlService, passkey_person: Enrolled
) -> None:
    tab = tabs(keyring=passkey_person.keyring)
    auth = onelogin_auth(service, requestedAuthnContext=False)
    tab.page.goto(auth.login())
    expect(tab.page).to_have_url(re.compile(r"/login\?pending="))
    button = tab.page.get_by_role("button", name="Sign in with a passkey")
    message = posted_response(tab, service, button.click)
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_authn_contexts() == [MFA]
    assert response.get_nameid() == passkey_person.person.email
    assert "idp_session" in tab.cookies()
    assert tab.problems == []


def test_c_a_passkey_as_second_factor_after_the_password(
    tabs: Callable[..., Tab], service: SamlService, passkey_person: Enrolled
) -> None:
    tab = tabs(keyring=passkey_person.keyring)
    auth = onelogin_auth(service, requestedAuthnContext=[MFA])
    tab.page.goto(auth.login())
    sign_in_with_password(tab, passkey_person.person)
    expect(tab.page).to_have_url(FACTOR_URL)
    # the password alone signed nobody in, and nothing went to the SP
    assert "idp_session" not in tab.cookies()
    assert "idp_factor" in tab.cookies()
    assert tab.posted == []
    expect(tab.page.locator('input[name="code"]')).to_be_visible()
    button = tab.page.get_by_role("button", name="Use a passkey")
    message = posted_response(tab, service, button.click)
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_authn_contexts() == [MFA]
    assert response.get_nameid() == passkey_person.person.email
    assert len(tab.posted) == 1
    assert tab.problems == []


def _wrong_code(totp: pyotp.TOTP) -> str:
    """A code no step of the ±1 window accepts."""
    valid = {totp.at(time.time() + offset) for offset in (-60, -30, 0, 30, 60)}
    return next(code for code in ("000000", "111111", "222222") if code not in valid)


@dataclass
class TotpEnrolled:
    """A person who set up an authenticator app through /account/totp."""

    person: Person
    totp: pyotp.TOTP
    codes: list[str]
    wrong_code_status: int
    right_code_status: int
    app_shown_on: bool
    problems: list[str]


@pytest.fixture(scope="module")
def totp_person(server: Server, owner: Account, org: str, chromium: Browser) -> TotpEnrolled:
    """Sign in with a password; on /account follow "Set up an authenticator app", read the
    secret beside the QR code, try a wrong code, then the app's code."""
    person = create_person(server, owner.token, org)
    tab = open_tab(chromium)
    page = tab.page
    try:
        sign_in_with_password(tab, person, server)
        expect(page.locator("main")).to_contain_text("You are signed in")
        open_account(tab, server, org)
        page.get_by_role("link", name="Set up an authenticator app").click()
        expect(page).to_have_url(re.compile(r"/account/totp\?org="))
        expect(page.locator("main svg").first).to_be_visible()  # the QR code
        totp = pyotp.TOTP(re.sub(r"\s", "", page.locator("#totp-secret").inner_text()))

        page.locator('input[name="code"]').fill(_wrong_code(totp))
        with page.expect_response(lambda r: r.request.method == "POST") as refused:
            page.get_by_role("button", name="Turn on").click()
        expect(page.get_by_role("alert")).to_be_visible()

        page.locator('input[name="code"]').fill(totp.now())
        with page.expect_response(lambda r: r.request.method == "POST") as accepted:
            page.get_by_role("button", name="Turn on").click()
        codes = recovery_codes(page) if accepted.value.status == 200 else []
        open_account(tab, server, org)
        app_on = page.get_by_role("button", name="Remove authenticator app").count() == 1
        return TotpEnrolled(
            person,
            totp,
            codes,
            refused.value.status,
            accepted.value.status,
            app_on,
            tab.problems,
        )
    finally:
        tab.close()


def test_d_an_authenticator_app_is_enrolled_in_the_browser_and_then_asked_for(
    tabs: Callable[..., Tab], service: SamlService, totp_person: TotpEnrolled
) -> None:
    assert totp_person.wrong_code_status == 400
    assert totp_person.right_code_status == 200
    codes = totp_person.codes
    assert len(set(codes)) == 10 and all(RECOVERY_CODE.match(code) for code in codes), codes
    assert totp_person.app_shown_on
    # the wrong code's 400 is the only thing the console reported
    assert all("status of 400" in problem for problem in totp_person.problems), totp_person.problems

    # a new sign-in asks for the app's code after the password, then asserts the MFA class
    tab = tabs()
    auth = onelogin_auth(service, requestedAuthnContext=False)
    tab.page.goto(auth.login())
    sign_in_with_password(tab, totp_person.person)
    expect(tab.page).to_have_url(FACTOR_URL)
    expect(tab.page.get_by_role("button", name="Use a passkey")).to_have_count(0)
    # the enrolment spent the current step's code: the next step's is valid (±1 step)
    tab.page.locator('input[name="code"]').fill(totp_person.totp.at(time.time() + 30))
    verify = tab.page.get_by_role("button", name="Verify")
    message = posted_response(tab, service, verify.click)
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_authn_contexts() == [MFA]
    assert response.get_nameid() == totp_person.person.email
    assert tab.problems == []


def test_g_a_recovery_code_is_a_second_factor_once(
    tabs: Callable[..., Tab], server: Server, totp_person: TotpEnrolled
) -> None:
    code = totp_person.codes[0]
    for attempt in ("first", "again"):
        tab = tabs()
        sign_in_with_password(tab, totp_person.person, server)
        expect(tab.page).to_have_url(FACTOR_URL)
        tab.page.locator('input[name="code"]').fill(code)
        with tab.page.expect_response(lambda r: r.request.method == "POST") as answer:
            tab.page.get_by_role("button", name="Verify").click()
        if attempt == "first":
            assert answer.value.status == 200, attempt
            expect(tab.page.locator("main")).to_contain_text("You are signed in")
            assert "idp_session" in tab.cookies()
        else:
            assert answer.value.status == 401, attempt
            expect(tab.page.get_by_role("alert")).to_be_visible()
            assert "idp_session" not in tab.cookies()


def test_h_a_service_requiring_mfa_sends_an_account_without_a_factor_to_enrol_first(
    tabs: Callable[..., Tab], server: Server, owner: Account, org: str
) -> None:
    strict = saml_service(server, owner.token, org, require_mfa=True)
    person = create_person(server, owner.token, org)
    tab = tabs()
    auth = onelogin_auth(strict, requestedAuthnContext=False)
    tab.page.goto(auth.login())
    sign_in_with_password(tab, person)
    expect(tab.page).to_have_url(re.compile(rf"/account\?org={org}&pending="))
    assert tab.posted == []
    tab.page.get_by_label("Passkey name").fill("Phone")
    tab.page.get_by_role("button", name="Add a passkey").click()
    recovery_codes(tab.page)
    assert tab.posted == []
    message = posted_response(tab, strict, tab.page.get_by_role("link", name="Continue").click)
    response = onelogin_accepts(strict, message, auth.get_last_request_id())
    assert response.get_authn_contexts() == [MFA]
    assert response.get_nameid() == person.email
    assert tab.problems == []


@dataclass
class Walk:
    """The login, second-factor and account pages at one viewport size."""

    viewport: dict[str, int]
    widths: dict[str, int] = field(default_factory=dict)
    shots: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("IDP_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screens")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def walks(
    chromium: Browser,
    server: Server,
    org: str,
    passkey_person: Enrolled,
    screenshot_dir: Path,
) -> list[Walk]:
    """Each page at a desktop and a phone size: its width, console, and a screenshot."""
    done = []
    for viewport in (DESKTOP, PHONE):
        walk = Walk(viewport)
        tab = open_tab(chromium, viewport=viewport, keyring=passkey_person.keyring)
        size = f"{viewport['width']}x{viewport['height']}"

        def visit(name: str, tab: Tab = tab, walk: Walk = walk, size: str = size) -> None:
            tab.page.wait_for_load_state("load")
            walk.widths[name] = tab.page.evaluate("document.documentElement.scrollWidth")
            path = screenshot_dir / f"{name}-{size}.png"
            tab.page.screenshot(path=str(path), full_page=True)
            walk.shots[name] = path

        try:
            tab.page.goto(f"{server.url}/login?org={org}")
            visit("login")
            sign_in_with_password(tab, passkey_person.person)
            expect(tab.page).to_have_url(FACTOR_URL)
            visit("factor")
            tab.page.get_by_role("button", name="Use a passkey").click()
            expect(tab.page.locator("main")).to_contain_text("You are signed in")
            open_account(tab, server, org)
            expect(tab.page.locator("main")).to_contain_text(PASSKEY_NAME)
            visit("account")
            walk.problems = list(tab.problems)
        finally:
            tab.close()
        done.append(walk)
    return done


def test_e_pages_raise_no_console_or_csp_errors_and_fit_a_phone(walks: list[Walk]) -> None:
    for walk in walks:
        assert walk.problems == [], (walk.viewport, walk.problems)
        assert set(walk.widths) == {"login", "factor", "account"}
        for name, width in walk.widths.items():
            assert width <= walk.viewport["width"], (name, walk.viewport, width)


def test_f_screenshots_of_each_page_at_both_sizes(walks: list[Walk]) -> None:
    for walk in walks:
        assert set(walk.shots) == {"login", "factor", "account"}
        for path in walk.shots.values():
            head = path.read_bytes()[:24]
            assert head.startswith(PNG_SIGNATURE), path
            width, height = struct.unpack(">II", head[16:24])  # the IHDR chunk
            assert width == walk.viewport["width"] and height >= walk.viewport["height"], (
                path,
                width,
                height,
            )
