"""The Python client (CONTRACT §6): every seed method against a running server."""

from __future__ import annotations

import pytest
from admin_helpers import fails
from conftest import Account, Server, unique_slug

from idp.client import SsoApiError, SsoClient


def test_seed_walk_through(server: Server, owner: Account) -> None:
    sso = SsoClient(server.url)
    login = sso.login(owner.email, owner.password)
    assert sso.token == login["token"] and login["user"]["email"] == owner.email

    org = unique_slug("acme-corp")
    assert sso.organizations.create({"slug": org, "name": "Acme Corp"})["slug"] == org
    assert sso.organizations.get(org)["name"] == "Acme Corp"
    user = sso.organizations.users.create(
        org, {"email": f"{unique_slug('jane')}@example.test", "name": "Jane", "role": "admin"}
    )
    assert user["role"] == "admin"
    assert {m["email"] for m in sso.organizations.members.list(org)["members"]} == {
        owner.email,
        user["email"],
    }
    assert len(sso.organizations.users.list(org)["users"]) == 2

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
    assert user["email"] in {u["email"] for u in backend.organizations.users.list(org)["users"]}
    sso.services.api_keys.delete(org, "main-app", api_key["id"])
    fails(lambda: backend.organizations.users.list(org), 401, "unauthenticated")

    sso.services.delete(org, "main-app")
    assert sso.services.list(org)["services"] == []
    sso.logout()
    assert sso.token is None
    fails(
        lambda: SsoClient(server.url, token=login["token"]).services.list(org),
        401,
        "unauthenticated",
    )


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
