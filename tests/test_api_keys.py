"""API keys: managed by people, shown once, stored as a digest, scoped to their service."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from admin_helpers import client, fails, new_key, new_plan, new_service, service_payload, storage
from conftest import Account, Server, add_user, unique_slug
from sqlalchemy import select

from idp.client import SsoClient
from idp.store.models import ApiKey, Event, utcnow

KEY_FIELDS = {"id", "prefix", "name", "permissions", "expires_at", "last_used_at", "created_at"}
CREATED_FIELDS = KEY_FIELDS - {"last_used_at"} | {"key"}
ALL_PERMISSIONS = (  # every permission a key may have (write:users is refused)
    "read:users",
    "read:subscriptions",
    "write:subscriptions",
    "read:analytics",
    "read:service",
    "write:service",
)


@pytest.fixture
def svc(server: Server, owner: Account, org: str) -> str:
    """A fresh service of the test's organization."""
    slug: str = new_service(client(server, owner), org)["slug"]
    return slug


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def plan_body() -> dict[str, Any]:
    return {"name": unique_slug("plan"), "price_cents": 100, "currency": "usd", "features": []}


def test_key_is_shown_once_and_stored_as_a_digest(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    created = sso.services.api_keys.create(
        org, svc, {"name": "Production Backend", "permissions": ["read:users", "read:service"]}
    )
    assert set(created) == CREATED_FIELDS
    assert created["key"].startswith(created["prefix"] + ".")
    assert created["name"] == "Production Backend"
    assert created["permissions"] == ["read:users", "read:service"]
    assert created["expires_at"] is None
    got = sso.services.api_keys.get(org, svc, created["id"])
    assert got == {
        **{k: v for k, v in created.items() if k != "key"},
        "last_used_at": None,
    }
    listed = server.api("GET", f"/organizations/{org}/services/{svc}/api-keys", owner.token)
    secret = created["key"].split(".", 1)[1]
    assert secret not in listed.text
    with storage(server) as session:
        row = session.get(ApiKey, created["id"])
        assert row is not None
        assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
        assert all(secret not in str(getattr(row, c.key)) for c in ApiKey.__table__.columns)


def test_expiry_in_days(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    body = {"name": "k", "permissions": ["read:service"], "expires_in_days": 90}
    created = sso.services.api_keys.create(org, svc, body)
    assert parse(created["expires_at"]) - parse(created["created_at"]) == timedelta(days=90)
    longest = sso.services.api_keys.create(org, svc, {**body, "expires_in_days": 3650})
    assert parse(longest["expires_at"]) - parse(longest["created_at"]) == timedelta(days=3650)
    never = sso.services.api_keys.create(org, svc, {**body, "expires_in_days": None})
    assert never["expires_at"] is None


def test_list_pages_newest_first(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    ids = [
        sso.services.api_keys.create(org, svc, {"name": f"k{i}", "permissions": ["read:service"]})[
            "id"
        ]
        for i in range(3)
    ]
    newest_first = ids[::-1]
    everything = sso.services.api_keys.list(org, svc)
    assert everything["total"] == 3
    assert [k["id"] for k in everything["api_keys"]] == newest_first
    assert all(set(k) == KEY_FIELDS for k in everything["api_keys"])
    first = sso.services.api_keys.list(org, svc, limit=2)
    assert [k["id"] for k in first["api_keys"]] == newest_first[:2] and first["total"] == 3
    rest = sso.services.api_keys.list(org, svc, limit=2, offset=2)
    assert [k["id"] for k in rest["api_keys"]] == newest_first[2:] and rest["total"] == 3
    assert sso.services.api_keys.list(org, svc, offset=10) == {"api_keys": [], "total": 3}
    other = new_service(sso, org)["slug"]
    assert sso.services.api_keys.list(org, other) == {"api_keys": [], "total": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "ten"}, "offset"),
        ({"offset": "9" * 30}, "offset"),
    ],
)
def test_invalid_paging(
    server: Server, owner: Account, org: str, svc: str, params: dict[str, str], field: str
) -> None:
    response = server.api(
        "GET", f"/organizations/{org}/services/{svc}/api-keys", owner.token, params=params
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert list(response.json()["details"]) == [field]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"permissions": ["admin:all"]}, "permissions"),
        ({"permissions": ["read:users", "superuser"]}, "permissions"),
        ({"permissions": []}, "permissions"),
        ({"permissions": ["read:users", "read:users"]}, "permissions"),
        ({"permissions": ["write:users"]}, "permissions"),
        ({"permissions": ["read:users", "write:users"]}, "permissions"),
        ({"permissions": "read:users"}, "permissions"),
        ({"permissions": None}, "permissions"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 3651}, "expires_in_days"),
        ({"expires_in_days": -5}, "expires_in_days"),
        ({"expires_in_days": "10"}, "expires_in_days"),
        ({"expires_in_days": 1.5}, "expires_in_days"),
        ({"expires_in_days": 10**40}, "expires_in_days"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": "\u0000"}, "name"),
        ({"key": "idpk_mine.secret"}, "key"),
    ],
)
def test_invalid_create_names_the_field(
    server: Server, owner: Account, org: str, svc: str, override: dict[str, Any], field: str
) -> None:
    body = {"name": "k", "permissions": ["read:service"], **override}
    error = fails(
        lambda: client(server, owner).services.api_keys.create(org, svc, body),
        400,
        "invalid_request",
    )
    assert list(error.details) == [field], error.details


