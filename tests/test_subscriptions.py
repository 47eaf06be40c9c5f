"""Subscriptions: create by user id or email (accounts of the service's organization), list,
cancel; one active per account and service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from admin_helpers import client, fails, new_plan, new_service, storage
from conftest import Account, Server, add_user
from sqlalchemy import select

from idp.client import SsoClient
from idp.store.models import Event


@pytest.fixture
def svc(server: Server, owner: Account, org: str) -> str:
    """A fresh service of the test's organization."""
    slug: str = new_service(client(server, owner), org)["slug"]
    return slug


@pytest.fixture
def plan(server: Server, owner: Account, org: str, svc: str) -> dict[str, Any]:
    """A plan of that service."""
    return new_plan(client(server, owner), org, svc)


@pytest.fixture
def person(server: Server, owner: Account, org: str) -> Account:
    """An account of the test's organization (the module's owner is an operator, with no
    account there to subscribe)."""
    return add_user(server, owner.token, org)


def test_create_by_email_or_user_id(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any]
) -> None:
    sso = client(server, owner)
    member = add_user(server, owner.token, org)
    by_email = sso.services.subscriptions.create(
        org, svc, {"email": member.email.upper(), "plan_id": plan["id"]}
    )
    assert set(by_email) == {"id", "user_id", "plan_id", "status", "created_at"}
    assert by_email["plan_id"] == plan["id"] and by_email["status"] == "active"
    users = sso.users.list(org)["users"]
    assert by_email["user_id"] == next(u["id"] for u in users if u["email"] == member.email)
    person = add_user(server, owner.token, org)
    person_id = next(u["id"] for u in sso.users.list(org)["users"] if u["email"] == person.email)
    by_id = sso.services.subscriptions.create(
        org, svc, {"user_id": person_id, "plan_id": plan["id"]}
    )
    assert by_id["user_id"] == person_id
    listed = client(server, member).services.subscriptions.list(org, svc)
    assert listed == {"subscriptions": [by_email, by_id]}


