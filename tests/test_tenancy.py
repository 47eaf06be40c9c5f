"""Tenant isolation of the v2 identity model, each finding of the security review as its attack.

v1.1 had global users: an email named one person everywhere, with one password, one set of
tokens, and memberships in organizations. Anyone signed in could create organizations; service
keys could hold ``write:users``; another organization answered 403 (so it visibly existed).
Each test below replays one attack; a comment says where v1.1 let it through (so the test
fails there), and the assertions say what v2 answers instead.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import (
    OWNER_PASSWORD,
    Account,
    Server,
    free_port,
    fresh_database,
    server_env,
    start_server,
    stop_server,
    unique_slug,
)
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sso_helpers import (
    Browser,
    SamlService,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    saml_service,
)
from v11_database import V11, build

from idp.settings import load_settings
from idp.store.db import Database
from idp.store.models import Account as AccountRow
from idp.store.models import Event

NEWHIRE = "newhire@acme.example"
KEY_PERMISSIONS = [  # every permission a service key may hold (write:users is refused)
    "read:users",
    "read:subscriptions",
    "write:subscriptions",
    "read:analytics",
    "read:service",
    "write:service",
]


# Helpers ---------------------------------------------------------------------------------


@dataclass
class Person:
    """An account of one organization: its id, credentials and a bearer token."""

    id: str
    email: str
    password: str
    token: str
    org: str


def login(
    server: Server, email: str, password: str, organization: str | None = None
) -> requests.Response:
    """POST /api/auth/login, as it is answered."""
    body: dict[str, Any] = {"email": email, "password": password}
    if organization is not None:
        body["organization"] = organization
    return server.api("POST", "/auth/login", json=body)


def new_org(server: Server, token: str) -> str:
    """An organization made by an operator or a platform key."""
    slug = unique_slug("tenant")
    created = server.api("POST", "/organizations", token, json={"slug": slug, "name": slug})
    assert created.status_code == 201, created.text
    return slug


def new_account(
    server: Server,
    token: str,
    org: str,
    role: str = "member",
    email: str | None = None,
    password: str = "account-password-1",  # noqa: S107 (a test account)
    **fields: Any,
) -> Person:
    """Create an account through the API and sign it in to its organization."""
    email = email or f"{unique_slug(role)}@example.test"
    body = {"email": email, "password": password, "role": role, **fields}
    created = server.api("POST", f"/organizations/{org}/users", token, json=body)
    assert created.status_code == 201, created.text
    signed_in = login(server, email, password, org)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == created.json()["id"]
    return Person(created.json()["id"], email, password, signed_in.json()["token"], org)


def tenant(server: Server, operator: Account) -> tuple[str, Person]:
    """A fresh organization (made by the operator) and its owner account."""
    slug = new_org(server, operator.token)
    return slug, new_account(server, operator.token, slug, role="owner")


def new_service(server: Server, token: str, org: str) -> str:
    slug = unique_slug("svc")
    body = {"slug": slug, "name": slug, "service_type": "web", "redirect_uris": []}
    created = server.api("POST", f"/organizations/{org}/services", token, json=body)
    assert created.status_code == 201, created.text
    return slug


def new_key(server: Server, token: str, org: str, svc: str, permissions: list[str]) -> str:
    """A service API key; the key itself."""
    body = {"name": unique_slug("key"), "permissions": permissions}
    created = server.api("POST", f"/organizations/{org}/services/{svc}/api-keys", token, json=body)
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def assert_same_not_found(real: requests.Response, ghost: requests.Response, real_id: str,
                          ghost_id: str) -> None:
    """Both answers are 404 and read the same once the id asked about is blanked out: the
    caller cannot tell a hidden account from one that does not exist."""
    assert real.status_code == ghost.status_code == 404, (real.text, ghost.text)
    assert real.json()["error"] == "not_found"
    assert real.text.replace(real_id, "<id>") == ghost.text.replace(ghost_id, "<id>")


@contextmanager
def stored(url: str) -> Iterator[Session]:
    """A read transaction on a server's database, outside the server."""
    db = Database(url)
    try:
        with db.read() as session:
            yield session
    finally:
        db.dispose()


def password_hash(server: Server, account_id: str) -> str:
    with stored(server.env["IDP_DATABASE_URL"]) as session:
        row = session.get(AccountRow, account_id)
        assert row is not None and row.password_hash is not None
        hashed: str = row.password_hash
        return hashed


