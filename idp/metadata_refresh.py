"""Re-reading SP metadata URLs: in the background of every server process, and from the CLI.

Every process wakes up now and then; one at a time across every host (a Redis lock) reads the
metadata of each service that is due again (``sp_sources.next_refresh``), merges it with what
the admin sent exactly as at configure time, and stores the result when it changed. A failed
read, or metadata the rules refuse, keeps the last good configuration and records the reason
(``metadata_error``), to try again later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from idp import audit
from idp.api.errors import ApiError
from idp.api.saml import resolve_settings
from idp.domain import saml_setup
from idp.domain.errors import DomainError
from idp.domain.sp_sources import RETRY_AFTER_FAILURE
from idp.metrics import METADATA_REFRESHES
from idp.runtime import Runtime
from idp.sessions import PREFIX
from idp.store.models import Organization, SamlConfig, Service

log = logging.getLogger(__name__)

LOCK = PREFIX + "metadata-refresh:lock"
LOCK_TIMEOUT_S = 300
UPDATED, UNCHANGED, FAILURE = "updated", "unchanged", "failure"

_started_in: int | None = None  # the pid of the process whose refresher runs
_start_lock = threading.Lock()


def refresh(rt: Runtime, *, every: bool = False, wait_s: float = 0) -> list[tuple[str, str]] | None:
    """Read the metadata of every service that is due (``every``: of every service with a
    metadata URL); returns ("org/svc", outcome) pairs, or None when another process held the
    lock for longer than ``wait_s``."""
    lock = rt.store.redis.lock(
        LOCK, timeout=LOCK_TIMEOUT_S, blocking=wait_s > 0, blocking_timeout=wait_s or None
    )
    if not lock.acquire():
        return None
    try:
        return [(scope, _guarded(rt, service_id)) for scope, service_id in _due(rt, every)]
    finally:
        lock.release()


def _guarded(rt: Runtime, service_id: str) -> str:
    """One service's refresh, whatever goes wrong in it: one SP's metadata never stops the
    refresh of the others."""
    try:
        return _refresh_one(rt, service_id)
    except Exception as exc:
        log.exception("SP metadata of service %s could not be refreshed", service_id)
        _failed(rt, service_id, f"the metadata could not be used ({exc.__class__.__name__})")
        return FAILURE


def _due(rt: Runtime, every: bool) -> list[tuple[str, str]]:
    query = (
        select(Organization.slug, Service.slug, SamlConfig.service_id)
        .join(Service, Service.id == SamlConfig.service_id)
        .join(Organization, Organization.id == Service.organization_id)
        .where(SamlConfig.sp_metadata_url.is_not(None))
    )
    if not every:
        query = query.where(SamlConfig.metadata_next_refresh_at <= datetime.now(UTC))
    with rt.db.read() as session:
        return [(f"{org}/{svc}", service_id) for org, svc, service_id in session.execute(query)]


def _refresh_one(rt: Runtime, service_id: str) -> str:
    """Read one service's metadata again and store what changed; the outcome."""
    with rt.db.read() as session:
        config = session.get(SamlConfig, service_id)
        sent = dict(config.sent) if config is not None else None
    if not sent:
        return UNCHANGED
    try:
        resolved = resolve_settings(sent, rt.settings)
    except (DomainError, ApiError) as exc:
        _failed(rt, service_id, _reason(exc))
        return FAILURE
    with rt.db.write() as session:
        service = session.get(Service, service_id)
        org = session.get(Organization, service.organization_id) if service else None
        if service is None or org is None or session.get(SamlConfig, service_id) is None:
            return UNCHANGED  # deleted meanwhile
        changed = saml_setup.configure(session, audit.IDP, org, service, resolved, unless_same=True)
        if changed is None:
            read_at, next_at = resolved.refreshed_at, resolved.next_refresh_at
            saml_setup.metadata_read(session, service, read_at, next_at)
    if changed is not None:
        rt.store.announce_change(f"{org.slug}/{service.slug}")
    METADATA_REFRESHES.labels(UPDATED if changed else UNCHANGED).inc()
    return UPDATED if changed else UNCHANGED


def _failed(rt: Runtime, service_id: str, reason: str) -> None:
    retry = min(RETRY_AFTER_FAILURE, timedelta(seconds=rt.settings.metadata_refresh_s))
    with rt.db.write() as session:
        service = session.get(Service, service_id)
        if service is not None and session.get(SamlConfig, service_id) is not None:
            saml_setup.metadata_failed(session, service, reason, datetime.now(UTC) + retry)
    METADATA_REFRESHES.labels(FAILURE).inc()
    log.warning("SP metadata of service %s not refreshed: %s", service_id, reason)


def _reason(exc: DomainError | ApiError) -> str:
    details = exc.details or {}
    parts = [f"{field}: {why}" for field, why in details.items()]
    return "; ".join(parts) or exc.message


def start(rt: Runtime) -> None:
    """Run the refresher in this process (once per process: after a fork, again)."""
    global _started_in
    with _start_lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
    thread = threading.Thread(target=_loop, args=(rt,), name="metadata-refresh", daemon=True)
    thread.start()


def _loop(rt: Runtime) -> None:
    pause = max(1.0, min(60.0, rt.settings.metadata_refresh_s / 2))
    while True:
        time.sleep(pause)
        try:
            refresh(rt)
        except Exception:  # the database or Redis is down: the next round tries again
            log.exception("SP metadata refresh round failed")
