"""TOTP second factor over HTTP, as a browser does it (CONTRACT §7, /account and /login/factor):
enrolment with a real authenticator (pyotp), recovery codes, the code step of every new
sign-in, its throttle, CSRF and sign-in requirements of the account pages, and where the seed
must never show up (server log, API answers, the database in clear).

Each attack is written so that it fails when the rule it names is missing.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from conftest import Account, Server, unique_slug
from mfa_helpers import (
    RECOVERY_CODE,
    answer_factor,
    authenticator,
    browser_session,
    enrol_totp,
    enrolled_account_session,
    factor_page,
    form_fields,
    forms,
    goes_to_factor,
    is_signed_in_page,
    login_page,
    recovery_codes,
    same_account,
    serve,
    sign_in_with_code,
    sign_in_with_password,
    spend_step,
    totp_code,
    totp_page,
)
from requests.adapters import HTTPAdapter
from sqlalchemy import create_engine, text
from sso_helpers import Browser, SamlService, is_login_page, saml_service
from sso_v2_helpers import (
    MFA,
    PPT,
    Person,
    create_org,
    create_person,
    has_assertion,
    redis_of,
    sp_sso,
    sso_page,
)

from idp.sessions import _throttle_key

PER_EMAIL = 5  # IDP_LOGIN_MAX_FAILURES default
WINDOW_S = 900  # IDP_LOGIN_THROTTLE_WINDOW default
WRONG_CODE = "000000"


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for the module (see mfa_helpers.serve: a roomy per-address limit)."""
    yield from serve(database_url, redis_url, tmp_path_factory.mktemp("log"))


@dataclass
class Enrolled:
    """An account with TOTP, the browser that enrolled it (signed in with MFA), its
    authenticator and its recovery codes."""

    person: Person
    session: requests.Session
    totp: pyotp.TOTP
    codes: list[str]


def enrolled_person(server: Server, owner: Account, org: str) -> Enrolled:
    """A new account of ``org`` that turned TOTP on in its own browser."""
    person = create_person(server, owner.token, org)
    session, totp, codes = enrolled_account_session(server.url, org, person.email, person.password)
    return Enrolled(person, session, totp, codes)


@pytest.fixture
def enrolled(server: Server, owner: Account, org: str) -> Enrolled:
    return enrolled_person(server, owner, org)


@pytest.fixture
def service(server: Server, owner: Account, org: str) -> SamlService:
    return saml_service(server, owner.token, org)


