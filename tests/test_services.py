"""Services: create, list, get, update, delete, limits, races and cascades, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from admin_helpers import (
    client,
    fails,
    new_key,
    new_plan,
    new_service,
    service_payload,
    storage,
)
from conftest import (
    Account,
    Server,
    add_user,
    free_port,
    server_env,
    start_server,
    stop_server,
    unique_slug,
)
from sqlalchemy import func, select

from idp.client import SsoClient
from idp.store.models import (
    ApiKey,
    Event,
    Plan,
    SamlCertificate,
    SamlConfig,
    Subscription,
    utcnow,
)

SERVICE_FIELDS = {
    "id",
    "organization_id",
    "slug",
    "name",
    "service_type",
    "client_id",
    "redirect_uris",
    "created_at",
    "updated_at",
}
LIMIT = 2


@pytest.fixture(scope="module")
def limited(
    server: Server, database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A second host on the same database with IDP_MAX_SERVICES=2 and two workers."""
    port = free_port()
    env = server_env(database_url, redis_url, port, IDP_MAX_SERVICES=str(LIMIT))
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "limited.log", workers=2)
    yield running
    stop_server(running)


def test_create_returns_service_and_client_id(server: Server, owner: Account, org: str) -> None:
    body = service_payload(github_scopes=["user:email", "read:org"])
    created = client(server, owner).services.create(org, body)
    assert set(created) == {"service", "client_id"}
    service = created["service"]
    assert set(service) == SERVICE_FIELDS
    assert created["client_id"] == service["client_id"] and service["client_id"]
    assert service["slug"] == body["slug"]
    assert service["name"] == "Main Application"
    assert service["service_type"] == "web"
    assert service["redirect_uris"] == ["https://app.example.test/callback"]
    assert service["created_at"] == service["updated_at"]
    assert service["created_at"].endswith("Z")


