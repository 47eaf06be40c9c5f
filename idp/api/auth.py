"""POST /api/auth/login and /api/auth/logout: bearer tokens for people."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Blueprint, g, request

from idp.api.errors import rate_limited, unauthenticated
from idp.api.openapi import component, operation, ref
from idp.api.shapes import OPTIONAL_STRING, TIMESTAMP, iso, user_json
from idp.auth import issue_token, login_subjects, revoke_token, user_by_email
from idp.runtime import runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

bp = Blueprint("auth", __name__)

component(
    "LoginRequest",
    {
        "type": "object",
        "required": ["email", "password"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "minLength": 1, "maxLength": 320},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024},
        },
    },
)
component(
    "UserIdentity",
    {
        "type": "object",
        "required": ["id", "email", "name", "given_name", "family_name"],
        "properties": {
            "id": {"type": "string"},
            "email": {"type": "string"},
            "name": OPTIONAL_STRING,
            "given_name": OPTIONAL_STRING,
            "family_name": OPTIONAL_STRING,
        },
    },
)
component(
    "LoginResponse",
    {
        "type": "object",
        "required": ["token", "expires_at", "user"],
        "properties": {
            "token": {"type": "string"},
            "expires_at": TIMESTAMP,
            "user": ref("UserIdentity"),
        },
    },
)

WRONG_CREDENTIALS = "Invalid email or password"


@operation(
    bp,
    "POST",
    "/auth/login",
    summary="Exchange email and password for a bearer token",
    body="LoginRequest",
    response=ref("LoginResponse"),
    public=True,
)
def login(payload: dict[str, Any]) -> dict[str, Any]:
    """Verify the password (in constant time whether or not the email exists), throttled like
    the login page and on the same counts."""
    rt = runtime()
    email = payload["email"].strip().lower()
    subjects = login_subjects(rt.settings, email, request.remote_addr)
    retry_after = _throttled(
        lambda: rt.store.take_attempt(subjects, rt.settings.login_throttle_window)
    )
    if retry_after:
        raise rate_limited(retry_after)
    with rt.db.read() as session:
        user = user_by_email(session, email)
    stored = user.password_hash if user else None
    if not rt.passwords.verify(stored, payload["password"]) or user is None:
        raise unauthenticated(WRONG_CREDENTIALS)
    _throttled(lambda: rt.store.login_succeeded(*subjects))
    with rt.db.write() as session:
        token, expires_at = issue_token(session, user, rt.settings.api_token_ttl)
    return {"token": token, "expires_at": iso(expires_at), "user": user_json(user)}


def _throttled(step: Callable[[], T]) -> T | None:
    """A throttle step; during a Redis outage the API login goes on unthrottled (the admin API
    keeps working without Redis, and the login page, which needs it, answers 503)."""
    try:
        return step()
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc.__class__.__name__)
        return None


@operation(bp, "POST", "/auth/logout", summary="Revoke the bearer token of this request", ok=204)
def logout() -> tuple[str, int]:
    """Revoke the calling token (API keys are deleted through their own route)."""
    with runtime().db.write() as session:
        revoke_token(session, g.credential)
    return "", 204
