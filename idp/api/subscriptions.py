"""Subscriptions of members to a service's plans: at most one active per user and service."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict_on_duplicate, not_found
from idp.api.openapi import component, operation, ref
from idp.api.organizations import EMAIL
from idp.api.plans import find_plan
from idp.api.shapes import TIMESTAMP, iso
from idp.auth import membership
from idp.runtime import runtime
from idp.store.models import Organization, Subscription, User, utcnow

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


def subscription_json(sub: Subscription) -> dict[str, Any]:
    """Subscription {id, user_id, plan_id, status, created_at}."""
    return {
        "id": sub.id,
        "user_id": sub.user_id,
        "plan_id": sub.plan_id,
        "status": sub.status,
        "created_at": iso(sub.created_at),
    }


def _member(session: Session, org: Organization, payload: dict[str, Any]) -> User:
    """The user the body names, who must be a member of the organization (else 404)."""
    if "user_id" in payload:
        user = session.get(User, payload["user_id"])
    else:
        email = payload["email"].strip().lower()
        user = session.scalar(select(User).where(User.email == email))
    if user is None or membership(session, org.id, user.id) is None:
        raise not_found(f"No member of organization '{org.slug}' has that user_id or email")
    return user


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/subscriptions",
    summary="Subscribe a member to a plan (owner/admin, or a key with write:subscriptions)",
    ok=201,
    body="CreateSubscription",
    response=ref("Subscription"),
)
def create_subscription(org: str, svc: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """409 when the user already has an active subscription to this service.

    The insert's foreign-key check holds the plan row until commit, so a racing plan delete
    (which locks the plan before counting its subscriptions) either sees this subscription
    or removes the plan first (then this insert fails: 409).
    """
    with (
        conflict_on_duplicate("This user already has an active subscription to this service"),
        runtime().db.write() as session,
    ):
        organization, service = access.service(
            session, org, svc, Need.MANAGE, "write:subscriptions"
        )
        plan = find_plan(session, service, payload["plan_id"])
        user = _member(session, organization, payload)
        sub = Subscription(service_id=service.id, user_id=user.id, plan_id=plan.id)
        session.add(sub)
        session.flush()
        audit.record(
            session,
            access.actor(),
            "subscription.create",
            "subscription",
            sub.id,
            organization_id=organization.id,
            service_id=service.id,
            user_id=user.id,
            after=subscription_json(sub),
        )
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
        query = (
            select(Subscription)
            .where(Subscription.service_id == service.id)
            .order_by(Subscription.created_at, Subscription.id)
        )
        return {"subscriptions": [subscription_json(sub) for sub in session.scalars(query)]}


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
        sub = session.scalar(
            select(Subscription).where(
                Subscription.id == subscription_id, Subscription.service_id == service.id
            )
        )
        if sub is None:
            raise not_found(f"Subscription '{subscription_id}' not found in service '{svc}'")
        if sub.status == "active":
            before = subscription_json(sub)
            sub.status, sub.cancelled_at = "cancelled", utcnow()
            audit.record(
                session,
                access.actor(),
                "subscription.cancel",
                "subscription",
                sub.id,
                organization_id=organization.id,
                service_id=service.id,
                user_id=sub.user_id,
                before=before,
                after=subscription_json(sub),
            )
    runtime().store.announce_change(f"{org}/{svc}")
    return "", 204
