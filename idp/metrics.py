"""Prometheus metrics, safe under several gunicorn workers (multiprocess mode).

The master sets PROMETHEUS_MULTIPROC_DIR (idp.hooks) before any worker imports this module.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from flask import Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from idp import keys
from idp.domain import saml_setup
from idp.hooks import MULTIPROC_ENV
from idp.runtime import Runtime

SSO_REQUESTS = Counter(
    "idp_sso_requests_total",
    "SSO requests by outcome (success, login_required, saml_error, refused) and refusal reason",
    ["outcome", "reason"],
)
LOGINS = Counter(
    "idp_logins_total",
    "Sign-in attempts at the login page by result (success, failure, throttled, denied)",
    ["result"],
)
MFA_OUTCOMES = Counter(
    "idp_mfa_total",
    "Second factors by factor (totp, recovery_code, passkey, code, any) and result (success, "
    "failure, throttled, enrolled, enrol_failure)",
    ["factor", "result"],
)
METADATA_REFRESHES = Counter(
    "idp_metadata_refresh_total",
    "Reads of SP metadata URLs in the background by outcome (updated, unchanged, failure)",
    ["result"],
)
REQUEST_SECONDS = Histogram(
    "idp_request_duration_seconds",
    "Request latency by route group",
    ["group"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SIGNING_SECONDS = Histogram(
    "idp_signing_seconds",
    "Time to build and sign one SAML message",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)

ROUTE_GROUPS = {
    "sso": "sso",
    "slo": "slo",
    "login": "login",
    "second_factor": "login",
    "upstream": "login",
    "account": "account",
    "metadata": "metadata",
}


class StateCollector(Collector):
    """Gauges read at scrape time: live sessions, and days until each signing cert expires."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Each gauge whose store answers: an outage leaves out its gauge, not the whole scrape."""
        with contextlib.suppress(redis.RedisError):
            yield self._sessions()
        with contextlib.suppress(SQLAlchemyError):
            yield from self._certificates()
        with contextlib.suppress(SQLAlchemyError):
            yield self._metadata_errors()

    def _sessions(self) -> GaugeMetricFamily:
        sessions = GaugeMetricFamily("idp_active_sessions", "Live IdP sessions in Redis")
        sessions.add_metric([], self.rt.store.active_sessions())
        return sessions

    def _certificates(self) -> Iterator[GaugeMetricFamily]:
        expiry = GaugeMetricFamily(
            "idp_certificate_expiry_days",
            "Days until the active signing certificate of a service expires",
            labels=["org", "service"],
        )
        due = GaugeMetricFamily(
            "idp_certificate_rollover_due",
            f"1 when the active signing certificate expires within {keys.ROLLOVER_DUE_DAYS} "
            "days and no next one is staged",
            labels=["org", "service"],
        )
        now = datetime.now(UTC)
        with self.rt.db.read() as session:
            for org, svc, valid_until, has_next in keys.active_certificate_expiry(session):
                days = (valid_until - now).total_seconds() / 86400
                expiry.add_metric([org, svc], days)
                due.add_metric([org, svc], int(keys.rollover_due(days, has_next)))
        yield expiry
        yield due

    def _metadata_errors(self) -> GaugeMetricFamily:
        errors = GaugeMetricFamily(
            "idp_metadata_errors", "Services whose last read of their SP metadata URL failed"
        )
        with self.rt.db.read() as session:
            errors.add_metric([], saml_setup.metadata_error_count(session))
        return errors


def _route_group() -> str:
    if request.path.startswith("/api/"):
        return "api"
    blueprint = request.blueprint or ""
    return ROUTE_GROUPS.get(blueprint, "other")


def is_local_client(address: str | None) -> bool:
    """True for a loopback client address: 127.0.0.0/8 or ::1 (IPv4-mapped too)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def scrape_allowed(token: str | None) -> bool:
    """With IDP_METRICS_TOKEN: the right bearer token; without it: loopback clients only."""
    if token is None:
        return is_local_client(request.remote_addr)
    given = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def _observe(response: Response) -> Response:
    started = g.get("started")
    if started is not None:
        REQUEST_SECONDS.labels(_route_group()).observe(time.perf_counter() - started)
    return response


def install(app: Flask, rt: Runtime) -> None:
    """Time every request and serve GET /metrics to allowed scrapers."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)  # type: ignore[arg-type]
    registry.register(StateCollector(rt))
    app.after_request(_observe)

    @app.get("/metrics")
    def metrics() -> Response:
        if not scrape_allowed(rt.settings.metrics_token):
            abort(404)  # the same answer as a route that does not exist
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