def test_cancel_keeps_the_subscription_listed(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    sso = client(server, owner)
    sub = sso.services.subscriptions.create(
        org, svc, {"email": person.email, "plan_id": plan["id"]}
    )
    sso.services.subscriptions.cancel(org, svc, sub["id"])
    sso.services.subscriptions.cancel(org, svc, sub["id"])
    assert sso.services.subscriptions.list(org, svc) == {
        "subscriptions": [{**sub, "status": "cancelled"}]
    }
    fails(lambda: sso.services.subscriptions.cancel(org, svc, "no-such-id"), 404, "not_found")
    other = new_service(sso, org)["slug"]
    fails(lambda: sso.services.subscriptions.cancel(org, other, sub["id"]), 404, "not_found")


def test_one_active_subscription_per_user_and_service(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    sso = client(server, owner)
    second_plan = new_plan(sso, org, svc)
    body = {"email": person.email, "plan_id": plan["id"]}
    first = sso.services.subscriptions.create(org, svc, body)
    fails(lambda: sso.services.subscriptions.create(org, svc, body), 409, "conflict")
    fails(
        lambda: sso.services.subscriptions.create(
            org, svc, {"email": person.email, "plan_id": second_plan["id"]}
        ),
        409,
        "conflict",
    )
    other = new_service(sso, org)["slug"]
    other_plan = new_plan(sso, org, other)
    assert sso.services.subscriptions.create(
        org, other, {"email": person.email, "plan_id": other_plan["id"]}
    )
    sso.services.subscriptions.cancel(org, svc, first["id"])
    moved = sso.services.subscriptions.create(
        org, svc, {"email": person.email, "plan_id": second_plan["id"]}
    )
    assert moved["status"] == "active"


def test_racing_subscriptions_give_one(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    path = f"/organizations/{org}/services/{svc}/subscriptions"
    body = {"email": person.email, "plan_id": plan["id"]}

    def create(_: int) -> int:
        return server.api("POST", path, owner.token, json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(create, range(8))) == [201] + [409] * 7


def test_plan_delete_racing_subscriptions_never_drops_one(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any]
) -> None:
    emails = [add_user(server, owner.token, org).email for _ in range(12)]
    base = f"/organizations/{org}/services/{svc}"

    def act(email: str | None) -> int:
        if email is None:
            return server.api("DELETE", f"{base}/plans/{plan['id']}", owner.token).status_code
        body = {"email": email, "plan_id": plan["id"]}
        return server.api("POST", f"{base}/subscriptions", owner.token, json=body).status_code

    with ThreadPoolExecutor(len(emails) + 1) as pool:
        deleted, *subscribed = pool.map(act, [None, *emails])
    listed = server.api("GET", f"{base}/subscriptions", owner.token).json()["subscriptions"]
    assert len(listed) == subscribed.count(201)
    if deleted == 204:
        assert subscribed.count(201) == 0
    else:
        assert deleted == 409 and subscribed.count(201) >= 1
    assert set(subscribed) <= {201, 404, 409}


def test_user_must_be_an_account_of_the_org_and_plan_of_the_service(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    sso = client(server, owner)
    stranger = add_user(server, owner.token, "acme")
    acme = sso.users.list("acme")["users"]
    stranger_id = next(u["id"] for u in acme if u["email"] == stranger.email)
    foreign_plan = new_plan(sso, org, new_service(sso, org)["slug"])
    for body in (
        {"email": stranger.email, "plan_id": plan["id"]},
        {"user_id": stranger_id, "plan_id": plan["id"]},
        {"email": "ghost@example.test", "plan_id": plan["id"]},
        {"user_id": "no-such-user", "plan_id": plan["id"]},
        {"email": person.email, "plan_id": foreign_plan["id"]},
        {"email": person.email, "plan_id": "no-such-plan"},
    ):
        fails(lambda b=body: sso.services.subscriptions.create(org, svc, b), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan_id": "p"}, "body"),
        ({"email": "a@example.test", "user_id": "u", "plan_id": "p"}, "body"),
        ({"email": "a@example.test"}, "plan_id"),
        ({"email": "not-an-email", "plan_id": "p"}, "email"),
        ({"user_id": 5, "plan_id": "p"}, "user_id"),
        ({"user_id": None, "plan_id": "p"}, "user_id"),
        ({"email": "a@example.test", "plan_id": None}, "plan_id"),
        ({"email": "a@example.test", "plan_id": "p", "status": "active"}, "status"),
    ],
)
def test_invalid_bodies(
    server: Server, owner: Account, org: str, svc: str, body: dict[str, Any], field: str
) -> None:
    error = fails(
        lambda: client(server, owner).services.subscriptions.create(org, svc, body),
        400,
        "invalid_request",
    )
    assert field in error.details, error.details
    if field == "body":
        assert error.details["body"] == "give exactly one of user_id or email"


def test_roles(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    sso = client(server, owner)
    sub = sso.services.subscriptions.create(
        org, svc, {"email": person.email, "plan_id": plan["id"]}
    )
    member = client(server, add_user(server, owner.token, org))
    admin_account = add_user(server, owner.token, org, role="admin")
    admin = client(server, admin_account)
    outsider = client(server, add_user(server, owner.token, "acme"))
    body = {"email": admin_account.email, "plan_id": plan["id"]}
    fails(lambda: member.services.subscriptions.create(org, svc, body), 403, "forbidden")
    fails(lambda: member.services.subscriptions.cancel(org, svc, sub["id"]), 403, "forbidden")
    fails(lambda: outsider.services.subscriptions.list(org, svc), 404, "not_found")
    fails(
        lambda: SsoClient(server.url).services.subscriptions.list(org, svc), 401, "unauthenticated"
    )
    assert len(member.services.subscriptions.list(org, svc)["subscriptions"]) == 1
    assert admin.services.subscriptions.create(org, svc, body)["status"] == "active"
    admin.services.subscriptions.cancel(org, svc, sub["id"])


def test_subscription_writes_are_audited(
    server: Server, owner: Account, org: str, svc: str, plan: dict[str, Any], person: Account
) -> None:
    sso = client(server, owner)
    sub = sso.services.subscriptions.create(
        org, svc, {"email": person.email, "plan_id": plan["id"]}
    )
    sso.services.subscriptions.cancel(org, svc, sub["id"])
    sso.services.subscriptions.cancel(org, svc, sub["id"])
    with storage(server) as session:
        events = session.scalars(
            select(Event).where(Event.resource_id == sub["id"]).order_by(Event.id)
        ).all()
    assert [e.action for e in events] == ["subscription.create", "subscription.cancel"]
    assert events[1].summary["after"]["status"] == "cancelled"
