"""Services of an organization: create within the service limit, change, delete, sign-in stats.

Deleting a service removes its plans, subscriptions, API keys, SAML configuration and
certificates with it (the database cascades).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.domain.errors import Conflict, LimitReached
from idp.domain.shapes import iso
from idp.store.models import Event, Organization, Service, utcnow

SERVICE_TYPES = ("web", "mobile", "cli", "api")
PROVIDERS = ("github", "google", "microsoft")
EDITABLE = ("name", "github_scopes", "google_scopes", "microsoft_scopes", "redirect_uris")
SSO_SUCCESS = "sso.success"


def service_json(svc: Service) -> dict[str, Any]:
    """Service {id, organization_id, slug, name, service_type, client_id, redirect_uris, ...}."""
    return {
        "id": svc.id,
        "organization_id": svc.organization_id,
        "slug": svc.slug,
        "name": svc.name,
        "service_type": svc.service_type,
        "client_id": svc.client_id,
        "redirect_uris": list(svc.redirect_uris),
        "created_at": iso(svc.created_at),
        "updated_at": iso(svc.updated_at),
    }


def scopes(svc: Service, provider: str) -> list[str]:
    """The scopes the service asks of one identity provider."""
    granted: list[str] = getattr(svc, f"{provider}_scopes")
    return list(granted)


def provider_grants(svc: Service) -> list[dict[str, Any]]:
    """[{provider, scopes}], one per provider the service asks scopes of."""
    return [{"provider": p, "scopes": scopes(svc, p)} for p in PROVIDERS if scopes(svc, p)]


def by_slug(session: Session, org: Organization, slug: str) -> Service | None:
    """The organization's service with this slug, if any."""
    return session.scalar(
        select(Service).where(Service.organization_id == org.id, Service.slug == slug)
    )


def listing(session: Session, org: Organization) -> list[Service]:
    """The organization's services, oldest first."""
    query = (
        select(Service)
        .where(Service.organization_id == org.id)
        .order_by(Service.created_at, Service.slug)
    )
    return list(session.scalars(query))


def create(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    fields: dict[str, Any],
    max_services: int,
) -> Service:
    """A new service from CreateService fields; records service.create.

    Slug taken → Conflict; limit used up → LimitReached. The organization row stays locked
    until commit (SELECT ... FOR UPDATE on PostgreSQL; SQLite takes its write lock at BEGIN),
    so racing creates cannot exceed the limit.
    """
    session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())
    slugs = set(session.scalars(select(Service.slug).where(Service.organization_id == org.id)))
    if fields["slug"] in slugs:
        raise Conflict(f"Service slug '{fields['slug']}' is already taken in '{org.slug}'")
    if len(slugs) >= max_services:
        raise LimitReached(
            f"Organization '{org.slug}' already has the maximum of {max_services} services"
        )
    now = utcnow()
    svc = Service(
        organization_id=org.id,
        slug=fields["slug"],
        service_type=fields["service_type"],
        client_id=secrets.token_hex(16),
        created_at=now,
        updated_at=now,
    )
    _apply(svc, fields)
    session.add(svc)
    session.flush()
    audit.record_in_service(
        session, actor, "service.create", "service", svc.id, org.id, svc.id, after=_audit_json(svc)
    )
    return svc


def differences(svc: Service, fields: dict[str, Any]) -> dict[str, Any]:
    """The editable fields whose given value differs from the service's."""
    return {
        name: value
        for name, value in fields.items()
        if name in EDITABLE and getattr(svc, name) != value
    }


def update(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    svc: Service,
    fields: dict[str, Any],
) -> None:
    """Change the editable fields present in ``fields``; records service.update."""
    before = _audit_json(svc)
    _apply(svc, fields)
    session.flush()
    audit.record_in_service(
        session,
        actor,
        "service.update",
        "service",
        svc.id,
        org.id,
        svc.id,
        before=before,
        after=_audit_json(svc),
    )


def remove(session: Session, actor: audit.Actor, org: Organization, svc: Service) -> None:
    """Delete the service with all it owns; records service.delete."""
    audit.record_in_service(
        session, actor, "service.delete", "service", svc.id, org.id, svc.id, before=_audit_json(svc)
    )
    session.delete(svc)


def sign_in_stats(session: Session, svc: Service) -> dict[str, Any]:
    """{logins_total, logins_24h, unique_users_30d, last_login_at} over sso.success, one query."""
    now = utcnow()
    day, month = now - timedelta(hours=24), now - timedelta(days=30)
    total, last_day, users, last = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((Event.created_at >= day, 1), else_=0)), 0),
            func.count(distinct(case((Event.created_at >= month, Event.user_id)))),
            func.max(Event.created_at),
        ).where(Event.service_id == svc.id, Event.action == SSO_SUCCESS)
    ).one()
    return {
        "logins_total": total,
        "logins_24h": int(last_day),
        "unique_users_30d": users,
        "last_login_at": iso(last),
    }


def _apply(svc: Service, fields: dict[str, Any]) -> None:
    """Copy the given editable fields onto the service."""
    for name in EDITABLE:
        if name in fields:
            setattr(svc, name, fields[name])


def _audit_json(svc: Service) -> dict[str, Any]:
    """The service plus its provider scopes, for the audit trail."""
    return {**service_json(svc), **{f"{p}_scopes": scopes(svc, p) for p in PROVIDERS}}
