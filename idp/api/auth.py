"""POST /api/auth/login and /api/auth/logout: bearer tokens for people."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

from idp.api.openapi import component, operation, ref
from idp.api.shapes import OPTIONAL_STRING, TIMESTAMP, iso
from idp.auth import issue_token, revoke_token
from idp.domain import login as logins
from idp.runtime import runtime
from idp.store.models import SLUG_PATTERN, Account, Operator

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
            "organization": {"type": ["string", "null"], "pattern": SLUG_PATTERN},
            "code": {"type": ["string", "null"], "maxLength": 64},
        },
    },
)
component(
    "UserIdentity",
    {
        "type": "object",
        "required": ["id", "email", "name", "given_name", "family_name", "organization", "role"],
        "properties": {
            "id": {"type": "string"},
            "email": {"type": "string"},
            "name": OPTIONAL_STRING,
            "given_name": OPTIONAL_STRING,
            "family_name": OPTIONAL_STRING,
            "organization": OPTIONAL_STRING,
            "role": {"type": "string", "enum": ["owner", "admin", "member", "operator"]},
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


@operation(
    bp,
    "POST",
    "/auth/login",
    summary="Exchange email and password (and organization; and a TOTP or recovery code "
    "for an account with a second factor) for a bearer token",
    body="LoginRequest",
    response=ref("LoginResponse"),
    public=True,
)
def login(payload: dict[str, Any]) -> dict[str, Any]:
    """With ``organization``, that organization's account; without it, an operator."""
    rt = runtime()
    attempt = logins.Attempt(
        email=payload["email"],
        password=payload["password"],
        organization=payload.get("organization"),
        address=request.remote_addr or "unknown",
        via="api",
        code=payload.get("code"),
    )
    subject = logins.sign_in(rt, attempt, throttle_required=False).subject
    with rt.db.write() as session:
        token, expires_at = issue_token(session, subject, rt.settings.api_token_ttl)
    return {"token": token, "expires_at": iso(expires_at), "user": _identity(subject, attempt)}


def _identity(subject: Account | Operator, attempt: logins.Attempt) -> dict[str, Any]:
    if isinstance(subject, Operator):
        profile = {"name": None, "given_name": None, "family_name": None}
        return {
            "id": subject.id,
            "email": subject.email,
            **profile,
            "organization": None,
            "role": "operator",
        }
    return {
        "id": subject.id,
        "email": subject.email,
        "name": subject.name,
        "given_name": subject.given_name,
        "family_name": subject.family_name,
        "organization": attempt.organization,
        "role": subject.role,
    }


@operation(bp, "POST", "/auth/logout", summary="Revoke the bearer token of this request", ok=204)
def logout() -> tuple[str, int]:
    """Revoke the calling token (API keys are deleted through their own route)."""
    with runtime().db.write() as session:
        revoke_token(session, g.credential)
    return "", 204
