"""What runs in the server's master process, shared by ``idp serve`` and gunicorn.conf.py."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile

from idp import logs
from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# gunicorn's own lines (start, worker boots and exits) as JSON, like the app's. Its access
# log stays off: the app writes the request lines itself, without query strings.
LOGCONFIG = {
    "formatters": {"json": {"()": "idp.logs.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
        "none": {"class": "logging.NullHandler"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "CRITICAL", "handlers": ["none"], "propagate": False},
    },
}

log = logging.getLogger(__name__)


def before_serving(settings: Settings | None = None) -> Settings:
    """Check the settings, prepare shared metric files, migrate, and apply IDP_PROVISION_DIR.

    Exits with one line when a setting is missing or malformed. Runs before any worker
    exists, so the metrics directory is set before anything imports prometheus_client.
    """
    logs.configure()
    try:
        settings = settings or load_settings()
    except SettingsError as exc:
        print(f"idp: {exc}", file=sys.stderr)
        sys.exit(2)
    _prepare_metrics_dir()
    db = Database(settings.database_url)
    try:
        db.migrate()
        if settings.provision_dir is not None:
            _provision(db, settings)
    finally:
        db.dispose()
    return settings


def _provision(db: Database, settings: Settings) -> None:
    """Apply the declarative service files; a bad file is logged and the others still apply."""
    from idp import provision

    directory = settings.provision_dir
    assert directory is not None
    if not directory.is_dir():
        print(f"idp: IDP_PROVISION_DIR {directory} is not a directory", file=sys.stderr)
        sys.exit(2)
    report = provision.run(db, settings, directory)
    for line in report.changes:
        log.info("provisioned %s", line)
    for line in report.errors:
        log.error("provisioning refused %s", line)
    log.info(
        "provisioning: %d file(s) in %s, %d change(s), %d error(s)",
        report.files,
        directory,
        len(report.changes),
        len(report.errors),
    )


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
