"""The domain rules of services, plans, subscriptions, API keys and SAML setup, called directly
against a real (migrated) SQLite database, without the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from idp import audit
from idp.auth import PERMISSIONS
from idp.domain import api_keys, plans, saml_setup, services, sp_sources, subscriptions
from idp.domain.errors import Conflict, Invalid, LimitReached, NotFound
from idp.store.db import Database
from idp.store.models import Account, Event, Organization, Service

ACTOR = audit.Actor("test")
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database."""
    database = Database(f"sqlite:///{tmp_path}/idp.db")
    database.migrate()
    yield database
    database.dispose()


def add_org(db: Database, slug: str) -> Organization:
    with db.write() as session:
        org = Organization(slug=slug, name=slug.title())
        session.add(org)
    return org


def add_account(db: Database, org: Organization, email: str, disabled: bool = False) -> Account:
    with db.write() as session:
        account = Account(organization_id=org.id, email=email, role="member", disabled=disabled)
        session.add(account)
    return account


def service_fields(slug: str) -> dict[str, Any]:
    return {"slug": slug, "name": slug, "service_type": "web", "redirect_uris": []}


def add_service(db: Database, org: Organization, slug: str = "app") -> Service:
    with db.write() as session:
        return services.create(session, ACTOR, org, service_fields(slug), max_services=10)


def add_plan(db: Database, org: Organization, svc: Service, name: str = "pro") -> str:
    fields = {"name": name, "price_cents": 900, "currency": "USD", "features": ["sso"]}
    with db.write() as session:
        plan = plans.create(session, ACTOR, org, svc, fields)
        assert plan.currency == "usd"
        return plan.id


def saml_fields(**extra: Any) -> sp_sources.Resolved:
    """Settings sent by hand (no preset, no SP metadata), resolved as the API does."""
    sent = {
        "enabled": True,
        "entity_id": "https://sp.example.com",
        "acs_url": "https://sp.example.com/acs",
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "mail"},
        "sign_assertions": True,
        "sign_response": False,
        **extra,
    }
    return sp_sources.resolve(sent, datetime.now(UTC), no_fetch, timedelta(days=1))


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"nothing is fetched without a metadata URL: {url}")


def test_slug_taken_and_service_limit(db: Database) -> None:
    org = add_org(db, "acme")
    with db.write() as session:
        services.create(session, ACTOR, org, service_fields("one"), max_services=2)
    with pytest.raises(Conflict, match="already taken"), db.write() as session:
        services.create(session, ACTOR, org, service_fields("one"), max_services=2)
    with db.write() as session:
        services.create(session, ACTOR, org, service_fields("two"), max_services=2)
    with pytest.raises(LimitReached, match="maximum of 2") as refused, db.write() as session:
        services.create(session, ACTOR, org, service_fields("three"), max_services=2)
    assert refused.value.code == "limit_reached"
    with db.read() as session:
        assert [svc.slug for svc in services.listing(session, org)] == ["one", "two"]
        actions = session.scalars(select(Event.action).where(Event.organization_id == org.id))
        assert list(actions) == ["service.create", "service.create"]


def test_plan_with_an_active_subscription_is_not_deleted(db: Database) -> None:
    org = add_org(db, "acme")
    account = add_account(db, org, "ann@example.com")
    svc = add_service(db, org)
    plan_id = add_plan(db, org, svc)
    with pytest.raises(Conflict, match="already taken"), db.write() as session:
        plans.create(
            session,
            ACTOR,
            org,
            svc,
            {"name": "pro", "price_cents": 1, "currency": "eur", "features": []},
        )
    with db.write() as session:
        sub = subscriptions.create(
            session, ACTOR, org, svc, {"email": " ANN@example.com ", "plan_id": plan_id}
        )
        assert subscriptions.subscription_json(sub)["user_id"] == account.id
    with pytest.raises(Conflict, match="already has an active"), db.write() as session:
        subscriptions.create(session, ACTOR, org, svc, {"user_id": account.id, "plan_id": plan_id})
    with pytest.raises(Conflict, match="1 active subscription"), db.write() as session:
        plans.remove(session, ACTOR, org, svc, plan_id)
    with db.write() as session:
        subscriptions.cancel(session, ACTOR, org, svc, sub.id)
        plans.remove(session, ACTOR, org, svc, plan_id)
    with db.read() as session:
        assert plans.listing(session, svc) == []


