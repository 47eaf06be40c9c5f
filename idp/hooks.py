"""What runs once before workers serve, shared by ``idp serve`` and gunicorn.conf.py."""

from __future__ import annotations

import sys

from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database


def before_serving(settings: Settings | None = None) -> Settings:
    """Check the settings and bring the schema up to date; exits with one line on bad settings."""
    try:
        settings = settings or load_settings()
    except SettingsError as exc:
        print(f"idp: {exc}", file=sys.stderr)
        sys.exit(2)
    db = Database(settings.database_url)
    db.migrate()
    db.dispose()
    return settings


def worker_exited(pid: int) -> None:
    """A worker process ended (placeholder for per-process cleanup)."""
