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
from idp.store.models import (
    Account,
    ApiKey,
    AuthToken,
    Operator,
    PlatformKey,
    Service,
    utcnow,
)

PERMISSIONS = (  # no write:users: no API key creates or changes accounts
    "read:users",
    "read:subscriptions",
    "write:subscriptions",
    "read:analytics",
    "read:service",
    "write:service",
)
TOKEN_PREFIX = "idpt_"  # noqa: S105 (a public marker, not a secret)
KEY_PREFIX = "idpk_"
PLATFORM_KEY_PREFIX = "idpp_"
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

    def needs_rehash(self, stored: str) -> bool:
        """True when a hash was made with other parameters than today's (rehash it at login);
        False for one that cannot be parsed, which no password verifies anyway."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False


def login_subjects(
    settings: Settings, organization: str | None, email: str, address: str | None
) -> dict[str, int]:
    """What a password attempt counts against (throttle subject -> limit), for the login page
    and the API alike: the email within its organization (or among operators), and the
    client address."""
    return {
        f"email:{organization or ''}\0{email}": settings.login_max_failures,
        **address_subject(settings, address),
    }


def address_subject(settings: Settings, address: str | None) -> dict[str, int]:
    """The client address's throttle subject and limit, for attempts that name no account."""
    return {f"ip:{address or 'unknown'}": settings.login_max_failures_per_ip}


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (tokens and API keys), hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class AccountPrincipal:
    """A person of one organization, authenticated by a bearer token."""

    account: Account


@dataclass(frozen=True)
class OperatorPrincipal:
    """A platform operator, authenticated by a bearer token."""

    operator: Operator


@dataclass(frozen=True)
class PlatformKeyPrincipal:
    """The main backend, authenticated by a platform API key."""

    key_id: str


@dataclass(frozen=True)
class KeyPrincipal:
    """A service authenticated by its API key."""

    key_id: str
    service_id: str
    organization_id: str
    permissions: frozenset[str]


Principal = AccountPrincipal | OperatorPrincipal | PlatformKeyPrincipal | KeyPrincipal
PLATFORM = (OperatorPrincipal, PlatformKeyPrincipal)  # owner rights in every organization


def issue_token(session: Session, subject: Account | Operator, ttl_s: int) -> tuple[str, datetime]:
    """Create a login token for an account or an operator; returns the token and its expiry."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    owner = "account_id" if isinstance(subject, Account) else "operator_id"
    session.add(AuthToken(token_hash=digest(token), expires_at=expires_at, **{owner: subject.id}))
    return token, expires_at


def revoke_token(session: Session, token: str) -> None:
    """Forget a login token."""
    row = session.get(AuthToken, digest(token))
    if row is not None:
        session.delete(row)


def new_api_key() -> tuple[str, str]:
    """A fresh service API key and its public prefix (the key starts with the prefix)."""
    return _new_key(KEY_PREFIX)


def new_platform_key() -> tuple[str, str]:
    """A fresh platform API key and its public prefix."""
    return _new_key(PLATFORM_KEY_PREFIX)


def _new_key(marker: str) -> tuple[str, str]:
    prefix = marker + secrets.token_hex(KEY_PREFIX_RANDOM_CHARS // 2)
    return f"{prefix}.{secrets.token_urlsafe(32)}", prefix


def authenticate(session: Session, credential: str) -> Principal | None:
    """Resolve a bearer credential (login token, service or platform key) to a principal."""
    if credential.startswith(KEY_PREFIX):
        return _authenticate_key(session, credential)
    if credential.startswith(PLATFORM_KEY_PREFIX):
        return _authenticate_platform_key(session, credential)
    if credential.startswith(TOKEN_PREFIX):
        return _authenticate_token(session, credential)
    return None


def _authenticate_token(session: Session, credential: str) -> Principal | None:
    row = session.get(AuthToken, digest(credential))
    if row is None or row.expires_at <= utcnow():
        return None
    if row.operator_id is not None:
        operator = session.get(Operator, row.operator_id)
        return OperatorPrincipal(operator) if operator else None
    account = session.get(Account, row.account_id) if row.account_id else None
    return AccountPrincipal(account) if account and not account.disabled else None


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


def _authenticate_platform_key(session: Session, credential: str) -> PlatformKeyPrincipal | None:
    prefix = credential.split(".", 1)[0]
    key = session.scalar(select(PlatformKey).where(PlatformKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.key_hash, digest(credential)):
        return None
    session.execute(
        update(PlatformKey).where(PlatformKey.id == key.id).values(last_used_at=utcnow())
    )
    return PlatformKeyPrincipal(key.id)
