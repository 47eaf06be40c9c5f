"""The Python client (CONTRACT §6): every method against a running server."""

from __future__ import annotations

from functools import partial

import pytest
from admin_helpers import fails
from conftest import OWNER_PASSWORD, Account, Server, add_user, unique_slug

from idp.client import SsoApiError, SsoClient

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def operator(server: Server, owner: Account) -> SsoClient:
    """A client signed in as the module's platform operator."""
    sso = SsoClient(server.url)
    sso.login(owner.email, owner.password)
    return sso


def test_seed_walk_through(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url)
    login = sso.login(owner.email, owner.password)
    assert sso.token == login["token"] and login["user"]["email"] == owner.email

    org = unique_slug("acme-corp")
    assert sso.organizations.create({"slug": org, "name": "Acme Corp"})["slug"] == org
    assert sso.organizations.get(org)["name"] == "Acme Corp"
    user = sso.users.create(
        org, {"email": f"{unique_slug('jane')}@example.test", "name": "Jane", "role": "admin"}
    )
    assert user["role"] == "admin"
    assert [u["email"] for u in sso.users.list(org)["users"]] == [user["email"]]

    result = sso.services.create(
        org,
        {
            "slug": "main-app",
            "name": "Main Application",
            "service_type": "web",
            "github_scopes": ["user:email", "read:org"],
            "redirect_uris": ["https://app.acme.com/callback"],
        },
    )
    assert result["client_id"] == result["service"]["client_id"]
    listed = sso.services.list(org)
    assert listed["usage"] == {"current_services": 1, "max_services": 10}
    assert [s["client_id"] for s in listed["services"]] == [result["client_id"]]
    service = sso.services.get(org, "main-app")
    assert service["provider_grants"] == [
        {"provider": "github", "scopes": ["user:email", "read:org"]}
    ]
    updated = sso.services.update(
        org,
        "main-app",
        {
            "name": "Main Application v2",
            "redirect_uris": ["https://app.acme.com/callback", "https://app.acme.com/oauth"],
        },
    )
    assert updated["name"] == "Main Application v2"

    pro = sso.services.plans.create(
        org,
        "main-app",
        {
            "name": "pro",
            "price_cents": 2999,
            "currency": "usd",
            "features": ["api-access", "advanced-analytics", "priority-support"],
        },
    )
    assert (pro["plan"]["name"], pro["subscription_count"]) == ("pro", 0)
    assert [p["plan"]["name"] for p in sso.services.plans.list(org, "main-app")] == ["pro"]
    plus = sso.services.plans.update(
        org, "main-app", pro["plan"]["id"], {"name": "Pro Plus", "price_cents": 3999}
    )
    assert plus["plan"]["name"] == "Pro Plus"

    subscription = sso.services.subscriptions.create(
        org, "main-app", {"email": user["email"], "plan_id": pro["plan"]["id"]}
    )
    assert subscription["user_id"] == user["id"]
    assert sso.services.subscriptions.list(org, "main-app")["subscriptions"] == [subscription]
    sso.services.subscriptions.cancel(org, "main-app", subscription["id"])
    sso.services.plans.delete(org, "main-app", pro["plan"]["id"])
    assert sso.services.plans.list(org, "main-app") == []

    api_key = sso.services.api_keys.create(
        org,
        "main-app",
        {
            "name": "Production Backend",
            "permissions": ["read:users", "write:subscriptions"],
            "expires_in_days": 90,
        },
    )
    assert api_key["key"].startswith(api_key["prefix"])
    keys = sso.services.api_keys.list(org, "main-app", limit=50, offset=0)
    assert keys["total"] == 1 and keys["api_keys"][0]["name"] == "Production Backend"
    got = sso.services.api_keys.get(org, "main-app", api_key["id"])
    assert got["permissions"] == ["read:users", "write:subscriptions"]
    backend = SsoClient(server.url, token=api_key["key"])
    assert user["email"] in {u["email"] for u in backend.users.list(org)["users"]}
    sso.services.api_keys.delete(org, "main-app", api_key["id"])
    fails(lambda: backend.users.list(org), 401, "unauthenticated")

    sso.services.delete(org, "main-app")
    assert sso.services.list(org)["services"] == []
    sso.logout()
    assert sso.token is None
    fails(
        lambda: SsoClient(server.url, token=login["token"]).services.list(org),
        401,
        "unauthenticated",
    )