def audit_events(server: Server, token: str, org: str) -> list[dict[str, Any]]:
    """The organization's whole trail through the API (reading it flushes queued events)."""
    events: list[dict[str, Any]] = []
    while True:
        path = f"/organizations/{org}/audit-events?limit=100&offset={len(events)}"
        page = server.api("GET", path, token)
        assert page.status_code == 200, page.text
        events += page.json()["audit_events"]
        if len(events) >= page.json()["total"]:
            return events


@pytest.fixture(scope="module")
def acme_owner(server: Server, owner: Account) -> Account:
    """acme's owner account (``idp bootstrap --org acme`` made it), signed in to acme: an
    account of the organization, not the operator."""
    response = login(server, owner.email, owner.password, "acme")
    assert response.status_code == 200, response.text
    assert response.json()["user"]["role"] == "owner"
    return Account(owner.email, owner.password, response.json()["token"], "acme")


@pytest.fixture(scope="module")
def platform_key(server: Server, owner: Account) -> str:
    """A platform API key from ``idp platform-keys create`` (printed alone on stdout)."""
    key = server.cli("platform-keys", "create", "--name", "tenancy tests").stdout.strip()
    assert key.startswith("idpp_"), key
    return key


# 1. Account pre-claim ------------------------------------------------------------------


def test_account_pre_claim(server: Server, owner: Account, acme_owner: Account) -> None:
    # v1.1: users were global. The attacker's POST .../users created the global user
    # newhire@acme.example with the attacker's password; acme's later POST answered 201 by
    # attaching that same user ("an existing one keeps its own" password), so both orgs
    # got one id and the attacker's password opened acme (and login had no organization
    # field: {"organization": ...} was a 400). Here the id comparison and logins fail on v1.1.
    attacker_org, attacker = tenant(server, owner)
    claimed = server.api(
        "POST",
        f"/organizations/{attacker_org}/users",
        attacker.token,
        json={"email": NEWHIRE, "password": "attacker-chose-this", "role": "member"},
    )
    assert claimed.status_code == 201, claimed.text

    created = server.api(
        "POST",
        "/organizations/acme/users",
        acme_owner.token,
        json={"email": NEWHIRE, "password": "acme-issued-password", "groups": ["staff"]},
    )
    assert created.status_code == 201, created.text
    acme_id = created.json()["id"]
    assert acme_id != claimed.json()["id"]
    assert created.json()["groups"] == ["staff"]

    refused = login(server, NEWHIRE, "attacker-chose-this", "acme")
    assert refused.status_code == 401, refused.text
    signed_in = login(server, NEWHIRE, "acme-issued-password", "acme")
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == acme_id
    assert signed_in.json()["user"]["organization"] == "acme"
    # acme's password does not open the attacker's copy, which stays the attacker's
    assert login(server, NEWHIRE, "acme-issued-password", attacker_org).status_code == 401
    copy = login(server, NEWHIRE, "attacker-chose-this", attacker_org)
    assert copy.status_code == 200 and copy.json()["user"]["id"] == claimed.json()["id"]

    acme_service = saml_service(server, acme_owner.token, "acme")
    svc = f"/organizations/acme/services/{acme_service.svc}"
    hidden = [
        "/organizations/acme",
        "/organizations/acme/users",
        f"/organizations/acme/users/{acme_id}",
        "/organizations/acme/services",
        svc,
        f"{svc}/saml",
        f"{svc}/saml/certificate",
        f"{svc}/api-keys",
        f"{svc}/plans",
        f"{svc}/subscriptions",
        f"{svc}/analytics",
        "/organizations/acme/audit-events",
    ]
    for token in (attacker.token, copy.json()["token"]):
        for path in hidden:
            answer = server.api("GET", path, token)
            assert answer.status_code == 404, (path, answer.text)
        change = {"password": "taken-over-123", "role": "owner"}
        for method, path, body in [
            ("PATCH", f"/organizations/acme/users/{acme_id}", change),
            ("DELETE", f"/organizations/acme/users/{acme_id}", None),
            ("PATCH", f"/organizations/{attacker_org}/users/{acme_id}", change),
            ("DELETE", f"/organizations/{attacker_org}/users/{acme_id}", None),
            ("POST", "/organizations/acme/users", {"email": "spy@evil.test", "password": "x" * 9}),
        ]:
            answer = server.api(method, path, token, json=body)
            # a member managing its own organization is merely not allowed to (403)
            hidden_here = token == attacker.token or "/acme/" in path
            assert answer.status_code == (404 if hidden_here else 403), (path, answer.text)
    assert login(server, NEWHIRE, "acme-issued-password", "acme").status_code == 200
    listed = server.api("GET", "/organizations/acme/users", acme_owner.token).json()["users"]
    assert "spy@evil.test" not in {user["email"] for user in listed}


