"""Organizations (tenants): created and deleted by operators, platform keys, the CLI and
provisioning, always here, with one audit record shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.domain.errors import Conflict, NotFound
from idp.domain.shapes import iso
from idp.store.models import Organization


def organization_json(org: Organization) -> dict[str, Any]:
    """Organization {id, slug, name, created_at}."""
    return {"id": org.id, "slug": org.slug, "name": org.name, "created_at": iso(org.created_at)}


def by_slug(session: Session, slug: str) -> Organization | None:
    """The organization with this slug, if any."""
    if "\x00" in slug:
        return None
    return session.scalar(select(Organization).where(Organization.slug == slug))


def find(session: Session, slug: str) -> Organization:
    """The organization with this slug, or NotFound."""
    org = by_slug(session, slug)
    if org is None:
        raise NotFound(f"Organization '{slug}' not found")
    return org


def listing(session: Session) -> list[Organization]:
    """Every organization, by slug."""
    return list(session.scalars(select(Organization).order_by(Organization.slug)))


def create(session: Session, actor: audit.Actor, slug: str, name: str) -> Organization:
    """A new organization (409 when the slug is taken; a racing create fails at commit)."""
    if by_slug(session, slug) is not None:
        raise Conflict(f"Organization slug '{slug}' is already taken")
    org = Organization(slug=slug, name=name.strip())
    session.add(org)
    session.flush()
    _record(session, actor, "organization.create", org, None, organization_json(org))
    return org


def rename(session: Session, actor: audit.Actor, org: Organization, name: str) -> bool:
    """Give the organization a new display name; False when it already has it."""
    name = name.strip()
    if org.name == name:
        return False
    before = organization_json(org)
    org.name = name
    _record(session, actor, "organization.update", org, before, organization_json(org))
    return True


def remove(session: Session, actor: audit.Actor, org: Organization) -> None:
    """Delete the organization and everything it owns (accounts, their tokens, services...).

    Its accounts' sign-ins end because the accounts no longer exist.
    """
    before = organization_json(org)
    session.delete(org)
    session.flush()
    _record(session, actor, "organization.delete", None, before, None, org_id=before["id"])


def _record(
    session: Session,
    actor: audit.Actor,
    action: str,
    org: Organization | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    org_id: str | None = None,
) -> None:
    org_id = org.id if org is not None else org_id
    audit.record(
        session,
        actor,
        action,
        "organization",
        org_id,
        organization_id=org_id,
        before=before,
        after=after,
    )
