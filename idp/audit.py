"""The audit trail: who changed what and when, plus login and SSO outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.store.models import Event


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an API key, the provisioner, the CLI, or the IdP itself."""

    type: str
    id: str | None = None


PROVISIONER = Actor("provision")
CLI = Actor("cli")
IDP = Actor("idp")


def record(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str | None,
    *,
    organization_id: str | None,
    service_id: str | None = None,
    user_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an event to the caller's transaction; summaries must hold no secret."""
    summary: dict[str, Any] = {}
    if before is not None:
        summary["before"] = before
    if after is not None:
        summary["after"] = after
    session.add(
        Event(
            organization_id=organization_id,
            service_id=service_id,
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            user_id=user_id,
            summary=summary,
        )
    )
