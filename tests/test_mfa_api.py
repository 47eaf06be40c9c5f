"""Multi-factor sign-in through the admin API (CONTRACT §7): the user JSON's ``mfa``, the reset
route ``DELETE /api/organizations/{org}/users/{id}/mfa`` and who may call it, the API login's
``code``, the audit trail of enrolments, failures and resets, the SAML config's
``require_mfa`` and the OpenAPI document.

Each attack is written so that it fails when the rule it names is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
import requests
from conftest import Account, Server, add_user
from mfa_helpers import (
    browser_session,
    enrolled_account_session,
    goes_to_factor,
    is_signed_in_page,
    serve,
    sign_in_with_code,
    sign_in_with_password,
    totp_code,
)
from sso_helpers import Browser, SamlService, is_login_page, saml_service
from sso_v2_helpers import (
    MFA,
    Person,
    create_org,
    create_person,
    has_assertion,
    sp_sso,
    sso_page,
)

PER_EMAIL = 5
WRONG_CODE = "000000"


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for the module (see mfa_helpers.serve: a roomy per-address limit)."""
    yield from serve(database_url, redis_url, tmp_path_factory.mktemp("log"))


@dataclass
class Enrolled:
    """An account with TOTP, its enrolling browser (signed in with MFA), the authenticator and
    the recovery codes."""

    person: Person
    session: requests.Session
    totp: pyotp.TOTP
    codes: list[str]


def enrol(server: Server, owner: Account, org: str, role: str = "member") -> Enrolled:
    person = create_person(server, owner.token, org)
    if role != "member":
        route = f"/organizations/{org}/users/{person.id}"
        assert server.api("PATCH", route, owner.token, json={"role": role}).status_code == 200
    session, totp, codes = enrolled_account_session(server.url, org, person.email, person.password)
    return Enrolled(person, session, totp, codes)


@pytest.fixture
def enrolled(server: Server, owner: Account, org: str) -> Enrolled:
    return enrol(server, owner, org)


@pytest.fixture(scope="module")
def platform_key(server: Server, owner: Account) -> str:
    """A platform API key from ``idp platform-keys create`` (printed alone on stdout)."""
    key = server.cli("platform-keys", "create", "--name", "mfa tests").stdout.strip()
    assert key and "\n" not in key
    return key


def api_login(server: Server, person: Person, **extra: Any) -> requests.Response:
    body = {"email": person.email, "password": person.password, "organization": person.org}
    return server.api("POST", "/auth/login", json={**body, **extra})


def user_route(person: Person) -> str:
    return f"/organizations/{person.org}/users/{person.id}"


def mfa_of(server: Server, token: str, person: Person) -> dict[str, Any]:
    response = server.api("GET", user_route(person), token)
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()["mfa"]
    return value


def reset(server: Server, token: str | None, person: Person, org: str | None = None) -> int:
    route = f"/organizations/{org or person.org}/users/{person.id}/mfa"
    return server.api("DELETE", route, token).status_code


def events(server: Server, token: str, org: str) -> list[dict[str, Any]]:
    response = server.api("GET", f"/organizations/{org}/audit-events?limit=100", token)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["audit_events"]
    return found


# The user JSON ----------------------------------------------------------------------------------


