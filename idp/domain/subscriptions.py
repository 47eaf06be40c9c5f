"""Subscriptions of an organization's accounts to its services' plans.

An account has at most one active subscription per service; a disabled account gets no new
one. An account of another organization is never found (nor revealed) here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.domain import accounts, plans
from idp.domain.errors import Conflict, NotFound
from idp.domain.shapes import iso
from idp.store.models import Account, Organization, Service, Subscription, utcnow

ALREADY_ACTIVE = "This user already has an active subscription to this service"


def subscription_json(sub: Subscription) -> dict[str, Any]:
    """Subscription {id, user_id, plan_id, status, created_at}; user_id is the account id."""
    return {
        "id": sub.id,
        "user_id": sub.account_id,
        "plan_id": sub.plan_id,
        "status": sub.status,
        "created_at": iso(sub.created_at),
    }


def listing(session: Session, svc: Service) -> list[Subscription]:
    """The service's subscriptions, active and cancelled, oldest first."""
    query = (
        select(Subscription)
        .where(Subscription.service_id == svc.id)
        .order_by(Subscription.created_at, Subscription.id)
    )
    return list(session.scalars(query))


def create(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, fields: dict[str, Any]
) -> Subscription:
    """Subscribe the account ``fields`` names (``user_id`` or ``email``) to ``plan_id``.

    NotFound for an unknown plan or account (another organization's included); Conflict for a
    disabled account, or one with an active subscription to the service already. The insert's
    foreign-key check holds the plan row until commit, so a racing plan delete either sees
    this subscription or removes the plan first (then the insert fails).
    """
    plan = plans.find(session, svc, fields["plan_id"])
    account = _account(session, org, fields)
    if account.disabled:
        raise Conflict(f"Account '{account.email}' is disabled: it cannot get a new subscription")
    if _active(session, svc, account) is not None:
        raise Conflict(ALREADY_ACTIVE)
    sub = Subscription(service_id=svc.id, account_id=account.id, plan_id=plan.id)
    session.add(sub)
    session.flush()
    audit.record_in_service(
        session,
        actor,
        "subscription.create",
        "subscription",
        sub.id,
        org.id,
        svc.id,
        user_id=sub.account_id,
        after=subscription_json(sub),
    )
    return sub


def cancel(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, subscription_id: str
) -> Subscription:
    """Cancel a subscription of the service (NotFound if none); cancelling again does nothing."""
    sub = session.scalar(
        select(Subscription).where(
            Subscription.id == subscription_id, Subscription.service_id == svc.id
        )
    )
    if sub is None:
        raise NotFound(f"Subscription '{subscription_id}' not found in service '{svc.slug}'")
    if sub.status == "active":
        before = subscription_json(sub)
        sub.status, sub.cancelled_at = "cancelled", utcnow()
        audit.record_in_service(
            session,
            actor,
            "subscription.cancel",
            "subscription",
            sub.id,
            org.id,
            svc.id,
            user_id=sub.account_id,
            before=before,
            after=subscription_json(sub),
        )
    return sub


def _account(session: Session, org: Organization, fields: dict[str, Any]) -> Account:
    """The organization's account named by ``user_id`` or ``email``, else NotFound."""
    if "user_id" in fields:
        return accounts.find(session, org, fields["user_id"])
    account = accounts.by_email(session, org.id, fields["email"])
    if account is None:
        raise NotFound(f"No user with that email in organization '{org.slug}'")
    return account


def _active(session: Session, svc: Service, account: Account) -> Subscription | None:
    return session.scalar(
        select(Subscription).where(
            Subscription.service_id == svc.id,
            Subscription.account_id == account.id,
            Subscription.status == "active",
        )
    )
