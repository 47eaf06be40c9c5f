"""Subscription plans of a service: names unique per service, no deleting while in use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.domain.errors import Conflict, NotFound
from idp.domain.shapes import iso
from idp.store.models import Organization, Plan, Service, Subscription, utcnow


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


def listing(session: Session, svc: Service) -> list[Plan]:
    """The plans of a service, oldest first."""
    query = select(Plan).where(Plan.service_id == svc.id).order_by(Plan.created_at, Plan.id)
    return list(session.scalars(query))


def find(session: Session, svc: Service, plan_id: str, *, lock: bool = False) -> Plan:
    """A plan of this service, or NotFound; ``lock`` holds its row until the transaction ends."""
    query = select(Plan).where(Plan.id == plan_id, Plan.service_id == svc.id)
    plan = session.scalar(query.with_for_update() if lock else query)
    if plan is None:
        raise NotFound(f"Plan '{plan_id}' not found in service '{svc.slug}'")
    return plan


def active_counts(session: Session, svc: Service) -> dict[str, int]:
    """Active subscriptions per plan id of a service."""
    query = (
        select(Subscription.plan_id, func.count())
        .where(Subscription.service_id == svc.id, Subscription.status == "active")
        .group_by(Subscription.plan_id)
    )
    return {plan_id: count for plan_id, count in session.execute(query)}


def active_count(session: Session, plan: Plan) -> int:
    """How many subscriptions to the plan are active."""
    query = select(func.count()).where(
        Subscription.plan_id == plan.id, Subscription.status == "active"
    )
    return session.scalar(query) or 0


def create(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, fields: dict[str, Any]
) -> Plan:
    """A new plan from CreatePlan fields (name taken → Conflict); records plan.create."""
    _check_name(session, svc, fields.get("name"), None)
    now = utcnow()
    plan = Plan(service_id=svc.id, created_at=now, updated_at=now)
    _apply(plan, fields)
    session.add(plan)
    session.flush()
    audit.record_in_service(
        session, actor, "plan.create", "plan", plan.id, org.id, svc.id, after=plan_json(plan)
    )
    return plan


def update(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    plan_id: str,
    fields: dict[str, Any],
) -> Plan:
    """Change the fields present (name taken → Conflict); records plan.update."""
    plan = find(session, svc, plan_id)
    _check_name(session, svc, fields.get("name"), plan)
    before = plan_json(plan)
    _apply(plan, fields)
    session.flush()
    audit.record_in_service(
        session,
        actor,
        "plan.update",
        "plan",
        plan.id,
        org.id,
        svc.id,
        before=before,
        after=plan_json(plan),
    )
    return plan


def remove(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, plan_id: str
) -> None:
    """Delete a plan; Conflict while any subscription to it is active.

    The plan row stays locked until commit, so no subscription to it starts meanwhile.
    """
    plan = find(session, svc, plan_id, lock=True)
    active = active_count(session, plan)
    if active:
        raise Conflict(
            f"Plan '{plan.name}' has {active} active subscription(s); "
            "cancel or move them before deleting it"
        )
    audit.record_in_service(
        session, actor, "plan.delete", "plan", plan.id, org.id, svc.id, before=plan_json(plan)
    )
    session.delete(plan)


def _check_name(session: Session, svc: Service, name: str | None, plan: Plan | None) -> None:
    """Conflict when another plan of the service has this name."""
    if name is None:
        return
    query = select(Plan.id).where(Plan.service_id == svc.id, Plan.name == name)
    holder = session.scalar(query)
    if holder is not None and (plan is None or holder != plan.id):
        raise Conflict(name_taken(name))


def name_taken(name: str | None) -> str:
    """The message for a plan name another plan of the service has."""
    return f"Plan name '{name}' is already taken in this service"


def _apply(plan: Plan, fields: dict[str, Any]) -> None:
    """Copy the given fields onto the plan, normalized (currency lower-case)."""
    if "name" in fields:
        plan.name = fields["name"]
    if "price_cents" in fields:
        plan.price_cents = int(fields["price_cents"])
    if "currency" in fields:
        plan.currency = fields["currency"].lower()
    if "features" in fields:
        plan.features = list(fields["features"])
