"""Subscription plans of a service, each answered with its count of active subscriptions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict_on_duplicate
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP, text
from idp.domain import plans
from idp.domain.plans import name_taken, plan_json
from idp.runtime import runtime
from idp.store.models import Plan

bp = Blueprint("plans", __name__)

MAX_PRICE_CENTS = 2**31 - 1  # the largest value a 32-bit INTEGER column holds
PLAN_FIELDS = {
    "name": text(100),
    "price_cents": {"type": "integer", "minimum": 0, "maximum": MAX_PRICE_CENTS},
    "currency": {
        "type": "string",
        "pattern": "^[A-Za-z]{3}$",
        "x-reason": "must be a 3-letter ISO 4217 currency code such as usd",
    },
    "features": {
        "type": "array",
        "maxItems": 100,
        "uniqueItems": True,
        "items": text(200),
    },
}

component(
    "CreatePlan",
    {
        "type": "object",
        "required": ["name", "price_cents", "currency", "features"],
        "additionalProperties": False,
        "properties": PLAN_FIELDS,
    },
)
component(
    "UpdatePlan",
    {"type": "object", "additionalProperties": False, "properties": PLAN_FIELDS},
)
component(
    "Plan",
    {
        "type": "object",
        "required": [
            "id",
            "service_id",
            "name",
            "price_cents",
            "currency",
            "features",
            "created_at",
            "updated_at",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "service_id": {"type": "string"},
            "name": {"type": "string"},
            "price_cents": {"type": "integer", "minimum": 0},
            "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
            "features": {"type": "array", "items": {"type": "string"}},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
)
component(
    "PlanResponse",
    {
        "type": "object",
        "required": ["plan", "subscription_count"],
        "additionalProperties": False,
        "properties": {
            "plan": ref("Plan"),
            "subscription_count": {"type": "integer", "minimum": 0},
        },
    },
)


def _response(session: Session, plan: Plan) -> dict[str, Any]:
    """PlanResponse {plan, subscription_count} (active subscriptions)."""
    return {"plan": plan_json(plan), "subscription_count": plans.active_count(session, plan)}


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/plans",
    summary="Create a plan (owner/admin, or a key with write:service)",
    ok=201,
    body="CreatePlan",
    response=ref("PlanResponse"),
)
def create_plan(org: str, svc: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Plan names are unique per service (409)."""
    with conflict_on_duplicate(name_taken(payload["name"])), runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        plan = plans.create(session, access.actor(), organization, service, payload)
    return {"plan": plan_json(plan), "subscription_count": 0}, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/plans",
    summary="List the plans of a service with their active subscription counts",
    response={"type": "array", "items": ref("PlanResponse")},
)
def list_plans(org: str, svc: str) -> list[dict[str, Any]]:
    """Any member, or a key with read:service."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ, "read:service")
        counts = plans.active_counts(session, service)
        return [
            {"plan": plan_json(plan), "subscription_count": counts.get(plan.id, 0)}
            for plan in plans.listing(session, service)
        ]


@operation(
    bp,
    "PATCH",
    "/organizations/<org>/services/<svc>/plans/<plan_id>",
    summary="Update a plan's given fields (owner/admin, or a key with write:service)",
    body="UpdatePlan",
    response=ref("PlanResponse"),
)
def update_plan(org: str, svc: str, plan_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Only the fields present in the body change."""
    with conflict_on_duplicate(name_taken(payload.get("name"))), runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        plan = plans.update(session, access.actor(), organization, service, plan_id, payload)
        response = _response(session, plan)
    runtime().store.announce_change(f"{org}/{svc}")
    return response


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/services/<svc>/plans/<plan_id>",
    summary="Delete a plan that has no active subscriptions (owner/admin, or write:service)",
    ok=204,
)
def delete_plan(org: str, svc: str, plan_id: str) -> tuple[str, int]:
    """409 while any subscription to the plan is active; the plan row stays locked meanwhile."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        plans.remove(session, access.actor(), organization, service, plan_id)
    return "", 204