# 2. Key escalation ---------------------------------------------------------------------


def test_service_key_cannot_escalate(server: Server, owner: Account) -> None:
    # v1.1: "write:users" was a permission like any other (201), and a key holding it could
    # POST .../users to create (or attach) accounts of its organization; another service of
    # the organization answered 403 ("acts only on its own service"), not 404.
    org, org_owner = tenant(server, owner)
    svc = new_service(server, org_owner.token, org)
    other = saml_service(server, org_owner.token, org)
    new_key(server, org_owner.token, org, other.svc, ["read:service"])
    keys_path = f"/organizations/{org}/services/{svc}/api-keys"

    refused = server.api(
        "POST", keys_path, org_owner.token,
        json={"name": "backend", "permissions": ["read:users", "write:users"]},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request"
    assert "permissions" in refused.json()["details"]
    assert "write:users" in refused.json()["details"]["permissions"]
    listed = server.api("GET", keys_path, org_owner.token).json()
    assert listed["total"] == 0  # nothing was created

    key = new_key(server, org_owner.token, org, svc, KEY_PERMISSIONS)
    member = new_account(server, org_owner.token, org)
    users = f"/organizations/{org}/users"
    for method, path, body in [
        ("POST", users, {"email": "made-by-key@example.test", "password": "key-password-1"}),
        ("POST", users, {"email": "boss@example.test", "password": "key-password-1",
                         "role": "owner"}),
        ("PATCH", f"{users}/{member.id}", {"password": "key-chose-this"}),
        ("PATCH", f"{users}/{member.id}", {"role": "owner"}),
        ("DELETE", f"{users}/{member.id}", None),
    ]:
        answer = server.api(method, path, key, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    assert server.api("GET", f"{users}/{member.id}", key).status_code == 200  # read:users
    assert login(server, member.email, member.password, org).status_code == 200

    other_path = f"/organizations/{org}/services/{other.svc}"
    for path in ("", "/saml", "/saml/certificate", "/api-keys", "/plans", "/subscriptions",
                 "/analytics"):
        answer = server.api("GET", other_path + path, key)
        assert answer.status_code == 404, (path, answer.text)
    changed = server.api("PUT", f"{other_path}/saml", key, json={**other.config, "enabled": False})
    assert changed.status_code == 404, changed.text
    assert server.api("DELETE", other_path, key).status_code == 404

    assert server.api("GET", keys_path, key).status_code == 403
    created = server.api("POST", keys_path, key, json={"name": "more", "permissions":
                                                       ["read:users"]})
    assert created.status_code == 403, created.text
    own = f"/organizations/{org}/services/{svc}"
    assert server.api("DELETE", own, key).status_code == 403
    assert server.api("GET", own, key).status_code == 200  # still there
    assert server.api("GET", f"{other_path}/saml", org_owner.token).json()["enabled"] is True
    assert server.api("GET", keys_path, org_owner.token).json()["total"] == 1


# 3. Cross-tenant reach over the API -------------------------------------------------------


def test_cross_tenant_reach(server: Server, owner: Account, platform_key: str) -> None:
    # v1.1: another organization answered 403 "You are not a member" while an unknown one
    # answered 404 (so its existence showed), there was no GET .../users/{id}, and any signed
    # in user could POST /organizations (201, becoming its owner); GET /organizations did
    # not exist as a listing. Each of these assertions fails there.
    org_a, owner_a = tenant(server, owner)
    person_a = new_account(server, owner_a.token, org_a, groups=["finance"])
    org_b, owner_b = tenant(server, owner)
    key_b = new_key(server, owner_b.token, org_b, new_service(server, owner_b.token, org_b),
                    KEY_PERMISSIONS)
    ghost = str(uuid.uuid4())

    for caller in (owner_b.token, key_b):
        for org in (org_a, org_b):  # A's path, and A's id through B's own path
            path = f"/organizations/{org}/users/"
            real = server.api("GET", path + person_a.id, caller)
            assert_same_not_found(real, server.api("GET", path + ghost, caller), person_a.id,
                                  ghost)
        assert_same_not_found(
            server.api("GET", f"/organizations/{org_a}", caller),
            server.api("GET", "/organizations/no-such-org-zz", caller),
            org_a,
            "no-such-org-zz",
        )
        for path in (f"/organizations/{org_a}/users", f"/organizations/{org_a}/audit-events",
                     f"/organizations/{org_a}/services"):
            assert server.api("GET", path, caller).status_code == 404, path
        made = server.api("POST", "/organizations", caller, json={"slug": unique_slug("x"),
                                                                  "name": "x"})
        assert made.status_code == 403, made.text
        listed = server.api("GET", "/organizations", caller)
        assert listed.status_code == 200, listed.text
        assert [o["slug"] for o in listed.json()["organizations"]] == [org_b]

    # B's owner cannot change or remove A's account through B's path either
    for method, body in (("PATCH", {"password": "b-took-over-1"}), ("DELETE", None)):
        path = f"/organizations/{org_b}/users/{person_a.id}"
        answer = server.api(method, path, owner_b.token, json=body)
        assert_same_not_found(
            answer,
            server.api(method, f"/organizations/{org_b}/users/{ghost}", owner_b.token, json=body),
            person_a.id,
            ghost,
        )
    assert login(server, person_a.email, person_a.password, org_a).status_code == 200

    # whether the email has an account in A makes no difference in B
    taken = server.api("POST", f"/organizations/{org_b}/users", owner_b.token,
                       json={"email": person_a.email, "password": "b-password-123"})
    fresh = server.api("POST", f"/organizations/{org_b}/users", owner_b.token,
                       json={"email": f"{unique_slug('nobody')}@example.test",
                             "password": "b-password-123"})
    assert taken.status_code == fresh.status_code == 201, (taken.text, fresh.text)
    assert set(taken.json()) == set(fresh.json())
    assert taken.json()["id"] != person_a.id
    assert taken.json()["groups"] == []  # nothing of A's account came along

    # operators and platform keys reach every organization
    for caller in (owner.token, platform_key):
        got = server.api("GET", f"/organizations/{org_a}/users/{person_a.id}", caller)
        assert got.status_code == 200, got.text
        assert got.json()["groups"] == ["finance"]
        trail = server.api("GET", f"/organizations/{org_a}/audit-events", caller)
        assert trail.status_code == 200 and trail.json()["total"] > 0, trail.text
        made = server.api("POST", "/organizations", caller, json={"slug": unique_slug("p"),
                                                                  "name": "p"})
        assert made.status_code == 201, made.text
        every = server.api("GET", "/organizations", caller).json()["organizations"]
        assert {org_a, org_b, made.json()["slug"], "acme"} <= {o["slug"] for o in every}


# 4. Credential changes revoke tokens and sign-ins -------------------------------------------


def test_password_change_disable_delete_revoke_at_once(server: Server, owner: Account) -> None:
    # v1.1: there was no PATCH or DELETE .../users/{id} (405), a password could only be reset
    # through "idp users create" (which never touched tokens), and a login token stayed valid
    # until it expired: every step here fails there.
    org, org_owner = tenant(server, owner)
    person = new_account(server, org_owner.token, org)
    me = f"/organizations/{org}/users/{person.id}"
    assert server.api("GET", me, person.token).status_code == 200
    service = saml_service(server, org_owner.token, org)
    auth = onelogin_auth(service)
    browser = Browser(server)
    first = browser.sso(auth.login(), person.email, person.password)
    onelogin_accepts(service, posted_message(first.text), auth.get_last_request_id())

    changed = server.api("PATCH", me, org_owner.token, json={"password": "brand-new-pass-2"})
    assert changed.status_code == 200, changed.text
    assert server.api("GET", me, person.token).status_code == 401
    assert is_login_page(browser.sso(auth.login()))  # the IdP session ended too
    assert login(server, person.email, person.password, org).status_code == 401
    second = login(server, person.email, "brand-new-pass-2", org)
    assert second.status_code == 200, second.text
    token = second.json()["token"]
    assert server.api("GET", me, token).status_code == 200
    signed = browser.sso(auth.login(), person.email, "brand-new-pass-2")
    onelogin_accepts(service, posted_message(signed.text), auth.get_last_request_id())

    disabled = server.api("PATCH", me, org_owner.token, json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert server.api("GET", me, token).status_code == 401
    assert is_login_page(browser.sso(auth.login()))
    refused = login(server, person.email, "brand-new-pass-2", org)
    wrong = login(server, person.email, "not-the-password", org)
    assert refused.status_code == wrong.status_code == 401
    assert refused.json() == wrong.json()

    enabled = server.api("PATCH", me, org_owner.token, json={"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert server.api("GET", me, token).status_code == 401  # revoked stays revoked
    third = login(server, person.email, "brand-new-pass-2", org)
    assert third.status_code == 200, third.text
    token = third.json()["token"]
    assert server.api("GET", f"/organizations/{org}", token).status_code == 200
    signed = browser.sso(auth.login(), person.email, "brand-new-pass-2")
    onelogin_accepts(service, posted_message(signed.text), auth.get_last_request_id())

    assert server.api("DELETE", me, org_owner.token).status_code == 204
    assert server.api("GET", f"/organizations/{org}", token).status_code == 401
    assert is_login_page(browser.sso(auth.login()))
    assert login(server, person.email, "brand-new-pass-2", org).status_code == 401
    assert server.api("GET", me, org_owner.token).status_code == 404


# 5. Last owner, and who grants owner ------------------------------------------------------


def test_last_owner_and_owner_grants(server: Server, owner: Account) -> None:
    # v1.1: no PATCH/DELETE of users at all, so nothing stopped an owner leaving an
    # organization ownerless through the membership tables, and an API key with write:users
    # could add users; these routes answer 405 there.
    org, first_owner = tenant(server, owner)
    users = f"/organizations/{org}/users"
    me = f"{users}/{first_owner.id}"
    for caller in (first_owner.token, owner.token):  # the owner, and an operator
        for body in ({"role": "admin"}, {"role": "member"}, {"disabled": True}):
            answer = server.api("PATCH", me, caller, json=body)
            assert answer.status_code == 409, (body, answer.text)
            assert answer.json()["error"] == "conflict"
        answer = server.api("DELETE", me, caller)
        assert answer.status_code == 409, answer.text
    still = server.api("GET", me, first_owner.token).json()
    assert still["role"] == "owner" and still["disabled"] is False

    admin = new_account(server, first_owner.token, org, role="admin")
    granted = server.api("POST", users, admin.token,
                         json={"email": "wannabe@example.test", "password": "wannabe-pass-1",
                               "role": "owner"})
    assert granted.status_code == 403, granted.text
    member = new_account(server, admin.token, org)  # admins manage members
    for body in ({"role": "owner"}, ):
        assert server.api("PATCH", f"{users}/{member.id}", admin.token,
                          json=body).status_code == 403
    assert server.api("PATCH", f"{users}/{admin.id}", admin.token,
                      json={"role": "owner"}).status_code == 403
    for body in ({"name": "Renamed"}, {"password": "admin-chose-this"}, {"disabled": True},
                 {"role": "member"}, {"email": "moved@example.test"}):
        answer = server.api("PATCH", me, admin.token, json=body)
        assert answer.status_code == 403, (body, answer.text)
    assert server.api("DELETE", me, admin.token).status_code == 403
    assert login(server, first_owner.email, first_owner.password, org).status_code == 200

    updated = server.api("PATCH", f"{users}/{member.id}", admin.token,
                         json={"groups": ["ops"], "name": "Member", "role": "admin"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["groups"] == ["ops"] and updated.json()["role"] == "admin"
    assert server.api("PATCH", f"{users}/{member.id}", admin.token,
                      json={"role": "member", "disabled": True}).status_code == 200
    assert server.api("DELETE", f"{users}/{member.id}", admin.token).status_code == 204

    second_owner = new_account(server, first_owner.token, org, role="owner")
    demoted = server.api("PATCH", me, second_owner.token, json={"role": "admin"})
    assert demoted.status_code == 200 and demoted.json()["role"] == "admin", demoted.text
    # second_owner is now the last one
    last = f"{users}/{second_owner.id}"
    assert server.api("PATCH", last, second_owner.token, json={"role": "member"}).status_code \
        == 409
    assert server.api("DELETE", last, owner.token).status_code == 409
    # an admin (the demoted first owner) cannot promote itself back
    back = login(server, first_owner.email, first_owner.password, org).json()["token"]
    assert server.api("PATCH", me, back, json={"role": "owner"}).status_code == 403


# 6. Operators and platform keys through the CLI ---------------------------------------------


def test_platform_keys_from_the_cli(server: Server, owner: Account) -> None:
    # v1.1: there were no platform keys ("idp platform-keys" is an unknown command, exit 2),
    # so the first cli() call raises there.
    key = server.cli("platform-keys", "create", "--name", "main backend").stdout.strip()
    assert key.startswith("idpp_") and "\n" not in key
    prefix = key.split(".", 1)[0]
    listing = server.cli("platform-keys", "list").stdout
    line = next(row for row in listing.splitlines() if prefix in row)
    assert "main backend" in line and key.split(".", 1)[1] not in listing
    key_id = line.split()[0]

    slug = new_org(server, key)
    assert slug in {o["slug"] for o in server.api("GET", "/organizations", key).json()[
        "organizations"]}
    person = new_account(server, key, slug, role="owner")
    assert server.api("GET", f"/organizations/{slug}", person.token).status_code == 200
    assert server.api("DELETE", f"/organizations/{slug}", key).status_code == 204
    # the organization's accounts and their tokens went with it
    assert server.api("GET", f"/organizations/{slug}", person.token).status_code == 401
    assert login(server, person.email, person.password, slug).status_code == 401
    with stored(server.env["IDP_DATABASE_URL"]) as session:
        assert session.get(AccountRow, person.id) is None
    assert server.api("GET", f"/organizations/{slug}", key).status_code == 404

    assert "deleted" in server.cli("platform-keys", "delete", key_id).stdout
    assert server.api("GET", "/organizations", key).status_code == 401


def test_bootstrap_is_idempotent_and_cli_checks_accounts(
    server: Server, owner: Account, acme_owner: Account
) -> None:
    # v1.1: bootstrap upserted the user and set the password it was given (running it again
    # reset the owner's password), and "idp users create" accepted any password and email.
    again = server.cli("bootstrap", "--org", "acme", "--email", owner.email,
                       "--password", "reset-attempt-999")
    assert "already exists" in again.stdout
    assert login(server, owner.email, OWNER_PASSWORD).status_code == 200
    assert login(server, owner.email, OWNER_PASSWORD, "acme").status_code == 200
    assert login(server, owner.email, "reset-attempt-999").status_code == 401
    assert login(server, owner.email, "reset-attempt-999", "acme").status_code == 401
    assert server.api("GET", "/organizations/acme", owner.token).status_code == 200

    before = server.api("GET", "/organizations/acme/users", acme_owner.token).json()["users"]
    short = server.cli("users", "create", "--org", "acme", "--email", "short@example.test",
                       "--password", "x", check=False)
    assert short.returncode != 0, short.stdout
    assert "password" in short.stderr
    bad = server.cli("users", "create", "--org", "acme", "--email", "notanemail",
                     "--password", "long-enough-password", check=False)
    assert bad.returncode != 0, bad.stdout
    assert "email" in bad.stderr
    after = server.api("GET", "/organizations/acme/users", acme_owner.token).json()["users"]
    assert after == before
    assert login(server, "short@example.test", "x", "acme").status_code == 401


# 7. API login details ---------------------------------------------------------------------


def test_api_login_answers_and_audit_trail(
    server: Server, owner: Account, acme_owner: Account
) -> None:
    # v1.1: the API login wrote nothing to the audit trail (no login.success with via "api",
    # no login.failure) and refused the "organization" field (400); here both fail.
    org, org_owner = tenant(server, owner)
    person = new_account(server, org_owner.token, org)
    disabled = new_account(server, org_owner.token, org)
    server.api("PATCH", f"/organizations/{org}/users/{disabled.id}", org_owner.token,
               json={"disabled": True})

    signed_in = login(server, person.email, person.password, org)
    assert signed_in.status_code == 200
    assert signed_in.headers["Cache-Control"] == "no-store"
    svc = new_service(server, org_owner.token, org)
    created = server.api("POST", f"/organizations/{org}/services/{svc}/api-keys",
                         org_owner.token, json={"name": "k", "permissions": ["read:users"]})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"

    typed = "hunter2-secret@nowhere.test"
    failures = [
        login(server, person.email, "wrong-password-1", org),  # wrong password
        login(server, typed, "anything-at-all", org),  # unknown email (a password, typed)
        login(server, person.email, person.password, "no-such-org-zz"),  # unknown org
        login(server, person.email, person.password, "acme"),  # another organization
        login(server, person.email, person.password),  # not an operator
        login(server, disabled.email, disabled.password, org),  # disabled
        login(server, owner.email, "wrong-password-1"),  # an operator's wrong password
    ]
    for answer in failures:
        assert answer.status_code == 401, answer.text
        assert answer.json() == failures[0].json()
        assert answer.headers["Cache-Control"] == "no-store"

    events = audit_events(server, org_owner.token, org)
    successes = [e for e in events if e["action"] == "login.success"
                 and e["user_id"] == person.id]
    assert successes, events
    assert all(e["summary"]["after"]["via"] == "api" for e in successes)
    assert successes[0]["actor"] == {"type": "user", "id": person.id}
    failed = [e for e in events if e["action"] == "login.failure"]
    assert {e["user_id"] for e in failed} >= {person.id, disabled.id}
    assert any(e["user_id"] is None for e in failed)  # the unknown email's attempt
    assert all(e["summary"]["after"]["via"] == "api" for e in failed)
    assert typed not in json.dumps(events)
    assert "hunter2" not in json.dumps(events)
    # nor anywhere else in the trail: every event of every organization, and platform ones
    with stored(server.env["IDP_DATABASE_URL"]) as session:
        rows = session.scalars(select(Event)).all()
        assert rows
        for row in rows:
            dumped = json.dumps({c.key: str(getattr(row, c.key)) for c in Event.__table__.columns})
            assert "hunter2" not in dumped, dumped


# 8. Rehash on login -----------------------------------------------------------------------


def test_login_rehashes_under_new_argon2_cost(
    server: Server, owner: Account, tmp_path: Path
) -> None:
    # v1.1: a password hash was never replaced after it was made, so logging in through a
    # server with a higher time cost left the stored "t=1" hash as it was.
    org, org_owner = tenant(server, owner)
    person = new_account(server, org_owner.token, org)
    before = password_hash(server, person.id)
    assert ",t=1," in before

    port = free_port()
    env = server_env(server.env["IDP_DATABASE_URL"], server.env["IDP_REDIS_URL"], port,
                     IDP_ARGON2_TIME_COST="2")
    costly = start_server(env, port, tmp_path / "costly.log")
    try:
        signed_in = login(costly, person.email, person.password, org)
        assert signed_in.status_code == 200, costly.log()
        after = password_hash(server, person.id)
        assert after != before
        assert after.startswith("$argon2id$") and ",t=2," in after and "m=64," in after
        assert login(costly, person.email, person.password, org).status_code == 200
        assert password_hash(server, person.id) == after  # already current: left alone
        assert login(costly, person.email, "wrong-password-1", org).status_code == 401
    finally:
        stop_server(costly)
    assert login(server, person.email, person.password, org).status_code == 200


# 9. The v1.1 database, migrated -------------------------------------------------------------


@dataclass
class Migrated:
    server: Server
    data: V11


@pytest.fixture(scope="module")
def migrated(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Migrated]:
    """A server started on a database that v1.1 left at revision 0001 (it migrates on start)."""
    directory = tmp_path_factory.mktemp("v11")
    with fresh_database(directory) as url:
        port = free_port()
        env = server_env(url, redis_url, port)
        data = build(url, load_settings(env))
        running = start_server(env, port, directory / "server.log")
        try:
            yield Migrated(running, data)
        finally:
            stop_server(running)


def test_v11_memberships_became_accounts(migrated: Migrated) -> None:
    # v1.1 has no revision 0002: users stay global and login refuses "organization" (400).
    server, data = migrated.server, migrated.data
    with stored(server.env["IDP_DATABASE_URL"]) as session:
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert int(revision) >= 2
    expected = [
        (data.alpha, data.multi_email, data.multi_password, "admin", ["eng"]),
        (data.beta, data.multi_email, data.multi_password, "member", ["sales", "emea"]),
        (data.beta, data.single_email, data.single_password, "owner", []),
    ]
    ids: dict[tuple[str, str], str] = {}
    for org, email, password, role, groups in expected:
        signed_in = login(server, email, password, org)
        assert signed_in.status_code == 200, (org, email, server.log())
        user = signed_in.json()["user"]
        assert (user["organization"], user["role"]) == (org, role)
        got = server.api("GET", f"/organizations/{org}/users/{user['id']}",
                         signed_in.json()["token"])
        assert got.status_code == 200, got.text
        assert got.json()["groups"] == groups and got.json()["email"] == email
        assert got.json()["disabled"] is False
        ids[(org, email)] = user["id"]
    multi = data.ids["multi"]
    assert ids[(data.alpha, data.multi_email)] == multi  # the first membership kept the id
    assert ids[(data.beta, data.multi_email)] != multi
    assert ids[(data.beta, data.single_email)] == data.ids["single"]
    named = server.api(
        "GET", f"/organizations/{data.beta}/users/{ids[(data.beta, data.multi_email)]}",
        login(server, data.single_email, data.single_password, data.beta).json()["token"],
    ).json()
    assert (named["name"], named["given_name"], named["family_name"]) == (
        "Multi Person", "Multi", "Person")
    # one password per account now: a wrong one, or an organization without the account
    assert login(server, data.multi_email, data.single_password, data.alpha).status_code == 401
    assert login(server, data.single_email, data.single_password, data.alpha).status_code == 401
    assert login(server, data.multi_email, data.multi_password).status_code == 401  # no operator


def test_v11_key_and_token_after_migration(migrated: Migrated) -> None:
    # v1.1: the key kept write:users and could create accounts; the login token still worked.
    server, data = migrated.server, migrated.data
    assert server.api("GET", f"/organizations/{data.alpha}", data.token).status_code == 401
    admin = login(server, data.multi_email, data.multi_password, data.alpha).json()["token"]
    keys = server.api("GET", f"/organizations/{data.alpha}/services/{data.app}/api-keys", admin)
    assert keys.status_code == 200, keys.text
    (key,) = keys.json()["api_keys"]
    assert key["id"] == data.ids["key"]
    assert key["permissions"] == ["read:users", "read:service"]
    users = f"/organizations/{data.alpha}/users"
    assert server.api("GET", users, data.api_key).status_code == 200  # read:users still works
    created = server.api("POST", users, data.api_key,
                         json={"email": "by-old-key@v11.test", "password": "old-key-pass-1"})
    assert created.status_code == 403, created.text


def test_v11_subscriptions_moved_to_the_right_account(migrated: Migrated) -> None:
    # v1.1: subscriptions named the global user, so the beta one would still name the user id
    # that is now alpha's account.
    server, data = migrated.server, migrated.data
    beta_owner = login(server, data.single_email, data.single_password, data.beta).json()
    multi_beta = login(server, data.multi_email, data.multi_password, data.beta).json()
    shop = server.api("GET", f"/organizations/{data.beta}/services/{data.shop}/subscriptions",
                      beta_owner["token"])
    assert shop.status_code == 200, shop.text
    assert [(s["id"], s["user_id"], s["plan_id"], s["status"])
            for s in shop.json()["subscriptions"]] == [
        (data.ids["sub_shop"], multi_beta["user"]["id"], data.ids["plan"], "active")]
    admin = login(server, data.multi_email, data.multi_password, data.alpha).json()["token"]
    portal = server.api(
        "GET", f"/organizations/{data.alpha}/services/{data.app}/subscriptions", admin)
    assert portal.status_code == 200, portal.text
    assert [(s["id"], s["user_id"]) for s in portal.json()["subscriptions"]] == [
        (data.ids["sub_portal"], data.ids["multi"])]


def test_v11_saml_service_signs_in_end_to_end(migrated: Migrated) -> None:
    # v1.1's SSO signed in the global user; here the migrated alpha account, with alpha's
    # groups, signs in to the service whose configuration and certificate v1.1 stored.
    server, data = migrated.server, migrated.data
    admin = login(server, data.multi_email, data.multi_password, data.alpha).json()["token"]
    config = server.api("GET", f"/organizations/{data.alpha}/services/{data.app}/saml", admin)
    assert config.status_code == 200, config.text
    assert config.json()["has_certificate"] is True
    assert config.json()["allowed_groups"] == [] and config.json()["require_subscription"] is False
    service = SamlService(server, admin, data.alpha, data.app, dict(data.saml), data.certificate)
    assert data.certificate.strip().splitlines()[1] in service.metadata()
    auth = onelogin_auth(service)
    browser = Browser(server)
    page = browser.sso(auth.login(return_to="https://portal.test/home"), data.multi_email,
                       data.multi_password)
    message = posted_message(page.text)
    assert message.action == data.saml["acs_url"]
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_nameid() == data.multi_email
    assert response.get_attributes()["groups"] == ["eng"]  # alpha's groups, not beta's
    # beta's single has no account in alpha: refused on the login page
    other = Browser(server)
    refused = other.sso(auth.login(), data.single_email, data.single_password)
    assert refused.status_code == 401 and 'name="password"' in refused.text