def test_unknown_or_foreign_key_is_not_found(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    other = new_service(sso, org)["slug"]
    foreign = sso.services.api_keys.create(org, other, {"name": "k", "permissions": ["read:users"]})
    for key_id in ("no-such-key", "nul\x00id", foreign["id"]):
        fails(lambda k=key_id: sso.services.api_keys.get(org, svc, k), 404, "not_found")
        fails(lambda k=key_id: sso.services.api_keys.delete(org, svc, k), 404, "not_found")
    fails(lambda: sso.services.api_keys.list(org, "no-such-svc"), 404, "not_found")


def test_deleted_key_is_refused_at_once(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    created = sso.services.api_keys.create(org, svc, {"name": "k", "permissions": ["read:service"]})
    as_key = client(server, created["key"])
    assert as_key.services.get(org, svc)["service"]["slug"] == svc
    sso.services.api_keys.delete(org, svc, created["id"])
    fails(lambda: as_key.services.get(org, svc), 401, "unauthenticated")
    fails(lambda: sso.services.api_keys.get(org, svc, created["id"]), 404, "not_found")
    fails(lambda: sso.services.api_keys.delete(org, svc, created["id"]), 404, "not_found")


def test_expired_or_tampered_key_is_refused(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    body = {"name": "k", "permissions": ["read:service"], "expires_in_days": 1}
    created = sso.services.api_keys.create(org, svc, body)
    as_key = client(server, created["key"])
    assert as_key.services.get(org, svc)
    with storage(server) as session:
        row = session.get(ApiKey, created["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    fails(lambda: as_key.services.get(org, svc), 401, "unauthenticated")
    live = new_key(sso, org, svc, "read:service")
    tampered = live[:-1] + ("A" if live[-1] != "A" else "B")
    fails(lambda: client(server, tampered).services.get(org, svc), 401, "unauthenticated")
    assert client(server, live).services.get(org, svc)


def test_last_used_at_follows_use(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    created = sso.services.api_keys.create(org, svc, {"name": "k", "permissions": ["read:service"]})
    assert sso.services.api_keys.get(org, svc, created["id"])["last_used_at"] is None
    client(server, created["key"]).services.get(org, svc)
    first = sso.services.api_keys.get(org, svc, created["id"])["last_used_at"]
    assert first is not None and parse(first) >= parse(created["created_at"])
    client(server, created["key"]).services.plans.list(org, svc)
    second = sso.services.api_keys.get(org, svc, created["id"])["last_used_at"]
    assert parse(second) > parse(first)


def test_roles(server: Server, owner: Account, org: str, svc: str) -> None:
    created = client(server, owner).services.api_keys.create(
        org, svc, {"name": "k", "permissions": ["read:service"]}
    )
    member = client(server, add_user(server, owner.token, org))
    admin = client(server, add_user(server, owner.token, org, role="admin"))
    outsider = client(server, add_user(server, owner.token, "acme"))
    body = {"name": "k", "permissions": ["read:service"]}
    fails(lambda: member.services.api_keys.create(org, svc, body), 403, "forbidden")
    fails(lambda: member.services.api_keys.delete(org, svc, created["id"]), 403, "forbidden")
    assert member.services.api_keys.list(org, svc)["total"] == 1
    assert member.services.api_keys.get(org, svc, created["id"])["id"] == created["id"]
    fails(lambda: outsider.services.api_keys.list(org, svc), 404, "not_found")
    fails(lambda: outsider.services.api_keys.get(org, svc, created["id"]), 404, "not_found")
    fails(lambda: outsider.services.api_keys.create(org, svc, body), 404, "not_found")
    anonymous = SsoClient(server.url)
    fails(lambda: anonymous.services.api_keys.create(org, svc, body), 401, "unauthenticated")
    fails(lambda: anonymous.services.api_keys.list(org, svc), 401, "unauthenticated")
    made = admin.services.api_keys.create(org, svc, body)
    admin.services.api_keys.delete(org, svc, made["id"])


def test_key_acts_only_with_its_permissions(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    plan = new_plan(sso, org, svc)
    reader = client(server, new_key(sso, org, svc, "read:service"))
    assert reader.services.get(org, svc)["plans"] == [plan]
    assert reader.services.plans.list(org, svc)[0]["plan"] == plan
    for call in (
        lambda: reader.services.update(org, svc, {"name": "x"}),
        lambda: reader.services.plans.create(org, svc, {**plan_body(), "name": "new"}),
        lambda: reader.services.plans.delete(org, svc, plan["id"]),
        lambda: reader.services.subscriptions.list(org, svc),
        lambda: reader.organizations.users.list(org),
    ):
        fails(call, 403, "forbidden")

    writer = client(server, new_key(sso, org, svc, "write:service"))
    assert writer.services.update(org, svc, {"name": "By key"})["name"] == "By key"
    made = writer.services.plans.create(org, svc, plan_body())["plan"]
    assert writer.services.plans.update(org, svc, made["id"], {"price_cents": 1})
    writer.services.plans.delete(org, svc, made["id"])
    fails(lambda: writer.services.get(org, svc), 403, "forbidden")

    member = add_user(server, owner.token, org)
    subs = client(server, new_key(sso, org, svc, "read:subscriptions", "write:subscriptions"))
    sub = subs.services.subscriptions.create(
        org, svc, {"email": member.email, "plan_id": plan["id"]}
    )
    assert subs.services.subscriptions.list(org, svc) == {"subscriptions": [sub]}
    subs.services.subscriptions.cancel(org, svc, sub["id"])

    users = client(server, new_key(sso, org, svc, "read:users"))
    listed = users.organizations.users.list(org)["users"]
    assert member.email in {u["email"] for u in listed}
    assert users.organizations.users.get(org, listed[0]["id"]) == listed[0]
    email = f"{unique_slug('by-key')}@example.test"
    fails(lambda: users.organizations.users.create(org, {"email": email}), 403, "forbidden")
    fails(
        lambda: users.organizations.users.update(org, listed[0]["id"], {"name": "x"}),
        403,
        "forbidden",
    )
    fails(lambda: users.organizations.users.delete(org, listed[0]["id"]), 403, "forbidden")
    assert email not in {u["email"] for u in sso.organizations.users.list(org)["users"]}


def test_no_key_manages_keys_or_services_or_reaches_another_service(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    everything = client(server, new_key(sso, org, svc, *ALL_PERMISSIONS))
    existing = sso.services.api_keys.list(org, svc)["api_keys"][0]["id"]
    other = new_service(sso, org)["slug"]
    other_org = unique_slug("org")
    sso.organizations.create({"slug": other_org, "name": "Other"})
    foreign = new_service(sso, other_org)["slug"]
    person = sso.organizations.users.create(org, {"email": f"{unique_slug('p')}@example.test"})
    body = {"name": "k", "permissions": ["read:service"]}
    for call in (
        lambda: everything.services.api_keys.create(org, svc, body),
        lambda: everything.services.api_keys.list(org, svc),
        lambda: everything.services.api_keys.get(org, svc, existing),
        lambda: everything.services.api_keys.delete(org, svc, existing),
        lambda: everything.services.create(org, service_payload()),
        lambda: everything.services.list(org),
        lambda: everything.services.delete(org, svc),
        lambda: everything.organizations.create({"slug": unique_slug("org"), "name": "x"}),
        lambda: everything.organizations.delete(org),
        lambda: everything.organizations.users.update(org, person["id"], {"role": "admin"}),
        lambda: everything.organizations.users.delete(org, person["id"]),
        lambda: everything.organizations.users.create(
            org, {"email": "boss@example.test", "role": "owner"}
        ),
    ):
        fails(call, 403, "forbidden")
    for call in (  # another service of its organization, or another organization: not found
        lambda: everything.services.get(org, other),
        lambda: everything.services.update(org, other, {"name": "x"}),
        lambda: everything.services.plans.list(org, other),
        lambda: everything.services.api_keys.list(org, other),
        lambda: everything.services.get(other_org, foreign),
        lambda: everything.organizations.get(other_org),
        lambda: everything.organizations.users.list(other_org),
    ):
        fails(call, 404, "not_found")
    assert everything.services.get(org, svc)["service"]["slug"] == svc
    assert everything.organizations.get(org)["slug"] == org  # read:service reads its org
    assert [o["slug"] for o in everything.organizations.list()["organizations"]] == [org]
    assert sso.organizations.users.get(org, person["id"])["role"] == "member"


def test_key_writes_are_audited_without_secrets(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    created = sso.services.api_keys.create(
        org, svc, {"name": "k", "permissions": ["write:service"]}
    )
    client(server, created["key"]).services.update(org, svc, {"name": "Changed by key"})
    sso.services.api_keys.delete(org, svc, created["id"])
    with storage(server) as session:
        events = session.scalars(
            select(Event)
            .where(Event.resource_id == created["id"], Event.resource_type == "api_key")
            .order_by(Event.id)
        ).all()
        update = session.scalars(
            select(Event).where(Event.action == "service.update", Event.actor_id == created["id"])
        ).one()
        assert update.actor_type == "api_key"
        summaries = json.dumps([e.summary for e in events])
    assert [e.action for e in events] == ["api_key.create", "api_key.delete"]
    assert created["key"].split(".", 1)[1] not in summaries
    assert hashlib.sha256(created["key"].encode()).hexdigest() not in summaries
    assert created["prefix"] in summaries
