"""Subscriptions of an organization's accounts to a service's plans (one active per service)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp.api import access
from idp.api.access import Need
from idp.api.accounts import EMAIL
from idp.api.errors import conflict_on_duplicate
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP
from idp.domain import subscriptions
from idp.domain.subscriptions import ALREADY_ACTIVE, subscription_json
from idp.runtime import runtime

bp = Blueprint("subscriptions", __name__)

ID = {
    "type": "string",
    "maxLength": 36,
    "pattern": r"^[^\s\x00-\x1f\x7f]+$",
    "x-reason": "must be an id: no spaces or control characters",
}
STATUSES = ("active", "cancelled")

component(
    "CreateSubscription",
    {
        "type": "object",
        "required": ["plan_id"],
        "additionalProperties": False,
        "properties": {"user_id": ID, "email": EMAIL, "plan_id": ID},
        "oneOf": [{"required": ["user_id"]}, {"required": ["email"]}],
        "x-reason": "give exactly one of user_id or email",
    },
)
component(
    "Subscription",
    {
        "type": "object",
        "required": ["id", "user_id", "plan_id", "status", "created_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "user_id": {"type": "string"},
            "plan_id": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "created_at": TIMESTAMP,
        },
    },
)
component(
    "SubscriptionList",
    {
        "type": "object",
        "required": ["subscriptions"],
        "additionalProperties": False,
        "properties": {"subscriptions": {"type": "array", "items": ref("Subscription")}},
    },
)


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/subscriptions",
    summary="Subscribe an account to a plan (owner/admin, or a key with write:subscriptions)",
    ok=201,
    body="CreateSubscription",
    response=ref("Subscription"),
)
def create_subscription(org: str, svc: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """404 for an account of no or another organization; 409 when the account is disabled or
    already has an active subscription to this service (a racing insert too, at commit)."""
    with conflict_on_duplicate(ALREADY_ACTIVE), runtime().db.write() as session:
        organization, service = access.service(
            session, org, svc, Need.MANAGE, "write:subscriptions"
        )
        sub = subscriptions.create(session, access.actor(), organization, service, payload)
    runtime().store.announce_change(f"{org}/{svc}")
    return subscription_json(sub), 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/subscriptions",
    summary="List the subscriptions of a service, active and cancelled",
    response=ref("SubscriptionList"),
)
def list_subscriptions(org: str, svc: str) -> dict[str, Any]:
    """Any member, or a key of this service with read:subscriptions."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:subscriptions")
        listed = subscriptions.listing(session, service)
        return {"subscriptions": [subscription_json(sub) for sub in listed]}


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/services/<svc>/subscriptions/<subscription_id>",
    summary="Cancel a subscription (owner/admin, or a key with write:subscriptions)",
    ok=204,
)
def cancel_subscription(org: str, svc: str, subscription_id: str) -> tuple[str, int]:
    """The subscription stays listed with status "cancelled"; cancelling again changes nothing."""
    with runtime().db.write() as session:
        organization, service = access.service(
            session, org, svc, Need.MANAGE, "write:subscriptions"
        )
        subscriptions.cancel(session, access.actor(), organization, service, subscription_id)
    runtime().store.announce_change(f"{org}/{svc}")
    return "", 204
