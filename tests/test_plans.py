"""Plans: create, list, update, delete, with subscription counts, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from admin_helpers import client, fails, new_plan, new_service, storage
from conftest import Account, Server, add_user
from sqlalchemy import select

from idp.client import SsoClient
from idp.store.models import Event

PLAN_FIELDS = {
    "id",
    "service_id",
    "name",
    "price_cents",
    "currency",
    "features",
    "created_at",
    "updated_at",
}
PRO = {
    "name": "pro",
    "price_cents": 2999,
    "currency": "USD",
    "features": ["api-access", "advanced-analytics", "priority-support"],
}


@pytest.fixture
def svc(server: Server, owner: Account, org: str) -> str:
    """A fresh service of the test's organization."""
    slug: str = new_service(client(server, owner), org)["slug"]
    return slug


def subscribe(sso: SsoClient, org: str, svc: str, email: str, plan_id: str) -> dict[str, Any]:
    return sso.services.subscriptions.create(org, svc, {"email": email, "plan_id": plan_id})


def test_create_returns_plan_with_count(server: Server, owner: Account, org: str, svc: str) -> None:
    created = client(server, owner).services.plans.create(org, svc, PRO)
    assert set(created) == {"plan", "subscription_count"}
    assert created["subscription_count"] == 0
    plan = created["plan"]
    assert set(plan) == PLAN_FIELDS
    assert plan["name"] == "pro"
    assert plan["price_cents"] == 2999
    assert plan["currency"] == "usd"
    assert plan["features"] == PRO["features"]
    assert plan["created_at"] == plan["updated_at"]


