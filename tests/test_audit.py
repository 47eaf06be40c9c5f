"""The audit trail: every admin change recorded (who, what, when), readable by owners and admins."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from admin_helpers import client, new_key, new_plan, new_service, service_payload, storage
from conftest import OWNER_PASSWORD, Account, Server, add_user, unique_slug
from jsonschema import Draft202012Validator
from sqlalchemy import select
from sso_helpers import Browser, onelogin_accepts, onelogin_auth, posted_message, saml_service

from idp.auth import PERMISSIONS, digest
from idp.store.models import SamlCertificate

SAML = {
    "enabled": True,
    "entity_id": "https://sp.audit.test/metadata",
    "acs_url": "https://sp.audit.test/acs",
    "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "attribute_mapping": {"email": "mail"},
    "sign_assertions": True,
    "sign_response": True,
}
CLOCK_SLACK = timedelta(seconds=2)


@dataclass
class Caller:
    """Someone calling the API: the account (or operator) with its id and audit actor type."""

    account: Account
    user_id: str
    actor_type: str  # "operator", or "user" for an organization's account

    @property
    def token(self) -> str:
        return self.account.token

    @property
    def actor(self) -> dict[str, str]:
        return {"type": self.actor_type, "id": self.user_id}


def me(server: Server, account: Account, organization: str | None = None) -> Caller:
    """The caller behind ``account``: an operator, or with ``organization`` its account there."""
    body = {"email": account.email, "password": account.password}
    if organization is not None:
        body["organization"] = organization
    response = server.api("POST", "/auth/login", json=body)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    token = response.json()["token"]
    signed_in = Account(account.email, account.password, token, organization or account.org)
    return Caller(signed_in, user["id"], "user" if organization else "operator")


@pytest.fixture(scope="module")
def caller(server: Server, owner: Account) -> Caller:
    """The module's operator, acting as an owner in every organization."""
    return me(server, owner)


def trail(server: Server, token: str, org: str, **params: Any) -> requests.Response:
    return server.api("GET", f"/organizations/{org}/audit-events", token, params=params)


def events(server: Server, token: str, org: str) -> list[dict[str, Any]]:
    response = trail(server, token, org, limit=100)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["audit_events"]
    return found