def user_json(server: Server, owner: Account, person: Person) -> dict[str, Any]:
    response = server.api("GET", f"/organizations/{person.org}/users/{person.id}", owner.token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def browser_of(server: Server, session: requests.Session) -> Browser:
    return Browser(server, session)


def asserted_class(service: SamlService, session: requests.Session) -> list[str]:
    """The AuthnContextClassRef of an SP-initiated SSO (python3-saml, asking for no class:
    its default asks for exactly PasswordProtectedTransport) in a signed-in browser."""
    browser = browser_of(service.server, session)
    classes: list[str] = sp_sso(service, browser, requestedAuthnContext=False).get_authn_contexts()
    return classes


def not_signed_in(service: SamlService, session: requests.Session) -> bool:
    """SSO to the service asks this browser to sign in (and posts nothing to the SP)."""
    page = sso_page(service, browser_of(service.server, session))
    return is_login_page(page) and not has_assertion(page)


def account_page(
    server: Server, session: requests.Session, org: str | None, **kwargs: Any
) -> requests.Response:
    params = {"org": org} if org is not None else {}
    return session.get(f"{server.url}/account", params=params, timeout=10, **kwargs)


def location(response: requests.Response) -> tuple[str, dict[str, list[str]]]:
    """The path and query of a redirect's target."""
    parts = urlsplit(response.headers.get("Location", ""))
    return parts.path, parse_qs(parts.query)


# Enrolment -------------------------------------------------------------------------------------


def test_enrolment_shows_the_secret_and_ten_recovery_codes_once(
    server: Server, owner: Account, org: str, service: SamlService
) -> None:
    person = create_person(server, owner.token, org)
    session = browser_session()
    assert is_signed_in_page(
        sign_in_with_password(server.url, session, org, person.email, person.password)
    )
    # before enrolment: a password sign-in, asserted as PasswordProtectedTransport
    assert asserted_class(service, session) == [PPT]
    overview = account_page(server, session, org)
    assert overview.status_code == 200, overview.text[:1000]
    assert "Set up an authenticator app" in overview.text
    assert "/account/totp" in overview.text

    page = totp_page(server.url, session, org)
    assert "<svg" in page.text  # the QR code, inline
    assert forms(page.text, "/account/totp"), page.text[:2000]
    totp, codes = enrol_totp(server.url, session, org)  # a new secret on this second GET
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    assert all(RECOVERY_CODE.fullmatch(code) for code in codes), codes  # xxxxx-xxxxx

    # enrolling the first factor made this sign-in multi-factor
    assert asserted_class(service, session) == [MFA]
    mfa = user_json(server, owner, person)["mfa"]
    assert mfa == {"totp": True, "passkeys": 0}

    # shown once: the account page (and the TOTP page) never list them again
    overview = account_page(server, session, org)
    assert overview.status_code == 200, overview.text[:1000]
    assert "10 of 10 left" in overview.text
    assert "Remove authenticator app" in overview.text
    alone = account_page(server, session, None)  # signed in to one organization: no ?org=
    assert alone.status_code == 200 and "10 of 10 left" in alone.text, alone.text[:1000]
    for later in (overview, alone, totp_page(server.url, session, org)):
        assert not any(code in later.text for code in codes)
    assert totp.secret not in overview.text


def test_a_wrong_code_does_not_turn_totp_on(server: Server, owner: Account, org: str) -> None:
    person = create_person(server, owner.token, org)
    session = browser_session()
    sign_in_with_password(server.url, session, org, person.email, person.password)
    page = totp_page(server.url, session, org)
    fields = form_fields(page.text, "/account/totp")
    refused = session.post(
        f"{server.url}/account/totp", data={**fields, "code": WRONG_CODE}, timeout=10
    )
    assert refused.status_code == 400, refused.text[:1000]
    assert 'id="recovery-codes"' not in refused.text
    assert user_json(server, owner, person)["mfa"] == {"totp": False, "passkeys": 0}
    # still a password-only account: the next sign-in needs no code
    again = sign_in_with_password(server.url, browser_session(), org, person.email, person.password)
    assert is_signed_in_page(again)


# Signing in with the code ----------------------------------------------------------------------


def test_the_password_alone_no_longer_signs_in(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, browser_session()
    first = sign_in_with_password(server.url, session, person.org, person.email, person.password)
    assert goes_to_factor(first), (first.status_code, first.headers, first.text[:1000])
    assert "idp_factor" in first.cookies
    assert "idp_session" not in first.cookies and session.cookies.get("idp_session") is None
    assert not not_signed_in(service, enrolled.session)  # (the enrolling browser is)
    # the waiting sign-in is no sign-in: no SSO, no account page
    assert not_signed_in(service, session)
    aside = account_page(server, session, person.org, allow_redirects=False)
    assert aside.status_code == 303
    assert location(aside)[0] in ("/login", "/login/factor")
    page = factor_page(server.url, session)
    assert 'action="/login/factor"' in page.text or forms(page.text, "/login/factor")
    assert "Verify" in page.text


def test_a_wrong_code_is_refused_and_signs_nothing_in(
    server: Server, owner: Account, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, browser_session()
    sign_in_with_password(server.url, session, person.org, person.email, person.password)
    refused = answer_factor(server.url, session, WRONG_CODE)
    assert refused.status_code == 401, refused.text[:1000]
    assert 'role="alert"' in refused.text
    assert session.cookies.get("idp_session") is None
    assert not_signed_in(service, session)
    # another account's valid code is no code of this one
    other = enrolled_person(server, owner, person.org)
    refused = answer_factor(server.url, session, totp_code(other.totp))
    assert refused.status_code == 401 and session.cookies.get("idp_session") is None


def test_the_right_code_signs_in_and_sso_asserts_mfa(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, browser_session()
    done = sign_in_with_code(
        server.url, session, person.org, person.email, person.password, totp_code(enrolled.totp)
    )
    assert is_signed_in_page(done), (done.status_code, done.text[:1000])
    assert session.cookies.get("idp_session")
    response = sp_sso(service, browser_of(server, session), requestedAuthnContext=False)
    assert response.get_nameid() == person.email
    assert response.get_authn_contexts() == [MFA]


def test_sp_initiated_sso_asks_for_the_code_after_the_password_then_resumes(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, browser_session()
    browser = browser_of(server, session)
    page = sso_page(service, browser)
    assert is_login_page(page)
    first = sign_in_with_password(server.url, session, None, person.email, person.password, page)
    assert goes_to_factor(first), (first.status_code, first.headers, first.text[:1000])
    assert not_signed_in(service, browser_session())
    done = answer_factor(server.url, session, totp_code(enrolled.totp))
    assert done.status_code == 303, (done.status_code, done.text[:1000])
    resume = location(done)[0]
    assert resume == f"/saml/{service.org}/{service.svc}/resume", done.headers
    answer = session.get(f"{server.url}{done.headers['Location']}", timeout=10)
    assert has_assertion(answer), answer.text[:1000]


def test_a_used_code_is_refused_in_another_sign_in(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person = enrolled.person
    code = totp_code(enrolled.totp)
    first = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, code
    )
    assert is_signed_in_page(first), (first.status_code, first.text[:1000])
    replay = browser_session()
    refused = sign_in_with_code(server.url, replay, person.org, person.email, person.password, code)
    assert refused.status_code == 401, (refused.status_code, refused.text[:1000])
    assert replay.cookies.get("idp_session") is None and not_signed_in(service, replay)


def test_the_code_that_confirmed_enrolment_is_used_up(
    server: Server, owner: Account, org: str
) -> None:
    """RFC 6238 §5.2: a code accepted once (here, to confirm the authenticator) is never
    accepted again."""
    person = create_person(server, owner.token, org)
    session = browser_session()
    sign_in_with_password(server.url, session, org, person.email, person.password)
    page = totp_page(server.url, session, org)
    totp = authenticator(page.text)
    code = spend_step(totp, time.time())
    done = session.post(
        f"{server.url}/account/totp",
        data={**form_fields(page.text, "/account/totp"), "code": code},
        timeout=10,
    )
    assert done.status_code == 200, done.text[:1000]
    replay = sign_in_with_code(
        server.url, browser_session(), org, person.email, person.password, code
    )
    assert replay.status_code == 401, (replay.status_code, replay.text[:1000])


# Recovery codes ----------------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, code = enrolled.person, enrolled.codes[3]
    session = browser_session()
    done = sign_in_with_code(server.url, session, person.org, person.email, person.password, code)
    assert is_signed_in_page(done), (done.status_code, done.text[:1000])
    assert asserted_class(service, session) == [MFA]
    overview = account_page(server, session, person.org)
    assert "9 of 10 left" in overview.text, overview.text[:2000]

    again = browser_session()
    refused = sign_in_with_code(server.url, again, person.org, person.email, person.password, code)
    assert refused.status_code == 401, (refused.status_code, refused.text[:1000])
    assert not_signed_in(service, again)
    # another unused one still works, typed in upper case without the dash
    typed = enrolled.codes[4].upper().replace("-", "")
    done = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, typed
    )
    assert is_signed_in_page(done), (done.status_code, done.text[:1000])


def test_new_recovery_codes_replace_the_old_ones(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, enrolled.session
    overview = account_page(server, session, person.org)
    fields = form_fields(overview.text, "/account/recovery-codes")
    page = session.post(f"{server.url}/account/recovery-codes", data=fields, timeout=10)
    assert page.status_code == 200, page.text[:1000]
    fresh = recovery_codes(page.text)
    assert len(fresh) == 10 and not set(fresh) & set(enrolled.codes)
    old = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, enrolled.codes[0]
    )
    assert old.status_code == 401, (old.status_code, old.text[:1000])
    new = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, fresh[0]
    )
    assert is_signed_in_page(new), (new.status_code, new.text[:1000])


# Throttle ----------------------------------------------------------------------------------------


def assert_throttled(response: requests.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:1000])
    assert 0 < int(response.headers["Retry-After"]) <= WINDOW_S
    assert "idp_session" not in response.cookies


def test_wrong_codes_are_throttled_and_then_even_the_right_code_waits(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, browser_session()
    first = sign_in_with_password(server.url, session, person.org, person.email, person.password)
    assert goes_to_factor(first)
    answers = []
    for _ in range(PER_EMAIL + 1):
        answers.append(answer_factor(server.url, session, WRONG_CODE))
        if answers[-1].status_code == 429:
            break
    statuses = [a.status_code for a in answers]
    assert statuses[-1] == 429, statuses  # never throttled: unlimited guessing of 10^6 codes
    assert set(statuses[:-1]) == {401} and len(statuses) - 1 <= PER_EMAIL, statuses
    assert_throttled(answers[-1])

    right = answer_factor(server.url, session, totp_code(enrolled.totp))
    assert_throttled(right)
    assert not_signed_in(service, session)
    # the email is locked at the password step too, from any browser
    assert_throttled(
        sign_in_with_password(
            server.url, browser_session(), person.org, person.email, person.password
        )
    )


def test_code_failures_and_password_failures_share_one_count(
    server: Server, enrolled: Enrolled
) -> None:
    person, session = enrolled.person, browser_session()
    for _ in range(3):
        wrong = sign_in_with_password(server.url, session, person.org, person.email, "not-it-1234")
        assert wrong.status_code == 401
    right = sign_in_with_password(server.url, session, person.org, person.email, person.password)
    assert goes_to_factor(right), (right.status_code, right.text[:1000])
    first = answer_factor(server.url, session, WRONG_CODE)
    second = answer_factor(server.url, session, WRONG_CODE)
    # 3 wrong passwords + 2 wrong codes = 5 failures; separate counts would allow 5 codes more
    assert [first.status_code, second.status_code][-1] == 429 or first.status_code == 429, (
        first.status_code,
        second.status_code,
    )
    assert_throttled(answer_factor(server.url, session, totp_code(enrolled.totp)))


def test_a_right_password_does_not_reset_the_count_of_an_mfa_account(
    server: Server, enrolled: Enrolled, service: SamlService
) -> None:
    """Someone who knows the password must not get endless code guesses by entering the
    password again between them."""
    person = enrolled.person
    statuses: list[int] = []
    for _ in range(PER_EMAIL + 1):
        session = browser_session()
        first = sign_in_with_password(
            server.url, session, person.org, person.email, person.password
        )
        statuses.append(first.status_code)
        if first.status_code == 429:
            break
        assert goes_to_factor(first), (first.status_code, first.text[:1000])
        guess = answer_factor(server.url, session, WRONG_CODE)
        statuses.append(guess.status_code)
        if guess.status_code == 429:
            break
        assert guess.status_code == 401
    assert statuses[-1] == 429, statuses
    assert statuses.count(401) <= PER_EMAIL, statuses
    late = browser_session()
    locked = sign_in_with_password(server.url, late, person.org, person.email, person.password)
    assert_throttled(locked)
    assert not_signed_in(service, late)


class FromAddress(HTTPAdapter):
    """Connects from another loopback address, as another client would."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_a_good_mfa_sign_in_leaves_the_address_budget_as_it_was(
    server: Server, enrolled: Enrolled
) -> None:
    """Many people behind one address: a sign-in that went right (password, then code) uses
    up none of the address's failure budget, as a good password-only sign-in does not."""
    address = "127.0.0.61"
    key = _throttle_key(f"ip:{address}")
    store = redis_of(server)
    person = enrolled.person
    for code in enrolled.codes[:3]:
        session = browser_session()
        session.mount("http://", FromAddress(address))
        done = sign_in_with_code(
            server.url, session, person.org, person.email, person.password, code
        )
        assert is_signed_in_page(done), (done.status_code, done.text[:1000])
    assert int(store.get(key) or 0) == 0, store.get(key)


# The account pages -----------------------------------------------------------------------------


def test_removing_the_authenticator_on_the_page(
    server: Server, owner: Account, enrolled: Enrolled, service: SamlService
) -> None:
    person, session = enrolled.person, enrolled.session
    overview = account_page(server, session, person.org)
    assert overview.status_code == 200
    fields = form_fields(overview.text, "/account/totp/remove")
    assert fields.get("org") == person.org and fields.get("csrf_token")
    done = session.post(f"{server.url}/account/totp/remove", data=fields, timeout=10)
    assert done.status_code == 200, (done.status_code, done.text[:1000])
    assert "Set up an authenticator app" in done.text
    assert user_json(server, owner, person)["mfa"] == {"totp": False, "passkeys": 0}
    # the password alone signs in again, and the old authenticator is nothing anymore
    again = browser_session()
    assert is_signed_in_page(
        sign_in_with_password(server.url, again, person.org, person.email, person.password)
    )
    assert asserted_class(service, again) == [PPT]


@pytest.mark.parametrize(
    "route", ["/account/totp", "/account/totp/remove", "/account/recovery-codes"]
)
@pytest.mark.parametrize("token", ["none", "another-browsers"])
def test_account_forms_without_this_browsers_csrf_token_are_refused(
    server: Server, owner: Account, enrolled: Enrolled, route: str, token: str
) -> None:
    person, session = enrolled.person, enrolled.session
    page = totp_page(server.url, session, person.org)  # a second authenticator's secret
    fields: dict[str, str] = {"org": person.org}
    if route == "/account/totp":
        replacement = authenticator(page.text)
        same_account(replacement, enrolled.totp)
        fields["code"] = totp_code(replacement)  # a right code: only the token is missing
    if token == "another-browsers":
        fields["csrf_token"] = form_fields(
            login_page(server.url, browser_session(), "x").text, "/login"
        )["csrf_token"]
    refused = session.post(f"{server.url}{route}", data=fields, timeout=10)
    assert refused.status_code == 400, (refused.status_code, refused.text[:1000])
    assert 'id="recovery-codes"' not in refused.text
    # nothing changed: the first authenticator still works, the old codes too
    assert user_json(server, owner, person)["mfa"] == {"totp": True, "passkeys": 0}
    done = sign_in_with_code(
        server.url,
        browser_session(),
        person.org,
        person.email,
        person.password,
        totp_code(enrolled.totp),
    )
    assert is_signed_in_page(done), (done.status_code, done.text[:1000])


def test_the_factor_form_without_csrf_token_is_refused(server: Server, enrolled: Enrolled) -> None:
    person, session = enrolled.person, browser_session()
    sign_in_with_password(server.url, session, person.org, person.email, person.password)
    refused = session.post(
        f"{server.url}/login/factor",
        data={"code": totp_code(enrolled.totp)},
        allow_redirects=False,
        timeout=10,
    )
    assert refused.status_code == 400, (refused.status_code, refused.text[:1000])
    assert session.cookies.get("idp_session") is None


@pytest.mark.parametrize("route", ["/account", "/account/totp"])
def test_the_account_pages_need_a_sign_in(
    server: Server, owner: Account, org: str, route: str
) -> None:
    person = create_person(server, owner.token, org)
    session = browser_session()
    away = session.get(
        f"{server.url}{route}", params={"org": org}, allow_redirects=False, timeout=10
    )
    assert away.status_code == 303, (away.status_code, away.text[:1000])
    assert 'id="totp-secret"' not in away.text
    path, query = location(away)
    assert path == "/login" and query.get("org") == [org], away.headers["Location"]
    assert query.get("next") == ["account"], away.headers["Location"]

    page = session.get(f"{server.url}{away.headers['Location']}", timeout=10)
    done = sign_in_with_password(server.url, session, None, person.email, person.password, page)
    assert done.status_code == 303, (done.status_code, done.text[:1000])
    path, query = location(done)
    assert path == "/account" and query.get("org") == [org], done.headers["Location"]
    landed = session.get(f"{server.url}{done.headers['Location']}", timeout=10)
    assert landed.status_code == 200 and "Set up an authenticator app" in landed.text


def test_an_account_with_a_factor_lands_back_on_its_account_page_after_the_code(
    server: Server, enrolled: Enrolled
) -> None:
    person, session = enrolled.person, browser_session()
    away = account_page(server, session, person.org, allow_redirects=False)
    assert away.status_code == 303 and location(away)[0] == "/login", away.headers
    page = session.get(f"{server.url}{away.headers['Location']}", timeout=10)
    first = sign_in_with_password(server.url, session, None, person.email, person.password, page)
    assert goes_to_factor(first), (first.status_code, first.headers, first.text[:1000])
    done = answer_factor(server.url, session, totp_code(enrolled.totp))
    assert done.status_code == 303, (done.status_code, done.text[:1000])
    path, query = location(done)
    assert path == "/account" and query.get("org") == [person.org], done.headers["Location"]
    landed = session.get(f"{server.url}{done.headers['Location']}", timeout=10)
    assert landed.status_code == 200 and "Remove authenticator app" in landed.text


@pytest.mark.parametrize("change", ["password", "disabled", "mfa-reset"])
def test_a_sign_in_waiting_for_its_code_ends_when_the_account_is_revoked(
    server: Server, owner: Account, enrolled: Enrolled, service: SamlService, change: str
) -> None:
    """The password was right, then an admin changed the password, disabled the account or
    reset its factors: the code typed afterwards must not finish that sign-in."""
    person, session = enrolled.person, browser_session()
    first = sign_in_with_password(server.url, session, person.org, person.email, person.password)
    assert goes_to_factor(first)
    route = f"/organizations/{person.org}/users/{person.id}"
    if change == "mfa-reset":
        done = server.api("DELETE", f"{route}/mfa", owner.token)
        assert done.status_code == 204, done.text
    else:
        body = {"password": "a-new-password-789"} if change == "password" else {"disabled": True}
        done = server.api("PATCH", route, owner.token, json=body)
        assert done.status_code == 200, done.text
    late = session.get(f"{server.url}/login/factor", timeout=10)
    if late.status_code == 200 and forms(late.text, "/login/factor"):
        fields = form_fields(late.text, "/login/factor")
        answer = session.post(
            f"{server.url}/login/factor",
            data={**fields, "code": totp_code(enrolled.totp)},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code != 303 and not is_signed_in_page(answer), answer.status_code
    assert session.cookies.get("idp_session") is None
    assert not_signed_in(service, session)


def test_the_account_page_of_an_organization_not_signed_in_to_shows_no_other_account(
    server: Server, owner: Account
) -> None:
    """One email, two organizations: signed in to A only, B's account page (and its forms)
    must not show or change A's account."""
    org_a, org_b = create_org(server, owner.token, "a"), create_org(server, owner.token, "b")
    email = f"{unique_slug('same')}@example.test"
    in_a = create_person(server, owner.token, org_a, email, "password-of-a-123")
    in_b = create_person(server, owner.token, org_b, email, "password-of-b-456")
    session, totp, _ = enrolled_account_session(server.url, org_a, in_a.email, in_a.password)
    own = account_page(server, session, org_a)
    assert own.status_code == 200 and "Remove authenticator app" in own.text

    for route in ("/account", "/account/totp"):
        away = session.get(
            f"{server.url}{route}", params={"org": org_b}, allow_redirects=False, timeout=10
        )
        assert away.status_code == 303, (route, away.status_code, away.text[:1000])
        path, query = location(away)
        assert path == "/login" and query.get("org") == [org_b], away.headers["Location"]
        assert "Remove authenticator app" not in away.text and 'id="totp-secret"' not in away.text

    # forms aimed at B with this browser's (valid) CSRF token change nothing of either account
    fields = form_fields(own.text, "/account/totp/remove")
    for route in ("/account/totp/remove", "/account/recovery-codes"):
        answer = session.post(
            f"{server.url}{route}", data={**fields, "org": org_b}, allow_redirects=False, timeout=10
        )
        assert answer.status_code in (303, 400, 403, 404), (route, answer.status_code)
        assert 'id="recovery-codes"' not in answer.text
    assert user_json(server, owner, in_a)["mfa"]["totp"] is True
    assert user_json(server, owner, in_b)["mfa"]["totp"] is False
    signed_in_b = sign_in_with_password(server.url, browser_session(), org_b, email, in_b.password)
    assert is_signed_in_page(signed_in_b)  # B still has no factor
    assert totp  # A's authenticator untouched (checked by the API above)


def test_a_password_only_sign_in_cannot_manage_the_factors(
    server: Server, owner: Account, org: str
) -> None:
    """A sign-in made with the password before the account had a factor (a stolen session)
    must give the factor before it can remove it or read new recovery codes."""
    person = create_person(server, owner.token, org)
    stolen = browser_session()
    assert is_signed_in_page(
        sign_in_with_password(server.url, stolen, org, person.email, person.password)
    )
    _, totp, codes = enrolled_account_session(server.url, org, person.email, person.password)
    asked = account_page(server, stolen, org, allow_redirects=False)
    assert asked.status_code == 303, (asked.status_code, asked.text[:1000])
    assert location(asked)[0] in ("/login/factor", "/login")
    token = form_fields(login_page(server.url, stolen, org).text, "/login")["csrf_token"]
    for route in ("/account/totp/remove", "/account/recovery-codes", "/account/totp"):
        answer = stolen.post(
            f"{server.url}{route}",
            data={"org": org, "csrf_token": token, "code": WRONG_CODE},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code in (303, 400, 401, 403), (route, answer.status_code)
        assert 'id="recovery-codes"' not in answer.text and 'id="totp-secret"' not in answer.text
    assert user_json(server, owner, person)["mfa"] == {"totp": True, "passkeys": 0}
    done = sign_in_with_code(
        server.url, browser_session(), org, person.email, person.password, codes[0]
    )
    assert is_signed_in_page(done)  # the codes shown at enrolment are still the valid ones
    assert totp


# Where the seed must never be --------------------------------------------------------------------


def test_the_seed_is_in_no_log_no_api_answer_and_encrypted_in_the_database(
    server: Server, owner: Account, enrolled: Enrolled
) -> None:
    person, secret = enrolled.person, enrolled.totp.secret
    # use it a few ways, so every code path has had the chance to log it
    sign_in_with_code(
        server.url,
        browser_session(),
        person.org,
        person.email,
        person.password,
        totp_code(enrolled.totp),
    )
    answer_factor_fail = browser_session()
    sign_in_with_password(server.url, answer_factor_fail, person.org, person.email, person.password)
    answer_factor(server.url, answer_factor_fail, WRONG_CODE)
    login = server.api(
        "POST",
        "/auth/login",
        json={
            "email": person.email,
            "password": person.password,
            "organization": person.org,
            "code": totp_code(enrolled.totp),
        },
    )
    assert login.status_code == 200, login.text
    answers = [
        login,
        server.api("GET", f"/organizations/{person.org}/users/{person.id}", owner.token),
        server.api("GET", f"/organizations/{person.org}/users", owner.token),
        server.api("GET", f"/organizations/{person.org}/audit-events?limit=100", owner.token),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers)
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    forms_of_it = [secret, secret.lower(), raw.hex()]
    log = server.log()
    for shown in forms_of_it + enrolled.codes:
        assert shown not in log, shown
        for answer in answers:
            assert shown not in answer.text, (answer.url, shown)

    engine = create_engine(server.env["IDP_DATABASE_URL"])
    try:
        with engine.connect() as db:
            stored = db.execute(
                text("SELECT secret_encrypted FROM totp_factors WHERE account_id = :id"),
                {"id": person.id},
            ).scalar_one()
            hashes = (
                db.execute(
                    text("SELECT code_hash FROM recovery_codes WHERE account_id = :id"),
                    {"id": person.id},
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    stored_text = stored if isinstance(stored, str) else bytes(stored).decode("latin-1")
    for shown in [*forms_of_it, base64.b64encode(raw).decode(), secret.encode().hex()]:
        assert shown not in stored_text, shown
    assert len(hashes) == 10
    for code in enrolled.codes:
        assert not any(code in h or code.replace("-", "") in h for h in hashes)
