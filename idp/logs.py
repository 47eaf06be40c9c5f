"""Structured logs: one JSON line per request, carrying a request ID and never a secret."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from typing import Any

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("idp.access")


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object; request fields come from ``extra={"fields": ...}``."""

    converter = time.gmtime  # type: ignore[assignment]  # UTC: the timestamps end in Z

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure() -> None:
    """Send every log record to stderr as JSON (once per process)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(logging.INFO)


def _start() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if SAFE_REQUEST_ID.match(incoming) else secrets.token_hex(8)
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id is None:
        return response
    response.headers[REQUEST_ID_HEADER] = request_id
    view_args = request.view_args or {}
    fields = {
        "request_id": request_id,
        "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
        "org": view_args.get("org"),
        "service": view_args.get("svc"),
        "remote": request.remote_addr,
    }
    access_log.info("request", extra={"fields": fields})
    return response


def install(app: Flask) -> None:
    """Assign request IDs and write the per-request log line (paths only, no query strings)."""
    app.before_request(_start)
    app.after_request(_finish)