def recorded(
    server: Server, caller: Caller, org: str, action: str, change: Callable[[], Any]
) -> tuple[dict[str, Any], Any]:
    """Make a change; return the one new event with this action, checked for who and when."""
    known = {e["id"] for e in events(server, caller.token, org)}
    started = datetime.now(UTC)
    result = change()
    finished = datetime.now(UTC)
    new = [e for e in events(server, caller.token, org) if e["id"] not in known]
    assert [e["action"] for e in new] == [action], new
    event = new[0]
    assert event["actor"] == caller.actor
    created = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
    assert started - CLOCK_SLACK <= created <= finished + CLOCK_SLACK
    return event, result


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def without(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


# -- one test per admin action ----------------------------------------------------------------


def test_organization_create(server: Server, caller: Caller) -> None:
    slug = unique_slug("org")
    created = ok(
        server.api("POST", "/organizations", caller.token, json={"slug": slug, "name": "Audited"}),
        201,
    )
    (event,) = events(server, caller.token, slug)
    assert event["action"] == "organization.create"
    assert event["actor"] == {"type": "operator", "id": caller.user_id}
    assert (event["resource_type"], event["resource_id"]) == ("organization", created["id"])
    assert event["summary"] == {"after": created}


def test_user_update_and_delete(server: Server, caller: Caller, org: str, owner: Account) -> None:
    account = add_user(server, owner.token, org)
    user_id = next(
        u["id"]
        for u in client(server, caller.account).users.list(org)["users"]
        if u["email"] == account.email
    )
    path = f"/organizations/{org}/users/{user_id}"
    password = "a-new-password-" + unique_slug("pw")
    body = {"role": "admin", "groups": ["ops"], "password": password}
    event, user = recorded(
        server,
        caller,
        org,
        "user.update",
        lambda: ok(server.api("PATCH", path, caller.token, json=body)),
    )
    assert (event["resource_type"], event["resource_id"]) == ("user", user_id)
    assert event["user_id"] == user_id
    assert (event["summary"]["before"]["role"], event["summary"]["after"]["role"]) == (
        "member",
        "admin",
    )
    assert event["summary"]["after"]["groups"] == user["groups"] == ["ops"]
    assert event["summary"]["after"]["sign_ins_ended"] is True  # a new password ends them
    without(json.dumps(event), password, account.password, "argon2")
    event, _ = recorded(
        server,
        caller,
        org,
        "user.delete",
        lambda: ok(server.api("DELETE", path, caller.token), 204),
    )
    assert (event["resource_type"], event["resource_id"]) == ("user", user_id)
    profile = {key: value for key, value in user.items() if key != "mfa"}  # factors are not
    assert event["summary"]["before"] == profile and "after" not in event["summary"]  # copied


def test_changes_by_an_account_name_the_account(server: Server, owner: Account, org: str) -> None:
    admin = me(server, add_user(server, owner.token, org, role="admin"), org)
    assert admin.actor_type == "user"
    body = {"email": f"{unique_slug('u')}@example.test"}
    event, user = recorded(
        server,
        admin,
        org,
        "user.create",
        lambda: ok(server.api("POST", f"/organizations/{org}/users", admin.token, json=body), 201),
    )
    assert event["actor"] == {"type": "user", "id": admin.user_id}
    assert event["resource_id"] == user["id"]


def test_user_create_records_no_password(server: Server, caller: Caller, org: str) -> None:
    password = "a-user-password-" + unique_slug("pw")
    body = {"email": f"{unique_slug('u')}@example.test", "password": password, "groups": ["eng"]}
    event, user = recorded(
        server,
        caller,
        org,
        "user.create",
        lambda: ok(server.api("POST", f"/organizations/{org}/users", caller.token, json=body), 201),
    )
    assert (event["resource_type"], event["resource_id"]) == ("user", user["id"])
    assert event["summary"]["after"]["email"] == body["email"]
    assert event["summary"]["after"]["groups"] == ["eng"]
    without(json.dumps(event), password, "argon2")


def test_service_create_update_delete(server: Server, caller: Caller, org: str) -> None:
    sso = client(server, caller.account)
    event, service = recorded(
        server, caller, org, "service.create", lambda: new_service(sso, org, name="Before")
    )
    svc = service["slug"]
    assert (event["resource_type"], event["resource_id"]) == ("service", service["id"])
    assert event["service_id"] == service["id"]
    assert event["summary"]["after"]["name"] == "Before"

    event, _ = recorded(
        server,
        caller,
        org,
        "service.update",
        lambda: sso.services.update(org, svc, {"name": "After", "github_scopes": ["repo"]}),
    )
    before, after = event["summary"]["before"], event["summary"]["after"]
    assert (before["name"], after["name"]) == ("Before", "After")
    assert (before["github_scopes"], after["github_scopes"]) == ([], ["repo"])

    event, _ = recorded(
        server, caller, org, "service.delete", lambda: sso.services.delete(org, svc)
    )
    assert event["resource_id"] == service["id"]
    assert event["summary"]["before"]["name"] == "After" and "after" not in event["summary"]


def test_plan_create_update_delete(server: Server, caller: Caller, org: str) -> None:
    sso = client(server, caller.account)
    svc = new_service(sso, org)["slug"]
    event, plan = recorded(
        server, caller, org, "plan.create", lambda: new_plan(sso, org, svc, price_cents=500)
    )
    assert (event["resource_type"], event["resource_id"]) == ("plan", plan["id"])
    assert event["summary"]["after"]["price_cents"] == 500
    event, _ = recorded(
        server,
        caller,
        org,
        "plan.update",
        lambda: sso.services.plans.update(org, svc, plan["id"], {"price_cents": 900}),
    )
    assert event["summary"]["before"]["price_cents"] == 500
    assert event["summary"]["after"]["price_cents"] == 900
    event, _ = recorded(
        server,
        caller,
        org,
        "plan.delete",
        lambda: sso.services.plans.delete(org, svc, plan["id"]),
    )
    assert event["summary"]["before"]["id"] == plan["id"]


def test_subscription_create_cancel(
    server: Server, caller: Caller, org: str, owner: Account
) -> None:
    sso = client(server, caller.account)
    svc = new_service(sso, org)["slug"]
    plan = new_plan(sso, org, svc)
    member = add_user(server, owner.token, org)
    base = f"/organizations/{org}/services/{svc}/subscriptions"
    body = {"email": member.email, "plan_id": plan["id"]}
    event, sub = recorded(
        server,
        caller,
        org,
        "subscription.create",
        lambda: ok(server.api("POST", base, caller.token, json=body), 201),
    )
    assert (event["resource_type"], event["resource_id"]) == ("subscription", sub["id"])
    assert event["user_id"] == sub["user_id"]
    event, _ = recorded(
        server,
        caller,
        org,
        "subscription.cancel",
        lambda: server.api("DELETE", f"{base}/{sub['id']}", caller.token),
    )
    assert event["summary"]["before"]["status"] == "active"
    assert event["summary"]["after"]["status"] == "cancelled"


def test_api_key_create_delete_records_no_key(server: Server, caller: Caller, org: str) -> None:
    sso = client(server, caller.account)
    svc = new_service(sso, org)["slug"]
    body = {"name": "backend", "permissions": ["read:service"]}
    event, created = recorded(
        server, caller, org, "api_key.create", lambda: sso.services.api_keys.create(org, svc, body)
    )
    assert (event["resource_type"], event["resource_id"]) == ("api_key", created["id"])
    assert event["summary"]["after"]["prefix"] == created["prefix"]
    assert event["summary"]["after"]["permissions"] == ["read:service"]
    key = created["key"]
    without(json.dumps(event), key, digest(key))
    event, _ = recorded(
        server,
        caller,
        org,
        "api_key.delete",
        lambda: sso.services.api_keys.delete(org, svc, created["id"]),
    )
    assert event["summary"]["before"]["id"] == created["id"]
    without(json.dumps(event), key, digest(key))


def test_saml_configure_certificate_delete_record_no_key_material(
    server: Server, caller: Caller, org: str
) -> None:
    sso = client(server, caller.account)
    service = new_service(sso, org)
    svc, saml = service["slug"], sso.services.saml
    event, _ = recorded(
        server, caller, org, "saml.configure", lambda: saml.configure(org, svc, SAML)
    )
    assert (event["resource_type"], event["resource_id"]) == ("saml_config", service["id"])
    assert event["summary"].get("before") is None
    assert event["summary"]["after"]["acs_url"] == SAML["acs_url"]
    event, _ = recorded(
        server,
        caller,
        org,
        "saml.configure",
        lambda: saml.configure(org, svc, {**SAML, "acs_url": "https://sp.audit.test/acs2"}),
    )
    assert event["summary"]["before"]["acs_url"] == SAML["acs_url"]
    assert event["summary"]["after"]["acs_url"] == "https://sp.audit.test/acs2"
    event, cert = recorded(
        server,
        caller,
        org,
        "saml.certificate.generate",
        lambda: saml.generate_certificate(org, svc),
    )
    assert (event["resource_type"], event["resource_id"]) == ("saml_certificate", cert["id"])
    assert event["summary"]["after"]["valid_until"] == cert["valid_until"]
    with storage(server) as session:
        blob = session.scalar(
            select(SamlCertificate.private_key_encrypted).where(SamlCertificate.id == cert["id"])
        )
    assert blob
    event, _ = recorded(server, caller, org, "saml.delete", lambda: saml.delete_config(org, svc))
    assert event["summary"]["after"] == {"deactivated_certificates": [cert["id"]]}
    for event in events(server, caller.token, org):
        without(json.dumps(event), "PRIVATE KEY", blob)


def test_changes_by_an_api_key_name_the_key(server: Server, caller: Caller, org: str) -> None:
    sso = client(server, caller.account)
    svc = new_service(sso, org)["slug"]
    key = new_key(sso, org, svc, "write:service")
    key_id = sso.services.api_keys.list(org, svc)["api_keys"][0]["id"]
    client(server, key).services.update(org, svc, {"name": "Changed by a key"})
    event = next(e for e in events(server, caller.token, org) if e["action"] == "service.update")
    assert event["actor"] == {"type": "api_key", "id": key_id}
    without(json.dumps(event), key, digest(key))


def test_bootstrap_records_the_owner_it_grants(server: Server, caller: Caller) -> None:
    slug = unique_slug("boot")
    email = f"{unique_slug('owner')}@example.test"
    server.cli("bootstrap", "--org", slug, "--email", email, "--password", OWNER_PASSWORD)
    server.cli(
        "bootstrap", "--org", slug, "--email", caller.account.email, "--password", OWNER_PASSWORD
    )
    trail_ = events(server, caller.token, slug)
    assert [(e["action"], e["actor"]["type"]) for e in reversed(trail_)] == [
        ("organization.create", "cli"),
        ("user.create", "cli"),
        ("user.create", "cli"),
    ]
    assert [e["summary"]["after"]["email"] for e in trail_[:2]] == [caller.account.email, email]
    assert {e["summary"]["after"]["role"] for e in trail_[:2]} == {"owner"}
    without(json.dumps(trail_), OWNER_PASSWORD)


def test_sign_ins_and_sso_are_in_the_trail(
    server: Server, caller: Caller, org: str, owner: Account
) -> None:
    person = me(server, add_user(server, owner.token, org), org)
    service = saml_service(server, caller.token, org)
    auth = onelogin_auth(service)
    browser = Browser(server)
    page = browser.sso(auth.login(), person.account.email, "wrong-password")
    assert 'name="password"' in page.text
    page = browser.login(page, person.account.email, person.account.password)
    onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    trail_ = events(server, caller.token, org)
    assert [e["action"] for e in trail_[:3]] == ["sso.success", "login.success", "login.failure"]
    sso, success, failure = trail_[:3]
    assert sso["actor"]["type"] == "idp" and sso["user_id"] == person.user_id
    assert success["actor"] == {"type": "user", "id": person.user_id}
    assert failure["actor"]["type"] == "anonymous"
    for login in (success, failure):
        assert login["user_id"] == person.user_id
        assert login["service_id"] == sso["service_id"]
        assert login["summary"]["after"] == {
            "address": "127.0.0.1",
            "via": "page",
            "email": person.account.email,
        }
    without(json.dumps(trail_), "wrong-password", person.account.password)


def test_a_failed_sign_in_keeps_no_typed_email_of_nobody(
    server: Server, caller: Caller, org: str
) -> None:
    """What was typed into the email field for no account (sometimes a password) is not kept."""
    typed = f"{unique_slug('nobody')}@example.test"
    body = {"email": typed, "password": "some-password", "organization": org}
    assert server.api("POST", "/auth/login", json=body).status_code == 401
    failure = next(e for e in events(server, caller.token, org) if e["action"] == "login.failure")
    assert failure["actor"]["type"] == "anonymous" and failure["user_id"] is None
    assert failure["summary"]["after"] == {"address": "127.0.0.1", "via": "api"}
    without(json.dumps(events(server, caller.token, org)), typed, "some-password")


# -- reading the trail ------------------------------------------------------------------------


def test_newest_first_with_limit_offset_and_total(server: Server, caller: Caller, org: str) -> None:
    sso = client(server, caller.account)
    for name in ("one", "two", "three"):
        new_service(sso, org, name=name)
    body = ok(trail(server, caller.token, org, limit=2))
    assert body["total"] == 4  # organization.create, then three service.create
    assert [e["summary"]["after"]["name"] for e in body["audit_events"]] == ["three", "two"]
    rest = ok(trail(server, caller.token, org, limit=2, offset=2))
    assert [e["action"] for e in rest["audit_events"]] == ["service.create", "organization.create"]
    assert rest["total"] == 4
    assert ok(trail(server, caller.token, org, offset=10))["audit_events"] == []
    ids = [e["id"] for e in ok(trail(server, caller.token, org))["audit_events"]]
    assert ids == sorted(ids, reverse=True)


def test_the_answer_matches_the_openapi_document(server: Server, caller: Caller, org: str) -> None:
    client(server, caller.account).services.create(org, service_payload())
    doc = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
    operation = doc["paths"]["/api/organizations/{org}/audit-events"]["get"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {
        "limit",
        "offset",
    }
    schema = {**operation["responses"]["200"]["content"]["application/json"]["schema"]}
    validator = Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    body = ok(trail(server, caller.token, org))
    assert len(body["audit_events"]) == 2
    assert not [error.message for error in validator.iter_errors(body)]


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"offset": "-1"}, {"limit": "1e3"}]
)
def test_bad_paging_is_a_400(
    server: Server, caller: Caller, org: str, params: dict[str, str]
) -> None:
    response = trail(server, caller.token, org, **params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert set(response.json()["details"]) <= {"limit", "offset"}


def test_only_owners_and_admins_read_it(server: Server, owner: Account, org: str) -> None:
    admin = add_user(server, owner.token, org, role="admin")
    member = add_user(server, owner.token, org, role="member")
    outsider = add_user(server, owner.token, owner.org, role="admin")
    sso = client(server, owner)
    key = new_key(sso, org, new_service(sso, org)["slug"], *PERMISSIONS)
    assert trail(server, admin.token, org).status_code == 200
    for token in (member.token, key):
        response = trail(server, token, org)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "forbidden"
    elsewhere = trail(server, outsider.token, org)  # another organization's admin
    assert elsewhere.status_code == 404 and elsewhere.json()["error"] == "not_found"
    assert server.api("GET", f"/organizations/{org}/audit-events").status_code == 401
    assert trail(server, owner.token, unique_slug("nope")).status_code == 404