def test_an_account_of_another_organization_is_not_found(db: Database) -> None:
    org, other = add_org(db, "acme"), add_org(db, "other")
    stranger = add_account(db, other, "eve@example.com")
    svc = add_service(db, org)
    plan_id = add_plan(db, org, svc)
    for names in ({"user_id": stranger.id}, {"email": "eve@example.com"}):
        with pytest.raises(NotFound) as refused, db.write() as session:
            subscriptions.create(session, ACTOR, org, svc, {**names, "plan_id": plan_id})
        assert "other" not in refused.value.message
    with db.read() as session:
        assert subscriptions.listing(session, svc) == []


def test_a_disabled_account_gets_no_new_subscription(db: Database) -> None:
    org = add_org(db, "acme")
    account = add_account(db, org, "dan@example.com", disabled=True)
    svc = add_service(db, org)
    plan_id = add_plan(db, org, svc)
    with pytest.raises(Conflict, match="disabled"), db.write() as session:
        subscriptions.create(session, ACTOR, org, svc, {"user_id": account.id, "plan_id": plan_id})


def test_write_users_is_refused_at_key_creation(db: Database) -> None:
    assert "write:users" not in PERMISSIONS
    org = add_org(db, "acme")
    svc = add_service(db, org)
    fields = {"name": "backend", "permissions": ["read:users", "write:users"]}
    with pytest.raises(Invalid) as refused, db.write() as session:
        api_keys.create(session, ACTOR, org, svc, fields)
    assert refused.value.code == "invalid_request"
    assert refused.value.details is not None
    assert "no API key creates or changes accounts" in refused.value.details["permissions"]
    with db.write() as session:
        key, secret = api_keys.create(
            session, ACTOR, org, svc, {"name": "backend", "permissions": ["read:users"]}
        )
    assert secret.startswith(key.prefix)
    assert api_keys.created_json(key, secret)["key"] == secret
    with db.read() as session:
        assert api_keys.page(session, svc, 50, 0)[1] == 1


def test_saml_access_rules_round_trip(db: Database) -> None:
    org = add_org(db, "acme")
    svc = add_service(db, org)
    with pytest.raises(Conflict, match="configure it first"), db.read() as session:
        saml_setup.require_configured(session, svc)
    rules = {"allowed_groups": ["staff", "ops"], "require_subscription": True}
    with db.write() as session:
        assert saml_setup.configure(session, ACTOR, org, svc, saml_fields(**rules)) == "created"
    with db.read() as session:
        described = saml_setup.describe(session, svc)
    assert described["allowed_groups"] == ["staff", "ops"]
    assert described["require_subscription"] is True
    assert described["has_certificate"] is False
    with db.write() as session:
        again = saml_setup.configure(
            session, ACTOR, org, svc, saml_fields(**rules), unless_same=True
        )
        assert again is None
        assert saml_setup.configure(session, ACTOR, org, svc, saml_fields()) == "updated"
    with db.read() as session:
        config = saml_setup.describe(session, svc)
    assert config["allowed_groups"] == []
    assert config["require_subscription"] is False
    with pytest.raises(Invalid) as refused, db.write() as session:
        saml_setup.configure(session, ACTOR, org, svc, saml_fields(sign_assertions=False))
    assert refused.value.details is not None
    assert list(refused.value.details) == ["sign_response"]


def test_deleting_a_service_removes_what_it_owns(db: Database) -> None:
    org = add_org(db, "acme")
    account = add_account(db, org, "ann@example.com")
    svc = add_service(db, org)
    plan_id = add_plan(db, org, svc)
    with db.write() as session:
        subscriptions.create(session, ACTOR, org, svc, {"user_id": account.id, "plan_id": plan_id})
        api_keys.create(session, ACTOR, org, svc, {"name": "k", "permissions": ["read:service"]})
        saml_setup.configure(session, ACTOR, org, svc, saml_fields())
    with db.write() as session:
        services.remove(session, ACTOR, org, session.merge(svc))
    with db.read() as session:
        assert services.listing(session, org) == []
        assert plans.listing(session, svc) == []
        assert subscriptions.listing(session, svc) == []
        assert api_keys.page(session, svc, 50, 0) == ([], 0)
        with pytest.raises(NotFound):
            saml_setup.describe(session, svc)