def test_login_as_operator_or_as_an_organization_account(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url)
    as_operator = sso.login(owner.email, owner.password)["user"]
    assert (as_operator["role"], as_operator["organization"]) == ("operator", None)

    account = SsoClient(server.url)
    as_owner = account.login(owner.email, owner.password, organization="acme")["user"]
    assert (as_owner["email"], as_owner["role"], as_owner["organization"]) == (
        owner.email,
        "owner",
        "acme",
    )
    assert as_owner["id"] != as_operator["id"]
    assert [o["slug"] for o in account.organizations.list()["organizations"]] == ["acme"]

    # The same email in another organization is another account, with its own password.
    other = sso.organizations.create(slug=unique_slug("other"), name="Other")["slug"]
    twin = sso.users.create(other, email=owner.email, password="twin-password-123", role="owner")
    twin_login = SsoClient(server.url).login(owner.email, "twin-password-123", organization=other)
    assert twin_login["user"]["id"] == twin["id"] != as_owner["id"]
    listed = {o["slug"] for o in sso.organizations.list()["organizations"]}
    assert {"acme", other} <= listed

    refusals = [
        lambda: SsoClient(server.url).login(owner.email, "wrong password"),
        lambda: SsoClient(server.url).login(owner.email, OWNER_PASSWORD, organization=other),
        lambda: SsoClient(server.url).login(owner.email, OWNER_PASSWORD, organization="no-org"),
        lambda: SsoClient(server.url).login("nobody@acme.test", OWNER_PASSWORD, "acme"),
    ]
    messages = {fails(refusal, 401, "unauthenticated").message for refusal in refusals}
    assert len(messages) == 1
    account.logout()
    assert account.token is None


def test_organizations_are_created_and_deleted_by_platform_callers(
    server: Server, owner: Account
) -> None:
    sso = operator(server, owner)
    slug = unique_slug("tenant")
    created = sso.organizations.create(slug=slug, name="Tenant")
    assert created == sso.organizations.get(slug)
    assert slug in {o["slug"] for o in sso.organizations.list()["organizations"]}
    fails(lambda: sso.organizations.create({"slug": slug, "name": "Again"}), 409, "conflict")

    admin = SsoClient(server.url, token=add_user(server, sso.token or "", slug, "owner").token)
    assert admin.organizations.get(slug)["id"] == created["id"]
    fails(lambda: admin.organizations.create(slug=unique_slug("x"), name="x"), 403, "forbidden")
    fails(lambda: admin.organizations.delete(slug), 403, "forbidden")
    fails(lambda: admin.organizations.get("acme"), 404, "not_found")

    sso.organizations.delete(slug)
    fails(lambda: sso.organizations.get(slug), 404, "not_found")
    fails(lambda: admin.users.list(slug), 401, "unauthenticated")


def test_users_lifecycle(server: Server, owner: Account) -> None:
    sso = operator(server, owner)
    org = sso.organizations.create(slug=unique_slug("team"), name="Team")["slug"]
    assert sso.organizations.users is sso.users

    first = sso.users.create(
        org, {"email": "First@Example.test", "password": "first-password-1"}, role="owner"
    )
    assert first == {
        "id": first["id"],
        "email": "first@example.test",
        "name": None,
        "given_name": None,
        "family_name": None,
        "groups": [],
        "role": "owner",
        "disabled": False,
        "mfa": {"totp": False, "passkeys": 0},
    }
    fails(lambda: sso.users.create(org, email="first@example.test"), 409, "conflict")
    assert sso.users.get(org, first["id"]) == first

    changed = sso.users.update(
        org, first["id"], name="First Person", given_name="First", groups=["eng", "ops"]
    )
    assert (changed["name"], changed["given_name"], changed["groups"]) == (
        "First Person",
        "First",
        ["eng", "ops"],
    )
    fails(lambda: sso.users.update(org, first["id"], role="member"), 409, "conflict")
    fails(lambda: sso.users.update(org, first["id"], disabled=True), 409, "conflict")
    fails(lambda: sso.users.delete(org, first["id"]), 409, "conflict")

    member = add_user(server, sso.token or "", org, "member")
    member_id = next(u["id"] for u in sso.users.list(org)["users"] if u["email"] == member.email)
    as_member = SsoClient(server.url, token=member.token)
    assert as_member.users.get(org, member_id)["role"] == "member"
    fails(lambda: as_member.users.update(org, member_id, name="Me"), 403, "forbidden")

    sso.users.update(org, member_id, {"password": "a-new-password-1"})
    fails(lambda: as_member.users.list(org), 401, "unauthenticated")
    as_member.login(member.email, "a-new-password-1", organization=org)
    assert sso.users.update(org, member_id, disabled=True)["disabled"] is True
    fails(lambda: as_member.users.list(org), 401, "unauthenticated")
    fails(lambda: as_member.login(member.email, "a-new-password-1", org), 401, "unauthenticated")

    second = sso.users.update(org, member_id, role="owner", disabled=False)
    assert (second["role"], second["disabled"]) == ("owner", False)
    assert sso.users.update(org, first["id"], role="admin")["role"] == "admin"
    sso.users.delete(org, first["id"])
    fails(lambda: sso.users.get(org, first["id"]), 404, "not_found")
    assert [u["id"] for u in sso.users.list(org)["users"]] == [member_id]


