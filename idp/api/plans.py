"""Subscription plans of a service, each answered with its count of active subscriptions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict, conflict_on_duplicate, not_found
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP, iso, text
from idp.runtime import runtime
from idp.store.models import Plan, Service, Subscription, utcnow

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


def plan_json(plan: Plan) -> dict[str, Any]:
    """Plan {id, service_id, name, price_cents, currency, features, created_at, updated_at}."""
    return {
        "id": plan.id,
        "service_id": plan.service_id,
        "name": plan.name,
        "price_cents": plan.price_cents,
        "currency": plan.currency,
        "features": list(plan.features),
        "created_at": iso(plan.created_at),
        "updated_at": iso(plan.updated_at),
    }


def service_plans(session: Session, service_id: str) -> list[Plan]:
    """The plans of a service, oldest first."""
    query = select(Plan).where(Plan.service_id == service_id).order_by(Plan.created_at, Plan.id)
    return list(session.scalars(query))


def find_plan(session: Session, svc: Service, plan_id: str, *, lock: bool = False) -> Plan:
    """A plan of this service, or 404; ``lock`` holds its row until the transaction ends."""
    query = select(Plan).where(Plan.id == plan_id, Plan.service_id == svc.id)
    plan = session.scalar(query.with_for_update() if lock else query)
    if plan is None:
        raise not_found(f"Plan '{plan_id}' not found in service '{svc.slug}'")
    return plan


def _active_counts(session: Session, service_id: str) -> dict[str, int]:
    """Active subscriptions per plan id of a service."""
    query = (
        select(Subscription.plan_id, func.count())
        .where(Subscription.service_id == service_id, Subscription.status == "active")
        .group_by(Subscription.plan_id)
    )
    return {plan_id: count for plan_id, count in session.execute(query)}


def _plan_response(session: Session, plan: Plan) -> dict[str, Any]:
    count = _active_counts(session, plan.service_id).get(plan.id, 0)
    return {"plan": plan_json(plan), "subscription_count": count}


def _apply(plan: Plan, payload: dict[str, Any]) -> None:
    """Copy the given fields onto the plan, normalized."""
    if "name" in payload:
        plan.name = payload["name"]
    if "price_cents" in payload:
        plan.price_cents = int(payload["price_cents"])
    if "currency" in payload:
        plan.currency = payload["currency"].lower()
    if "features" in payload:
        plan.features = list(payload["features"])


def _name_taken(payload: dict[str, Any]) -> str:
    return f"Plan name '{payload.get('name')}' is already taken in this service"


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
    with conflict_on_duplicate(_name_taken(payload)), runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        now = utcnow()
        plan = Plan(service_id=service.id, created_at=now, updated_at=now)
        _apply(plan, payload)
        session.add(plan)
        session.flush()
        audit.record(
            session,
            access.actor(),
            "plan.create",
            "plan",
            plan.id,
            organization_id=organization.id,
            service_id=service.id,
            after=plan_json(plan),
        )
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
        counts = _active_counts(session, service.id)
        return [
            {"plan": plan_json(plan), "subscription_count": counts.get(plan.id, 0)}
            for plan in service_plans(session, service.id)
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
    with conflict_on_duplicate(_name_taken(payload)), runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE, "write:service")
        plan = find_plan(session, service, plan_id)
        before = plan_json(plan)
        _apply(plan, payload)
        session.flush()
        audit.record(
            session,
            access.actor(),
            "plan.update",
            "plan",
            plan.id,
            organization_id=organization.id,
            service_id=service.id,
            before=before,
            after=plan_json(plan),
        )
        response = _plan_response(session, plan)
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
        plan = find_plan(session, service, plan_id, lock=True)
        active = _active_counts(session, service.id).get(plan.id, 0)
        if active:
            raise conflict(
                f"Plan '{plan.name}' has {active} active subscription(s); "
                "cancel or move them before deleting it"
            )
        audit.record(
            session,
            access.actor(),
            "plan.delete",
            "plan",
            plan.id,
            organization_id=organization.id,
            service_id=service.id,
            before=plan_json(plan),
        )
        session.delete(plan)
    return "", 204
