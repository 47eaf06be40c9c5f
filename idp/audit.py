"""The audit trail: who changed what and when, plus login and SSO outcomes.

Admin changes are written in the transaction that makes them. Sign-in and SSO outcomes,
which sit on the hot path, are queued in Redis with the session write they accompany and
moved to the database in batches (``flush``); readers of the trail flush first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from idp.runtime import Runtime
from idp.store.models import Event, utcnow

log = logging.getLogger(__name__)

FLUSH_BATCH = 500
FLUSH_AT_BACKLOG = 200
FLUSH_EVERY_S = 2.0


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


def record_in_service(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str,
    organization_id: str,
    service_id: str,
    *,
    user_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record a change to something of one service (the service itself, a plan, a key...)."""
    record(
        session,
        actor,
        action,
        resource_type,
        resource_id,
        organization_id=organization_id,
        service_id=service_id,
        user_id=user_id,
        before=before,
        after=after,
    )


def queued(
    actor: Actor,
    action: str,
    resource_type: str,
    *,
    organization_id: str | None,
    service_id: str | None = None,
    user_id: str | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event to queue in Redis (``Store.queue_event`` or with ``Store.save_session``)."""
    return {
        "organization_id": organization_id,
        "service_id": service_id,
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "resource_type": resource_type,
        "resource_id": None,
        "user_id": user_id,
        "summary": {"after": after} if after is not None else {},
        "created_at": utcnow().isoformat(),
    }


_last_flush = time.monotonic()
_flush_guard = threading.Lock()


def flush(rt: Runtime) -> int:
    """Move queued events into the database, oldest first; returns how many were moved.

    One worker at a time (a Redis lock); an event leaves the queue only after its batch
    is committed, so a crash in between writes it again rather than losing it.
    """
    global _last_flush
    _last_flush = time.monotonic()
    lock = rt.store.event_flush_lock()
    if not lock.acquire():
        return 0
    moved = 0
    try:
        while batch := rt.store.queued_events(FLUSH_BATCH):
            for event in batch:
                event["created_at"] = datetime.fromisoformat(event["created_at"])
            with rt.db.write() as session:
                session.execute(insert(Event), batch)
            rt.store.drop_queued_events(len(batch))
            moved += len(batch)
    finally:
        lock.release()
    return moved


def flush_when_due(rt: Runtime, backlog: int) -> None:
    """On the hot path: flush when the queue is long or this worker has not for a while."""
    if backlog >= FLUSH_AT_BACKLOG or time.monotonic() - _last_flush >= FLUSH_EVERY_S:
        try_flush(rt)


def try_flush(rt: Runtime) -> None:
    """Flush unless this worker is already flushing; a failure leaves the events queued."""
    if not _flush_guard.acquire(blocking=False):
        return
    try:
        flush(rt)
    except Exception:  # Redis or the database is down: the next flush retries
        log.exception("could not move queued audit events to the database")
    finally:
        _flush_guard.release()