def test_audit_events_and_analytics(server: Server, owner: Account) -> None:
    sso = operator(server, owner)
    org = sso.organizations.create(slug=unique_slug("audited"), name="Audited")["slug"]
    jane = sso.users.create(org, email="jane@example.test", password="jane-password-1")
    sso.users.update(org, jane["id"], name="Jane")
    SsoClient(server.url).login("jane@example.test", "jane-password-1", organization=org)
    fails(
        lambda: SsoClient(server.url).login("typo@example.test", "secret-typed", org),
        401,
        "unauthenticated",
    )
    sso.users.delete(org, jane["id"])
    sso.services.create(
        org, {"slug": "app", "name": "App", "service_type": "web", "redirect_uris": []}
    )

    trail = sso.audit_events.list(org)
    actions = [event["action"] for event in trail["audit_events"]]
    assert trail["total"] == len(actions)
    assert actions[0] == "service.create" and actions[-1] == "organization.create"
    expected = {"user.create", "user.update", "user.delete", "login.success", "login.failure"}
    assert expected <= set(actions)
    by_action = {event["action"]: event for event in trail["audit_events"]}
    assert by_action["user.create"]["actor"]["type"] == "operator"
    assert by_action["login.success"]["summary"]["after"]["via"] == "api"
    assert "typo@example.test" not in str(by_action["login.failure"])

    page = sso.audit_events.list(org, limit=2, offset=1)
    assert page["total"] == trail["total"]
    assert page["audit_events"] == trail["audit_events"][1:3]
    fails(lambda: sso.audit_events.list(org, limit=0), 400, "invalid_request")

    assert sso.services.analytics(org, "app") == {
        "logins_total": 0,
        "logins_24h": 0,
        "unique_users_30d": 0,
        "last_login_at": None,
    }
    fails(lambda: sso.services.analytics(org, "no-such-app"), 404, "not_found")


def test_saml_methods_and_access_rules(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url, token=owner.token)
    svc = unique_slug("sp")
    sso.services.create(
        "acme", {"slug": svc, "name": "SP", "service_type": "web", "redirect_uris": []}
    )
    config = {
        "enabled": True,
        "entity_id": "https://sp.example.test",
        "acs_url": "https://sp.example.test/acs",
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "mail", "groups": "memberOf"},
        "sign_assertions": True,
        "sign_response": False,
        "allowed_groups": ["eng"],
        "require_subscription": True,
    }
    assert "message" in sso.services.saml.configure("acme", svc, config)
    got = sso.services.saml.get_config("acme", svc)
    assert (got["allowed_groups"], got["require_subscription"]) == (["eng"], True)
    assert got["has_certificate"] is False
    fails(lambda: sso.services.saml.get_certificate("acme", svc), 404, "not_found")

    certificate = sso.services.saml.generate_certificate("acme", svc)
    assert certificate["is_active"] and "BEGIN CERTIFICATE" in certificate["public_key"]
    assert sso.services.saml.get_certificate("acme", svc)["id"] == certificate["id"]
    assert sso.services.saml.get_config("acme", svc)["has_certificate"] is True

    assert "message" in sso.services.saml.delete_config("acme", svc)
    fails(lambda: sso.services.saml.get_config("acme", svc), 404, "not_found")
    sso.services.delete("acme", svc)


def test_service_keys_stay_inside_their_service(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url, token=owner.token)
    svc = unique_slug("svc")
    sso.services.create(
        "acme", {"slug": svc, "name": "S", "service_type": "api", "redirect_uris": []}
    )
    refused = fails(
        lambda: sso.services.api_keys.create(
            "acme", svc, {"name": "k", "permissions": ["read:users", "write:users"]}
        ),
        400,
        "invalid_request",
    )
    assert "permissions" in refused.details
    key = sso.services.api_keys.create(
        "acme", svc, {"name": "k", "permissions": ["read:users", "read:service", "read:analytics"]}
    )
    backend = SsoClient(server.url, token=key["key"])
    users = backend.users.list("acme")["users"]
    assert owner.email in {u["email"] for u in users}
    assert backend.users.get("acme", users[0]["id"]) == users[0]
    assert backend.services.get("acme", svc)["service"]["slug"] == svc
    assert backend.services.analytics("acme", svc)["logins_total"] == 0
    assert [o["slug"] for o in backend.organizations.list()["organizations"]] == ["acme"]

    fails(lambda: backend.users.create("acme", email="new@acme.test"), 403, "forbidden")
    fails(lambda: backend.users.update("acme", users[0]["id"], name="x"), 403, "forbidden")
    fails(lambda: backend.services.api_keys.list("acme", svc), 403, "forbidden")
    fails(lambda: backend.services.delete("acme", svc), 403, "forbidden")
    fails(lambda: backend.audit_events.list("acme"), 403, "forbidden")
    fails(lambda: backend.organizations.create(slug=unique_slug("x"), name="x"), 403, "forbidden")

    other = operator(server, owner).organizations.create(slug=unique_slug("o"), name="O")["slug"]
    fails(lambda: backend.users.list(other), 404, "not_found")
    fails(lambda: backend.organizations.get(other), 404, "not_found")
    neighbour = unique_slug("svc")
    sso.services.create(
        "acme", {"slug": neighbour, "name": "N", "service_type": "api", "redirect_uris": []}
    )
    fails(lambda: backend.services.get("acme", neighbour), 404, "not_found")
    fails(lambda: backend.services.analytics("acme", neighbour), 404, "not_found")
    sso.services.delete("acme", neighbour)
    sso.services.delete("acme", svc)


