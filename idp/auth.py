"""Who is calling: passwords, bearer tokens, API keys, roles and permissions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.settings import Settings
from idp.store.models import ApiKey, AuthToken, Membership, Service, User, utcnow

ROLES = ("owner", "admin", "member")
MANAGER_ROLES = ("owner", "admin")
PERMISSIONS = (
    "read:users",
    "write:users",
    "read:subscriptions",
    "write:subscriptions",
    "read:analytics",
    "read:service",
    "write:service",
)
TOKEN_PREFIX = "idpt_"  # noqa: S105 (a public marker, not a secret)
KEY_PREFIX = "idpk_"
KEY_PREFIX_RANDOM_CHARS = 10


class Passwords:
    """argon2id hashing with a tunable cost."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=max(memory_kib, 8), parallelism=1
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """The argon2id hash of a password."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Check a password; takes the same time whether or not a hash exists."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


def login_subjects(settings: Settings, email: str, address: str | None) -> dict[str, int]:
    """What a password attempt counts against (throttle subject -> limit), for the login page
    and the API alike: the email, and the client address."""
    return {
        f"email:{email}": settings.login_max_failures,
        f"ip:{address or 'unknown'}": settings.login_max_failures_per_ip,
    }


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this (normalized) email. An email holding NUL names nobody: no user can
    have one, and PostgreSQL could not even compare it."""
    if "\x00" in email:
        return None
    return session.scalar(select(User).where(User.email == email))


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (tokens and API keys), hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class UserPrincipal:
    """A person authenticated by a bearer token."""

    user: User


@dataclass(frozen=True)
class KeyPrincipal:
    """A service authenticated by an API key."""

    key_id: str
    service_id: str
    organization_id: str
    permissions: frozenset[str]


Principal = UserPrincipal | KeyPrincipal


def issue_token(session: Session, user: User, ttl_s: int) -> tuple[str, datetime]:
    """Create a login token for a user; returns the token and its expiry."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    session.add(AuthToken(token_hash=digest(token), user_id=user.id, expires_at=expires_at))
    return token, expires_at


def revoke_token(session: Session, token: str) -> None:
    """Forget a login token."""
    row = session.get(AuthToken, digest(token))
    if row is not None:
        session.delete(row)


def new_api_key() -> tuple[str, str]:
    """A fresh API key and its public prefix (the key starts with the prefix)."""
    prefix = KEY_PREFIX + secrets.token_hex(KEY_PREFIX_RANDOM_CHARS // 2)
    return f"{prefix}.{secrets.token_urlsafe(32)}", prefix


def authenticate(session: Session, credential: str) -> Principal | None:
    """Resolve a bearer credential (login token or API key) to a principal."""
    if credential.startswith(KEY_PREFIX):
        return _authenticate_key(session, credential)
    if credential.startswith(TOKEN_PREFIX):
        row = session.get(AuthToken, digest(credential))
        if row is None or row.expires_at <= utcnow():
            return None
        user = session.get(User, row.user_id)
        return UserPrincipal(user) if user else None
    return None


def _authenticate_key(session: Session, credential: str) -> KeyPrincipal | None:
    """One indexed lookup by prefix, then a constant-time comparison of digests."""
    prefix = credential.split(".", 1)[0]
    row = session.execute(
        select(ApiKey, Service.organization_id)
        .join(Service, Service.id == ApiKey.service_id)
        .where(ApiKey.prefix == prefix)
    ).first()
    if row is None:
        return None
    key, organization_id = row
    if not hmac.compare_digest(key.key_hash, digest(credential)):
        return None
    now = utcnow()
    if key.expires_at is not None and key.expires_at <= now:
        return None
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return KeyPrincipal(key.id, key.service_id, organization_id, frozenset(key.permissions))


def membership(session: Session, organization_id: str, user_id: str) -> Membership | None:
    """A user's membership in an organization, if any."""
    return session.get(Membership, (organization_id, user_id))
