"""What runs in the server's master process, shared by ``idp serve`` and gunicorn.conf.py."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def before_serving(settings: Settings | None = None) -> Settings:
    """Check the settings, migrate the schema, and prepare shared metric files.

    Exits with one line when a setting is missing or malformed.
    """
    try:
        settings = settings or load_settings()
    except SettingsError as exc:
        print(f"idp: {exc}", file=sys.stderr)
        sys.exit(2)
    db = Database(settings.database_url)
    db.migrate()
    db.dispose()
    _prepare_metrics_dir()
    return settings


def _prepare_metrics_dir() -> None:
    """An empty directory where every worker writes its metrics (before they import them)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    else:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="idp-metrics-")


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges from the shared metric files."""
    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