def test_every_users_route_shows_the_factors(server: Server, owner: Account, org: str) -> None:
    created = server.api(
        "POST",
        f"/organizations/{org}/users",
        owner.token,
        json={"email": "mfa-json@example.test", "password": "a-password-123"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["mfa"] == {"totp": False, "passkeys": 0}
    person = Person(org, "mfa-json@example.test", "a-password-123", created.json()["id"])
    assert mfa_of(server, owner.token, person) == {"totp": False, "passkeys": 0}

    _, totp, _ = enrolled_account_session(server.url, org, person.email, person.password)
    assert mfa_of(server, owner.token, person) == {"totp": True, "passkeys": 0}
    listed = server.api("GET", f"/organizations/{org}/users", owner.token).json()["users"]
    assert [u["mfa"] for u in listed if u["id"] == person.id] == [{"totp": True, "passkeys": 0}]
    patched = server.api("PATCH", user_route(person), owner.token, json={"name": "Renamed"})
    assert patched.status_code == 200 and patched.json()["mfa"] == {"totp": True, "passkeys": 0}
    # an account reading itself sees its own factors too
    login = api_login(server, person, code=totp_code(totp))
    assert login.status_code == 200, login.text
    assert mfa_of(server, login.json()["token"], person) == {"totp": True, "passkeys": 0}


# Reset ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["org-owner", "org-admin", "operator", "platform-key"])
def test_owners_admins_operators_and_platform_keys_reset_the_factors(
    server: Server, owner: Account, org: str, platform_key: str, caller: str
) -> None:
    target = enrol(server, owner, org)
    if caller == "operator":
        token = owner.token
    elif caller == "platform-key":
        token = platform_key
    else:
        token = add_user(server, owner.token, org, role=caller.removeprefix("org-")).token
    assert reset(server, token, target.person) == 204
    assert mfa_of(server, owner.token, target.person) == {"totp": False, "passkeys": 0}
    # the password alone signs in again
    again = sign_in_with_password(
        server.url, browser_session(), org, target.person.email, target.person.password
    )
    assert is_signed_in_page(again), (again.status_code, again.text[:1000])


def test_a_member_may_not_reset_anyones_factors(server: Server, owner: Account, org: str) -> None:
    target = enrol(server, owner, org)
    member = add_user(server, owner.token, org)
    assert reset(server, member.token, target.person) == 403
    assert reset(server, None, target.person) == 401
    assert mfa_of(server, owner.token, target.person)["totp"] is True
    first = sign_in_with_password(
        server.url, browser_session(), org, target.person.email, target.person.password
    )
    assert goes_to_factor(first)


def test_an_admin_may_not_reset_an_owners_factors(server: Server, owner: Account, org: str) -> None:
    """Only owners change owners (CONTRACT §2): an admin who could strip an owner's second
    factor would be one password away from the owner's account."""
    target = enrol(server, owner, org, role="owner")
    admin = add_user(server, owner.token, org, role="admin")
    assert reset(server, admin.token, target.person) == 403
    assert mfa_of(server, owner.token, target.person)["totp"] is True


def test_another_organizations_account_is_not_found(server: Server, owner: Account) -> None:
    org_a, org_b = create_org(server, owner.token, "a"), create_org(server, owner.token, "b")
    in_b = enrol(server, owner, org_b)
    admin_a = add_user(server, owner.token, org_a, role="admin")
    owner_a = add_user(server, owner.token, org_a, role="owner")
    for token in (admin_a.token, owner_a.token):
        assert reset(server, token, in_b.person, org=org_a) == 404  # B's id under A
        assert reset(server, token, in_b.person) == 404  # B itself
    unknown = Person(org_a, "", "", "00000000-0000-0000-0000-000000000000")
    assert reset(server, owner.token, unknown) == 404
    assert reset(server, owner.token, in_b.person, org="no-such-org") == 404
    assert mfa_of(server, owner.token, in_b.person)["totp"] is True


def test_service_keys_may_not_reset_factors(server: Server, owner: Account, org: str) -> None:
    target = enrol(server, owner, org)
    service = saml_service(server, owner.token, org)
    created = service.api(
        "POST", "/api-keys", json={"name": "k", "permissions": ["read:users", "write:service"]}
    )
    assert created.status_code == 201, created.text
    assert reset(server, created.json()["key"], target.person) in (403, 404)
    assert mfa_of(server, owner.token, target.person)["totp"] is True


def test_a_reset_ends_the_sessions_and_tokens_of_the_account(
    server: Server, owner: Account, org: str
) -> None:
    target = enrol(server, owner, org)
    person = target.person
    service = saml_service(server, owner.token, org)
    browser = Browser(server, target.session)
    assert sp_sso(service, browser, requestedAuthnContext=False).get_authn_contexts() == [MFA]
    login = api_login(server, person, code=totp_code(target.totp))
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    assert server.api("GET", user_route(person), token).status_code == 200

    assert reset(server, owner.token, person) == 204

    page = sso_page(service, browser)  # the browser's sign-in ended
    assert is_login_page(page) and not has_assertion(page)
    assert server.api("GET", user_route(person), token).status_code == 401  # token revoked
    assert mfa_of(server, owner.token, person) == {"totp": False, "passkeys": 0}
    # no factor left: the password alone signs in, at the page and the API
    assert is_signed_in_page(
        sign_in_with_password(server.url, browser_session(), org, person.email, person.password)
    )
    assert api_login(server, person).status_code == 200
    events_of = [e for e in events(server, owner.token, org) if e["user_id"] == person.id]
    reset_events = [e for e in events_of if e["action"] == "mfa.reset"]
    assert len(reset_events) == 1
    assert reset_events[0]["actor"]["type"] == "operator"
    assert reset_events[0]["resource_id"] == person.id


# API login ----------------------------------------------------------------------------------------


def test_api_login_of_an_account_with_totp_needs_a_code(server: Server, enrolled: Enrolled) -> None:
    person = enrolled.person
    wrong_password = server.api(
        "POST",
        "/auth/login",
        json={"email": person.email, "password": "not-the-password-1", "organization": person.org},
    )
    assert wrong_password.status_code == 401
    refused = wrong_password.json()
    for answer in (api_login(server, person), api_login(server, person, code=WRONG_CODE)):
        assert answer.status_code == 401, answer.text
        assert answer.json() == refused  # the same message: no oracle for the password
        assert "token" not in answer.json()

    code = totp_code(enrolled.totp)
    ok = api_login(server, person, code=code)  # (a success clears the email's count)
    assert ok.status_code == 200, ok.text
    assert ok.json()["token"] and ok.headers["Cache-Control"] == "no-store"
    for answer in (
        api_login(server, person, code=code),  # spent
        api_login(server, person, code=None),
        api_login(server, person, code=""),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.json() == refused
    # nor does the page take the code the API spent
    page = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, code
    )
    assert page.status_code == 401


def test_api_login_takes_a_recovery_code_once(server: Server, enrolled: Enrolled) -> None:
    person, code = enrolled.person, enrolled.codes[0]
    assert api_login(server, person, code=code).status_code == 200
    assert api_login(server, person, code=code).status_code == 401
    page = sign_in_with_code(
        server.url, browser_session(), person.org, person.email, person.password, code
    )
    assert page.status_code == 401


def test_api_login_with_a_valid_code_and_a_wrong_password_is_refused(
    server: Server, enrolled: Enrolled
) -> None:
    person = enrolled.person
    answer = server.api(
        "POST",
        "/auth/login",
        json={
            "email": person.email,
            "password": "not-the-password-2",
            "organization": person.org,
            "code": totp_code(enrolled.totp),
        },
    )
    assert answer.status_code == 401 and "token" not in answer.json()


def test_api_code_guesses_are_throttled_with_the_right_password(
    server: Server, enrolled: Enrolled
) -> None:
    """The API is no way around the page's throttle: the right password with wrong codes
    counts, and a right password never clears the count before the code is right."""
    person = enrolled.person
    statuses = []
    for _ in range(PER_EMAIL + 1):
        statuses.append(api_login(server, person, code=WRONG_CODE).status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert statuses.count(401) <= PER_EMAIL
    locked = api_login(server, person, code=totp_code(enrolled.totp))
    assert locked.status_code == 429 and locked.json()["error"] == "rate_limited"
    assert 0 < int(locked.headers["Retry-After"]) <= 900


# Audit ------------------------------------------------------------------------------------------


def test_enrolment_failures_sign_ins_and_resets_are_audited(
    server: Server, owner: Account, org: str
) -> None:
    target = enrol(server, owner, org)
    person = target.person
    done = sign_in_with_code(
        server.url, browser_session(), org, person.email, person.password, totp_code(target.totp)
    )
    assert is_signed_in_page(done)
    done = sign_in_with_code(
        server.url, browser_session(), org, person.email, person.password, target.codes[0]
    )
    assert is_signed_in_page(done)
    failed = sign_in_with_code(
        server.url, browser_session(), org, person.email, person.password, WRONG_CODE
    )
    assert failed.status_code == 401
    assert reset(server, owner.token, person) == 204

    trail = [e for e in events(server, owner.token, org) if e["user_id"] == person.id]
    actions = [e["action"] for e in trail]
    for action in (
        "mfa.totp.enrolled",
        "mfa.recovery_codes.generated",
        "mfa.failure",
        "mfa.reset",
        "login.success",
    ):
        assert action in actions, (action, actions)
    by_action = {e["action"]: e for e in reversed(trail)}  # the latest of each
    for action in ("mfa.totp.enrolled", "mfa.recovery_codes.generated"):
        event = by_action[action]
        assert event["actor"] == {"type": "user", "id": person.id}, event
        assert event["resource_type"] == "user" and event["resource_id"] == person.id
    factors = sorted(
        e["summary"]["after"].get("factor")
        for e in trail
        if e["action"] == "login.success" and e["summary"].get("after", {}).get("factor")
    )
    assert factors == ["recovery_code", "totp"], trail
    assert by_action["mfa.reset"]["actor"]["type"] == "operator"
    # no secret in the trail
    everything = str(trail)
    assert target.totp.secret not in everything
    assert not any(code in everything for code in target.codes)
    assert person.password not in everything


# SAML config and OpenAPI ------------------------------------------------------------------------


def test_require_mfa_is_echoed_and_defaults_to_false(
    server: Server, owner: Account, org: str
) -> None:
    service: SamlService = saml_service(server, owner.token, org)
    got = service.api("GET", "/saml")
    assert got.status_code == 200 and got.json()["require_mfa"] is False, got.text
    service.configure(require_mfa=True)
    assert service.api("GET", "/saml").json()["require_mfa"] is True
    bad = service.api("PUT", "/saml", json={**service.config, "require_mfa": "yes"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"] == "invalid_request"
    assert service.api("GET", "/saml").json()["require_mfa"] is True
    service.configure(require_mfa=False)
    assert service.api("GET", "/saml").json()["require_mfa"] is False


def test_openapi_documents_the_reset_route_and_the_login_code(server: Server) -> None:
    doc = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
    routes = [
        path
        for path in doc["paths"]
        if re.fullmatch(r"/api/organizations/\{org\}/users/\{[a-z_]+\}/mfa", path)
    ]
    assert len(routes) == 1, sorted(doc["paths"])
    operations = doc["paths"][routes[0]]
    assert set(operations) == {"delete"}
    assert "204" in operations["delete"]["responses"]
    login = doc["paths"]["/api/auth/login"]["post"]
    schema = login["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "code" in schema["properties"]
    user = doc["components"]["schemas"].get("User")
    assert user is not None and "mfa" in user["properties"], user
