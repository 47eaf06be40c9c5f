"""Helpers for the admin API tests: a client per account, fresh services, direct storage access."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import Account, Server, unique_slug
from sqlalchemy.orm import Session

from idp.client import SsoApiError, SsoClient
from idp.store.db import Database


def client(server: Server, account: Account | str) -> SsoClient:
    """A Python client calling the server as this account (or with this token or API key)."""
    return SsoClient(server.url, token=account if isinstance(account, str) else account.token)


def service_payload(**fields: Any) -> dict[str, Any]:
    """A valid CreateService body; ``fields`` override the defaults."""
    return {
        "slug": unique_slug("svc"),
        "name": "Main Application",
        "service_type": "web",
        "redirect_uris": ["https://app.example.test/callback"],
        **fields,
    }


def new_service(sso: SsoClient, org: str, **fields: Any) -> dict[str, Any]:
    """Create a service; returns the Service."""
    service: dict[str, Any] = sso.services.create(org, service_payload(**fields))["service"]
    return service


def new_plan(sso: SsoClient, org: str, svc: str, **fields: Any) -> dict[str, Any]:
    """Create a plan; returns the Plan."""
    body = {"name": unique_slug("plan"), "price_cents": 999, "currency": "usd", "features": []}
    plan: dict[str, Any] = sso.services.plans.create(org, svc, {**body, **fields})["plan"]
    return plan


def new_key(sso: SsoClient, org: str, svc: str, *permissions: str) -> str:
    """Create an API key with these permissions; returns the key itself."""
    body = {"name": "test key", "permissions": list(permissions)}
    key: str = sso.services.api_keys.create(org, svc, body)["key"]
    return key


@contextmanager
def storage(server: Server) -> Iterator[Session]:
    """A write transaction on the server's own database (real storage, no mock)."""
    database = Database(server.env["IDP_DATABASE_URL"])
    try:
        with database.write() as session:
            yield session
    finally:
        database.dispose()


def fails(call: Callable[[], object], status: int, code: str) -> SsoApiError:
    """Run a client call that must fail with this status and error code; returns the error."""
    with pytest.raises(SsoApiError) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), caught.value
    return caught.value