def test_list_counts_active_subscriptions(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    free = new_plan(sso, org, svc, name="free", price_cents=0)
    pro = new_plan(sso, org, svc, name="pro")
    member = add_user(server, owner.token, org)
    subscribe(sso, org, svc, add_user(server, owner.token, org).email, pro["id"])
    cancelled = subscribe(sso, org, svc, member.email, pro["id"])
    sso.services.subscriptions.cancel(org, svc, cancelled["id"])
    subscribe(sso, org, svc, member.email, free["id"])
    listed = client(server, member).services.plans.list(org, svc)
    assert listed == [
        {"plan": free, "subscription_count": 1},
        {"plan": pro, "subscription_count": 1},
    ]


def test_update_changes_only_given_fields(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    plan = new_plan(sso, org, svc, **PRO)
    subscribe(sso, org, svc, add_user(server, owner.token, org).email, plan["id"])
    updated = sso.services.plans.update(
        org, svc, plan["id"], {"name": "Pro Plus", "price_cents": 3999, "currency": "EUR"}
    )
    assert updated["subscription_count"] == 1
    after = updated["plan"]
    assert (after["name"], after["price_cents"], after["currency"]) == ("Pro Plus", 3999, "eur")
    assert after["features"] == plan["features"]
    assert after["created_at"] == plan["created_at"]
    assert after["updated_at"] > plan["updated_at"]
    features = sso.services.plans.update(org, svc, plan["id"], {"features": []})
    assert features["plan"]["features"] == []
    assert features["plan"]["name"] == "Pro Plus"


def test_plan_name_taken(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    new_plan(sso, org, svc, name="pro")
    basic = new_plan(sso, org, svc, name="basic")
    fails(lambda: sso.services.plans.create(org, svc, PRO), 409, "conflict")
    fails(
        lambda: sso.services.plans.update(org, svc, basic["id"], {"name": "pro"}), 409, "conflict"
    )
    other = new_service(sso, org)["slug"]
    assert sso.services.plans.create(org, other, PRO)["plan"]["name"] == "pro"


def test_delete_refused_while_subscriptions_are_active(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    plan = new_plan(sso, org, svc)
    subscription = subscribe(sso, org, svc, add_user(server, owner.token, org).email, plan["id"])
    error = fails(lambda: sso.services.plans.delete(org, svc, plan["id"]), 409, "conflict")
    assert "active subscription" in error.message
    sso.services.subscriptions.cancel(org, svc, subscription["id"])
    sso.services.plans.delete(org, svc, plan["id"])
    assert sso.services.plans.list(org, svc) == []
    fails(lambda: sso.services.plans.delete(org, svc, plan["id"]), 404, "not_found")


def test_unknown_plan_or_plan_of_another_service(
    server: Server, owner: Account, org: str, svc: str
) -> None:
    sso = client(server, owner)
    foreign = new_plan(sso, org, new_service(sso, org)["slug"])
    for plan_id in ("no-such-plan", "nul\x00id", foreign["id"]):
        fails(lambda p=plan_id: sso.services.plans.update(org, svc, p, {}), 404, "not_found")
        fails(lambda p=plan_id: sso.services.plans.delete(org, svc, p), 404, "not_found")
    fails(lambda: sso.services.plans.list(org, "no-such-svc"), 404, "not_found")
    fails(lambda: sso.services.plans.create(org, "no-such-svc", PRO), 404, "not_found")


def test_roles(server: Server, owner: Account, org: str, svc: str) -> None:
    plan = new_plan(client(server, owner), org, svc)
    member = client(server, add_user(server, owner.token, org))
    admin = client(server, add_user(server, owner.token, org, role="admin"))
    outsider = client(server, add_user(server, owner.token, "acme"))
    anonymous = SsoClient(server.url)
    fails(lambda: member.services.plans.create(org, svc, PRO), 403, "forbidden")
    fails(lambda: member.services.plans.update(org, svc, plan["id"], {}), 403, "forbidden")
    fails(lambda: member.services.plans.delete(org, svc, plan["id"]), 403, "forbidden")
    assert len(member.services.plans.list(org, svc)) == 1
    fails(lambda: outsider.services.plans.list(org, svc), 404, "not_found")
    fails(lambda: outsider.services.plans.create(org, svc, PRO), 404, "not_found")
    fails(lambda: outsider.services.plans.update(org, svc, plan["id"], {}), 404, "not_found")
    fails(lambda: outsider.services.plans.delete(org, svc, plan["id"]), 404, "not_found")
    fails(lambda: anonymous.services.plans.list(org, svc), 401, "unauthenticated")
    fails(lambda: anonymous.services.plans.create(org, svc, PRO), 401, "unauthenticated")
    created = admin.services.plans.create(org, svc, PRO)["plan"]
    assert admin.services.plans.update(org, svc, created["id"], {"price_cents": 1})
    admin.services.plans.delete(org, svc, created["id"])


INVALID_PLANS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "pro\u0000"}, "name"),
    ({"name": "pro "}, "name"),
    ({"price_cents": -1}, "price_cents"),
    ({"price_cents": 19.99}, "price_cents"),
    ({"price_cents": "2999"}, "price_cents"),
    ({"price_cents": True}, "price_cents"),
    ({"price_cents": None}, "price_cents"),
    ({"price_cents": 10**30}, "price_cents"),
    ({"currency": "us"}, "currency"),
    ({"currency": "usdd"}, "currency"),
    ({"currency": "u$d"}, "currency"),
    ({"currency": "usd\n"}, "currency"),
    ({"currency": 840}, "currency"),
    ({"features": "api-access"}, "features"),
    ({"features": [1]}, "features"),
    ({"features": ["a", "a"]}, "features"),
    ({"features": [""]}, "features"),
    ({"features": ["line\nbreak"]}, "features"),
    ({"features": None}, "features"),
    ({"id": "chosen"}, "id"),
]


@pytest.mark.parametrize(("override", "field"), INVALID_PLANS)
def test_invalid_plan_names_the_field(
    server: Server, owner: Account, org: str, svc: str, override: dict[str, Any], field: str
) -> None:
    sso = client(server, owner)
    error = fails(
        lambda: sso.services.plans.create(org, svc, {**PRO, **override}), 400, "invalid_request"
    )
    assert list(error.details) == [field], error.details
    plan = new_plan(sso, org, svc)
    error = fails(
        lambda: sso.services.plans.update(org, svc, plan["id"], override), 400, "invalid_request"
    )
    assert list(error.details) == [field], error.details


def test_required_fields(server: Server, owner: Account, org: str, svc: str) -> None:
    error = fails(
        lambda: client(server, owner).services.plans.create(org, svc, {}), 400, "invalid_request"
    )
    assert error.details == {
        "name": "is required",
        "price_cents": "is required",
        "currency": "is required",
        "features": "is required",
    }


def test_largest_price_is_stored(server: Server, owner: Account, org: str, svc: str) -> None:
    plan = new_plan(client(server, owner), org, svc, price_cents=2**31 - 1)
    assert plan["price_cents"] == 2**31 - 1


def test_plan_writes_are_audited(server: Server, owner: Account, org: str, svc: str) -> None:
    sso = client(server, owner)
    plan = new_plan(sso, org, svc)
    sso.services.plans.update(org, svc, plan["id"], {"price_cents": 5})
    sso.services.plans.delete(org, svc, plan["id"])
    with storage(server) as session:
        events = session.scalars(
            select(Event).where(Event.resource_id == plan["id"]).order_by(Event.id)
        ).all()
    assert [e.action for e in events] == ["plan.create", "plan.update", "plan.delete"]
    assert events[1].summary["after"]["price_cents"] == 5