def test_platform_key_provisions_an_organization(server: Server) -> None:
    secret = server.cli("platform-keys", "create", "--name", "main backend").stdout.strip()
    platform = SsoClient(server.url, token=secret)
    org = platform.organizations.create(slug=unique_slug("customer"), name="Customer")["slug"]
    founder = platform.users.create(
        org, email="founder@customer.test", password="founder-password-1", role="owner"
    )
    platform.services.create(
        org, {"slug": "app", "name": "App", "service_type": "web", "redirect_uris": []}
    )
    assert [u["id"] for u in platform.users.list(org)["users"]] == [founder["id"]]
    assert platform.audit_events.list(org, limit=1)["audit_events"][0]["actor"]["type"] == (
        "platform_key"
    )

    founder_client = SsoClient(server.url)
    founder_client.login("founder@customer.test", "founder-password-1", organization=org)
    assert [s["slug"] for s in founder_client.services.list(org)["services"]] == ["app"]

    listed = server.cli("platform-keys", "list").stdout.splitlines()
    key_id = next(line.split()[0] for line in listed if secret.startswith(line.split()[1]))
    server.cli("platform-keys", "delete", key_id)
    fails(lambda: platform.organizations.list(), 401, "unauthenticated")


def test_errors_carry_status_code_message_and_details(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url, token=owner.token)
    with pytest.raises(SsoApiError) as caught:
        sso.services.create("acme", {"slug": "Not A Slug", "name": "x", "service_type": "web"})
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.message == "The request is invalid"
    assert set(error.details) == {"slug", "redirect_uris"}
    assert "400 invalid_request" in str(error)
    missing = fails(lambda: sso.services.get("acme", "no-such-service"), 404, "not_found")
    assert missing.details == {}
    with pytest.raises(SsoApiError) as login_failed:
        SsoClient(server.url).login(owner.email, "wrong password")
    assert login_failed.value.status == 401


def test_path_segments_cannot_escape_their_route(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url, token=owner.token)
    fails(lambda: sso.services.get("acme", "../../organizations/acme"), 404, "not_found")
    fails(lambda: sso.services.get("acme/services/x", "y"), 404, "not_found")
    fails(lambda: sso.services.plans.delete("acme", "svc", "a?b#c"), 404, "not_found")
    fails(lambda: sso.services.plans.delete("acme", "svc", "%2e%2e"), 404, "not_found")
    # Servers decode %2F before routing, and URL parsing resolves dot segments: such
    # segments are refused before any request (which would reach another route).
    fails(lambda: sso.organizations.get("acme/users"), 404, "not_found")
    fails(lambda: sso.organizations.delete("acme/users"), 404, "not_found")
    for segment in ("", ".", ".."):
        fails(partial(sso.users.delete, "acme", segment), 404, "not_found")
        fails(partial(sso.services.get, segment, "x"), 404, "not_found")
    assert sso.organizations.get("acme")["slug"] == "acme"


def test_non_json_errors_keep_their_status(server: Server) -> None:
    sso = SsoClient(server.url + "/healthz/nothing")
    fails(lambda: sso.services.list("acme"), 404, "http_error")


@pytest.mark.parametrize("base_url", ["https://sso.example.com", "https://sso.example.com/"])
def test_saml_urls(base_url: str) -> None:
    saml = SsoClient(base_url).services.saml
    assert (
        saml.get_metadata_url(base_url, "acme-corp", "main-app")
        == "https://sso.example.com/saml/acme-corp/main-app/metadata"
    )
    assert (
        saml.get_sso_url(base_url, "acme-corp", "main-app")
        == "https://sso.example.com/saml/acme-corp/main-app/sso"
    )
