"""API keys of a service: the key is shown once at creation and stored only as its digest."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.auth import PERMISSIONS, digest, new_api_key
from idp.domain.errors import Invalid, NotFound
from idp.domain.shapes import iso
from idp.store.models import ApiKey, Organization, Service, utcnow

MAX_EXPIRY_DAYS = 3650
REFUSED = {"write:users": "no API key creates or changes accounts"}


def api_key_json(key: ApiKey) -> dict[str, Any]:
    """ApiKey {id, prefix, name, permissions, expires_at, last_used_at, created_at}: no secret."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "permissions": list(key.permissions),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "created_at": iso(key.created_at),
    }


def created_json(key: ApiKey, secret: str) -> dict[str, Any]:
    """The answer to a creation: the key's fields (no last_used_at) and, this once, the key."""
    created = api_key_json(key)
    del created["last_used_at"]
    return {**created, "key": secret}


def permission_reason() -> str:
    """Why a permission is refused: which ones exist, and why the refused ones are not."""
    refused = "; ".join(f"{name} is refused: {why}" for name, why in REFUSED.items())
    return f"must be one of: {', '.join(PERMISSIONS)} ({refused})"


def check_permissions(permissions: list[str]) -> None:
    """Invalid (details under ``permissions``) for a refused or unknown permission."""
    for name in permissions:
        if name in REFUSED:
            raise Invalid(
                f"API keys cannot have the '{name}' permission",
                {"permissions": f"{name} is refused: {REFUSED[name]}"},
            )
        if name not in PERMISSIONS:
            raise Invalid("Unknown permission", {"permissions": permission_reason()})


def create(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, fields: dict[str, Any]
) -> tuple[ApiKey, str]:
    """A new key from CreateApiKey fields, and the key itself (returned here only).

    Only its SHA-256 digest is stored; the audit trail records neither.
    """
    check_permissions(list(fields["permissions"]))
    secret, prefix = new_api_key()
    now = utcnow()
    key = ApiKey(
        service_id=svc.id,
        name=fields["name"],
        prefix=prefix,
        key_hash=digest(secret),
        permissions=list(fields["permissions"]),
        expires_at=_expiry(now, fields.get("expires_in_days")),
        created_at=now,
    )
    session.add(key)
    session.flush()
    audit.record_in_service(
        session, actor, "api_key.create", "api_key", key.id, org.id, svc.id, after=api_key_json(key)
    )
    return key, secret


def find(session: Session, svc: Service, key_id: str) -> ApiKey:
    """A key of this service, or NotFound."""
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.service_id == svc.id))
    if key is None:
        raise NotFound(f"API key '{key_id}' not found in service '{svc.slug}'")
    return key


def page(session: Session, svc: Service, limit: int, offset: int) -> tuple[list[ApiKey], int]:
    """One page of the service's keys, newest first, and how many it has in all."""
    of_service = ApiKey.service_id == svc.id
    total = session.scalar(select(func.count()).select_from(ApiKey).where(of_service))
    keys = session.scalars(
        select(ApiKey)
        .where(of_service)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
        .limit(limit)
        .offset(offset)
    )
    return list(keys), total or 0


def remove(
    session: Session, actor: audit.Actor, org: Organization, svc: Service, key_id: str
) -> None:
    """Delete a key of the service (NotFound if none): refused from its next use on."""
    key = find(session, svc, key_id)
    audit.record_in_service(
        session,
        actor,
        "api_key.delete",
        "api_key",
        key.id,
        org.id,
        svc.id,
        before=api_key_json(key),
    )
    session.delete(key)


def _expiry(now: datetime, days: int | None) -> datetime | None:
    """When a key made now for ``days`` days expires (None: never); Invalid beyond the range."""
    if days is None:
        return None
    if not 1 <= int(days) <= MAX_EXPIRY_DAYS:
        raise Invalid("Invalid expiry", {"expires_in_days": f"must be from 1 to {MAX_EXPIRY_DAYS}"})
    return now + timedelta(days=int(days))
