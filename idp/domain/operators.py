"""Operators and platform API keys: the platform's own principals, above every organization."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.auth import Passwords, digest, new_platform_key
from idp.domain.errors import NotFound
from idp.domain.shapes import iso
from idp.store.models import Operator, PlatformKey


def by_email(session: Session, email: str) -> Operator | None:
    """The operator with this (normalized) email, if any."""
    if "\x00" in email:
        return None
    return session.scalar(select(Operator).where(Operator.email == email))


def ensure(session: Session, email: str, password: str, passwords: Passwords) -> bool:
    """Create the operator unless one has this email; True when created.

    An existing operator keeps its password: bootstrapping again never resets it.
    """
    if by_email(session, email) is not None:
        return False
    operator = Operator(email=email, password_hash=passwords.hash(password))
    session.add(operator)
    session.flush()
    audit.record(
        session,
        audit.CLI,
        "operator.create",
        "operator",
        operator.id,
        organization_id=None,
        after={"id": operator.id, "email": email},
    )
    return True


def platform_key_json(key: PlatformKey) -> dict[str, Any]:
    """PlatformKey {id, name, prefix, created_at, last_used_at} (never the key)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
    }


def create_platform_key(session: Session, name: str) -> tuple[PlatformKey, str]:
    """A new platform key; the full key is returned here and never again."""
    secret, prefix = new_platform_key()
    key = PlatformKey(name=name, prefix=prefix, key_hash=digest(secret))
    session.add(key)
    session.flush()
    audit.record(
        session,
        audit.CLI,
        "platform_key.create",
        "platform_key",
        key.id,
        organization_id=None,
        after=platform_key_json(key),
    )
    return key, secret


def platform_keys(session: Session) -> list[PlatformKey]:
    """Every platform key, oldest first."""
    return list(session.scalars(select(PlatformKey).order_by(PlatformKey.created_at)))


def delete_platform_key(session: Session, key_id: str) -> None:
    """Delete a platform key (it stops working at once)."""
    key = session.get(PlatformKey, key_id) if len(key_id) <= 36 else None
    if key is None:
        raise NotFound(f"No platform key '{key_id}'")
    before = platform_key_json(key)
    session.delete(key)
    audit.record(
        session,
        audit.CLI,
        "platform_key.delete",
        "platform_key",
        key_id,
        organization_id=None,
        before=before,
    )