def test_list_reports_usage(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    assert sso.services.list(org) == {
        "services": [],
        "usage": {"current_services": 0, "max_services": 10},
    }
    first, second = new_service(sso, org), new_service(sso, org, service_type="api")
    member = add_user(server, owner.token, org)
    listed = client(server, member).services.list(org)
    assert listed["services"] == [first, second]
    assert listed["usage"] == {"current_services": 2, "max_services": 10}


def test_get_has_provider_grants_and_plans(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    service = new_service(
        sso, org, github_scopes=["user:email"], google_scopes=[], microsoft_scopes=["User.Read"]
    )
    plan = new_plan(sso, org, service["slug"], name="pro")
    got = sso.services.get(org, service["slug"])
    assert got == {
        "service": service,
        "provider_grants": [
            {"provider": "github", "scopes": ["user:email"]},
            {"provider": "microsoft", "scopes": ["User.Read"]},
        ],
        "plans": [plan],
    }


def test_update_changes_only_given_fields(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    service = new_service(sso, org, github_scopes=["user:email"])
    updated = sso.services.update(
        org,
        service["slug"],
        {
            "name": "Main Application v2",
            "redirect_uris": ["https://app.example.test/callback", "myapp://oauth"],
            "github_scopes": [],
            "google_scopes": ["openid", "email"],
        },
    )
    assert updated["name"] == "Main Application v2"
    assert updated["redirect_uris"] == ["https://app.example.test/callback", "myapp://oauth"]
    unchanged = {"id", "organization_id", "slug", "service_type", "client_id", "created_at"}
    assert {k: updated[k] for k in unchanged} == {k: service[k] for k in unchanged}
    assert updated["updated_at"] > service["updated_at"]
    got = sso.services.get(org, service["slug"])
    assert got["service"] == updated
    assert got["provider_grants"] == [{"provider": "google", "scopes": ["openid", "email"]}]
    assert sso.services.update(org, service["slug"], {})["name"] == "Main Application v2"


def test_delete_is_for_owners_only(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    service = new_service(sso, org)
    admin = client(server, add_user(server, owner.token, org, role="admin"))
    fails(lambda: admin.services.delete(org, service["slug"]), 403, "forbidden")
    sso.services.delete(org, service["slug"])
    fails(lambda: sso.services.get(org, service["slug"]), 404, "not_found")
    fails(lambda: sso.services.delete(org, service["slug"]), 404, "not_found")
    assert sso.services.list(org)["usage"]["current_services"] == 0


def _rows_of(server: Server, service_id: str) -> dict[str, int]:
    counts = {}
    with storage(server) as session:
        for model in (Plan, Subscription, ApiKey, SamlConfig, SamlCertificate):
            query = select(func.count()).select_from(model).where(model.service_id == service_id)
            counts[model.__tablename__] = session.scalar(query) or 0
    return counts


def test_delete_cascades_to_everything_of_the_service(
    server: Server, owner: Account, org: str
) -> None:
    sso = client(server, owner)
    service = new_service(sso, org)
    slug = service["slug"]
    plan = new_plan(sso, org, slug)
    subscriber = add_user(server, owner.token, org)
    subscribed = server.api(
        "POST",
        f"/organizations/{org}/services/{slug}/subscriptions",
        owner.token,
        json={"email": subscriber.email, "plan_id": plan["id"]},
    )
    assert subscribed.status_code == 201
    key = new_key(sso, org, slug, "read:service")
    now = utcnow()
    with storage(server) as session:
        session.add(
            SamlConfig(
                service_id=service["id"],
                enabled=True,
                entity_id="https://sp.example.test",
                acs_url="https://sp.example.test/acs",
                name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                sign_assertions=True,
                sign_response=True,
            )
        )
        session.add(
            SamlCertificate(
                service_id=service["id"],
                certificate_pem="(certificate)",
                private_key_encrypted="(encrypted key)",
                valid_from=now,
                valid_until=now + timedelta(days=1),
            )
        )
    assert set(_rows_of(server, service["id"]).values()) == {1}
    assert client(server, key).services.get(org, slug)["service"]["id"] == service["id"]

    sso.services.delete(org, slug)

    assert set(_rows_of(server, service["id"]).values()) == {0}
    fails(lambda: client(server, key).services.get(org, slug), 401, "unauthenticated")
    again = new_service(sso, org, slug=slug)
    assert again["id"] != service["id"]
    assert sso.services.get(org, slug)["plans"] == []
    assert sso.services.plans.list(org, slug) == []
    assert sso.services.api_keys.list(org, slug) == {"api_keys": [], "total": 0}
    listed = server.api("GET", f"/organizations/{org}/services/{slug}/subscriptions", owner.token)
    assert listed.json() == {"subscriptions": []}


def test_unauthenticated_calls_are_refused(server: Server, owner: Account, org: str) -> None:
    slug = new_service(client(server, owner), org)["slug"]
    anonymous = SsoClient(server.url)
    for call in (
        lambda: anonymous.services.create(org, service_payload()),
        lambda: anonymous.services.list(org),
        lambda: anonymous.services.get(org, slug),
        lambda: anonymous.services.update(org, slug, {"name": "x"}),
        lambda: anonymous.services.delete(org, slug),
    ):
        fails(call, 401, "unauthenticated")
    fails(lambda: client(server, "idpt_revoked").services.list(org), 401, "unauthenticated")


def test_members_read_and_managers_write(server: Server, owner: Account, org: str) -> None:
    slug = new_service(client(server, owner), org)["slug"]
    member = client(server, add_user(server, owner.token, org))
    admin = client(server, add_user(server, owner.token, org, role="admin"))
    fails(lambda: member.services.create(org, service_payload()), 403, "forbidden")
    fails(lambda: member.services.update(org, slug, {"name": "x"}), 403, "forbidden")
    fails(lambda: member.services.delete(org, slug), 403, "forbidden")
    assert member.services.get(org, slug)["service"]["slug"] == slug
    assert len(member.services.list(org)["services"]) == 1
    assert admin.services.create(org, service_payload())["service"]["name"]
    assert admin.services.update(org, slug, {"name": "By admin"})["name"] == "By admin"


def test_other_organizations_accounts_find_nothing(
    server: Server, owner: Account, org: str
) -> None:
    slug = new_service(client(server, owner), org)["slug"]
    outsider = client(server, add_user(server, owner.token, "acme", role="owner"))
    for call in (
        lambda: outsider.services.create(org, service_payload()),
        lambda: outsider.services.list(org),
        lambda: outsider.services.get(org, slug),
        lambda: outsider.services.update(org, slug, {"name": "x"}),
        lambda: outsider.services.delete(org, slug),
    ):
        fails(call, 404, "not_found")
    assert client(server, owner).services.get(org, slug)["service"]["name"] == "Main Application"


def test_unknown_organization_and_service(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    fails(lambda: sso.services.list("no-such-org"), 404, "not_found")
    fails(lambda: sso.services.create("no-such-org", service_payload()), 404, "not_found")
    fails(lambda: sso.services.get(org, "no-such-svc"), 404, "not_found")
    fails(lambda: sso.services.update(org, "no-such-svc", {"name": "x"}), 404, "not_found")
    fails(lambda: sso.services.delete(org, "no-such-svc"), 404, "not_found")
    for hostile in ("%00", "a%0A", "x" * 300, "%E2%80%AE"):
        response = server.api("GET", f"/organizations/{org}/services/{hostile}", owner.token)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"


def test_slug_taken_in_the_same_organization_only(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    slug = new_service(sso, org)["slug"]
    error = fails(lambda: sso.services.create(org, service_payload(slug=slug)), 409, "conflict")
    assert slug in error.message
    other = unique_slug("org")
    sso.organizations.create({"slug": other, "name": "Other"})
    assert new_service(sso, other, slug=slug)["slug"] == slug


def test_racing_creates_of_one_slug_give_one_service(
    server: Server, owner: Account, org: str
) -> None:
    body = service_payload()

    def create(_: int) -> tuple[int, str]:
        response = server.api("POST", f"/organizations/{org}/services", owner.token, json=body)
        return response.status_code, response.json().get("error", "")

    with ThreadPoolExecutor(8) as pool:
        answers = sorted(pool.map(create, range(8)))
    assert answers == [(201, "")] + [(409, "conflict")] * 7
    assert client(server, owner).services.list(org)["usage"]["current_services"] == 1


def test_max_services_holds_under_racing_creates(limited: Server, owner: Account, org: str) -> None:
    def create(_: int) -> tuple[int, str]:
        response = limited.api(
            "POST", f"/organizations/{org}/services", owner.token, json=service_payload()
        )
        return response.status_code, response.json().get("error", "")

    with ThreadPoolExecutor(8) as pool:
        answers = sorted(pool.map(create, range(8)))
    assert answers == [(201, "")] * LIMIT + [(409, "limit_reached")] * (8 - LIMIT)
    sso = client(limited, owner)
    listed = sso.services.list(org)
    assert listed["usage"] == {"current_services": LIMIT, "max_services": LIMIT}
    error = fails(lambda: sso.services.create(org, service_payload()), 409, "limit_reached")
    assert str(LIMIT) in error.message
    taken = listed["services"][0]["slug"]
    fails(lambda: sso.services.create(org, service_payload(slug=taken)), 409, "conflict")
    sso.services.delete(org, taken)
    assert new_service(sso, org)["slug"]


INVALID_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"slug": "Bad_Slug"}, "slug"),
    ({"slug": "-leading"}, "slug"),
    ({"slug": "trailing-"}, "slug"),
    ({"slug": "line\n"}, "slug"),
    ({"slug": "a" * 64}, "slug"),
    ({"slug": 7}, "slug"),
    ({"name": None}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": " padded"}, "name"),
    ({"name": "nul\u0000byte"}, "name"),
    ({"name": "record\u001eseparator"}, "name"),
    ({"service_type": "desktop"}, "service_type"),
    ({"service_type": None}, "service_type"),
    ({"redirect_uris": ["/relative/callback"]}, "redirect_uris"),
    ({"redirect_uris": ["https://"]}, "redirect_uris"),
    ({"redirect_uris": ["https://app.example.test/cb#fragment"]}, "redirect_uris"),
    ({"redirect_uris": ["https://app.example.test/a b"]}, "redirect_uris"),
    ({"redirect_uris": "https://app.example.test/cb"}, "redirect_uris"),
    ({"redirect_uris": [1]}, "redirect_uris"),
    ({"redirect_uris": ["https://a.test/cb", "https://a.test/cb"]}, "redirect_uris"),
    ({"github_scopes": ["two words"]}, "github_scopes"),
    ({"github_scopes": ["tab\tinside"]}, "github_scopes"),
    ({"google_scopes": None}, "google_scopes"),
    ({"microsoft_scopes": [""]}, "microsoft_scopes"),
    ({"client_id": "mine"}, "client_id"),
    ({"color": "red"}, "color"),
]


@pytest.mark.parametrize(("override", "field"), INVALID_CREATES)
def test_invalid_create_names_the_field(
    server: Server, owner: Account, org: str, override: dict[str, Any], field: str
) -> None:
    sso = client(server, owner)
    error = fails(
        lambda: sso.services.create(org, service_payload(**override)), 400, "invalid_request"
    )
    assert list(error.details) == [field], error.details


def test_invalid_bodies(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    error = fails(lambda: sso.services.create(org, {"slug": "ok"}), 400, "invalid_request")
    assert error.details == {
        "name": "is required",
        "service_type": "is required",
        "redirect_uris": "is required",
    }
    path = f"/organizations/{org}/services"
    unpaired_surrogate = (
        b'{"slug": "ok", "name": "\\ud800", "service_type": "web", "redirect_uris": []}'
    )
    for raw in (b"[]", b"null", b'"text"', b"5", b"{oops", b"\xff\xfe", unpaired_surrogate):
        response = server.api("POST", path, owner.token, data=raw)
        assert response.status_code == 400, raw
        assert response.json()["error"] == "invalid_request"
    slug = new_service(sso, org)["slug"]
    for body, field in (
        ({"slug": "renamed"}, "slug"),
        ({"service_type": "api"}, "service_type"),
        ({"name": ""}, "name"),
        ({"redirect_uris": ["not a uri"]}, "redirect_uris"),
        ({"github_scopes": "user:email"}, "github_scopes"),
    ):
        error = fails(lambda b=body: sso.services.update(org, slug, b), 400, "invalid_request")
        assert list(error.details) == [field]


def test_every_write_is_audited(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    service = new_service(sso, org)
    sso.services.update(org, service["slug"], {"name": "Renamed"})
    sso.services.delete(org, service["slug"])
    with storage(server) as session:
        events = session.scalars(
            select(Event).where(Event.service_id == service["id"]).order_by(Event.id)
        ).all()
    assert [e.action for e in events] == ["service.create", "service.update", "service.delete"]
    operator = server.api(
        "POST", "/auth/login", json={"email": owner.email, "password": owner.password}
    ).json()["user"]["id"]
    assert {(e.actor_type, e.actor_id) for e in events} == {("operator", operator)}
    assert events[0].summary["after"]["slug"] == service["slug"]
    assert events[1].summary["before"]["name"] == "Main Application"
    assert events[1].summary["after"]["name"] == "Renamed"
