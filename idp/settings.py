"""Typed configuration, read once from ``IDP_*`` environment variables."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

DATA_DIR = Path("var")
EMBEDDED_DATABASE_URL = f"sqlite:///{DATA_DIR / 'idp.db'}"
SECRET_FILE = DATA_DIR / "secret.key"
MIN_SECRET_LENGTH = 32
MIN_TOKEN_LENGTH = 16


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    base_url: str
    database_url: str
    redis_url: str | None
    secret_key: bytes
    secret_key_previous: bytes | None
    session_ttl: int
    assertion_ttl: int
    clock_skew: int
    max_services: int
    cert_valid_days: int
    cert_key_size: int
    api_token_ttl: int
    argon2_time_cost: int
    argon2_memory_kib: int
    login_max_failures: int
    login_max_failures_per_ip: int
    login_throttle_window: int
    pending_per_minute: int
    trusted_proxies: int
    provision_dir: Path | None
    metrics_token: str | None
    metadata_refresh_s: int  # the longest wait between two reads of an SP's metadata URL

    @property
    def is_https(self) -> bool:
        """True when the public origin is served over TLS."""
        return self.base_url.startswith("https://")


def _parse(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} is malformed: {exc}") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
    return value


def _key_size(raw: str) -> int:
    value = int(raw)
    if value not in (2048, 3072, 4096):
        raise ValueError("expected 2048, 3072 or 4096")
    return value


def _origin(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) origin such as https://sso.example.com, got {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return raw.rstrip("/")


def _secret(raw: str) -> bytes:
    if len(raw) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return raw.encode()


def _token(raw: str) -> str:
    if len(raw) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters")
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ValueError("must be printable ASCII without spaces (it is sent in a header)")
    return raw


def _redis_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


def _database_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if not scheme.startswith(("sqlite", "postgresql")):
        raise ValueError("expected a sqlite:// or postgresql+psycopg:// URL")
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg" + raw[len(scheme) :]
    return raw


def _embedded_secret() -> bytes:
    """Read ./var/secret.key, creating it once with a loud warning."""
    if not SECRET_FILE.exists():
        SECRET_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
        log.warning(
            "IDP_SECRET_KEY is not set: generated %s. Anyone who reads this file can decrypt "
            "the signing keys; set IDP_SECRET_KEY before production use.",
            SECRET_FILE,
        )
    return SECRET_FILE.read_text().strip().encode()


def load_settings(
    env: Mapping[str, str] | None = None, default_base_url: str = "http://127.0.0.1:8000"
) -> Settings:
    """Build the settings from the environment, or raise SettingsError with one clear line."""
    env = os.environ if env is None else env
    database_url = _parse(env, "IDP_DATABASE_URL", EMBEDDED_DATABASE_URL, _database_url)
    secret = _parse(env, "IDP_SECRET_KEY", None, _secret)
    if secret is None:
        if database_url != EMBEDDED_DATABASE_URL:
            raise SettingsError(
                "IDP_SECRET_KEY is required with IDP_DATABASE_URL: every worker and host "
                "must share the same secret"
            )
        secret = _embedded_secret()
    return Settings(
        base_url=_parse(env, "IDP_BASE_URL", default_base_url, _origin),
        database_url=database_url,
        redis_url=_parse(env, "IDP_REDIS_URL", None, _redis_url),
        secret_key=secret,
        secret_key_previous=_parse(env, "IDP_SECRET_KEY_PREVIOUS", None, _secret),
        session_ttl=_parse(env, "IDP_SESSION_TTL", 8 * 3600, _positive_int),
        assertion_ttl=_parse(env, "IDP_ASSERTION_TTL", 300, _positive_int),
        clock_skew=_parse(env, "IDP_CLOCK_SKEW", 180, _non_negative_int),
        max_services=_parse(env, "IDP_MAX_SERVICES", 10, _positive_int),
        cert_valid_days=_parse(env, "IDP_CERT_VALID_DAYS", 3650, _positive_int),
        cert_key_size=_parse(env, "IDP_CERT_KEY_SIZE", 2048, _key_size),
        api_token_ttl=_parse(env, "IDP_API_TOKEN_TTL", 24 * 3600, _positive_int),
        argon2_time_cost=_parse(env, "IDP_ARGON2_TIME_COST", 3, _positive_int),
        argon2_memory_kib=_parse(env, "IDP_ARGON2_MEMORY_KIB", 65536, _positive_int),
        login_max_failures=_parse(env, "IDP_LOGIN_MAX_FAILURES", 5, _positive_int),
        login_max_failures_per_ip=_parse(env, "IDP_LOGIN_MAX_FAILURES_PER_IP", 50, _positive_int),
        login_throttle_window=_parse(env, "IDP_LOGIN_THROTTLE_WINDOW", 900, _positive_int),
        pending_per_minute=_parse(env, "IDP_PENDING_PER_MINUTE", 600, _positive_int),
        trusted_proxies=_parse(env, "IDP_TRUSTED_PROXIES", 0, _non_negative_int),
        provision_dir=_parse(env, "IDP_PROVISION_DIR", None, Path),
        metrics_token=_parse(env, "IDP_METRICS_TOKEN", None, _token),
        metadata_refresh_s=_parse(env, "IDP_METADATA_REFRESH", 86400, _positive_int),
    )
