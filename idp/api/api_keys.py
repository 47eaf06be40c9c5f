"""API keys of a service: shown once at creation, stored only as a digest, managed by people."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.errors import invalid, not_found
from idp.api.openapi import component, nullable, operation, ref
from idp.api.shapes import TIMESTAMP, iso, text
from idp.auth import PERMISSIONS, digest, new_api_key
from idp.runtime import runtime
from idp.store.models import ApiKey, Service, utcnow

bp = Blueprint("api_keys", __name__)

MAX_EXPIRY_DAYS = 3650
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
}
OFFSET = {
    "name": "offset",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
}
PERMISSION_LIST = {
    "type": "array",
    "minItems": 1,
    "uniqueItems": True,
    "items": {"type": "string", "enum": list(PERMISSIONS)},
}
KEY_FIELDS = {
    "id": {"type": "string"},
    "prefix": {"type": "string"},
    "name": {"type": "string"},
    "permissions": PERMISSION_LIST,
    "expires_at": nullable(TIMESTAMP),
    "created_at": TIMESTAMP,
}

component(
    "CreateApiKey",
    {
        "type": "object",
        "required": ["name", "permissions"],
        "additionalProperties": False,
        "properties": {
            "name": text(200),
            "permissions": PERMISSION_LIST,
            "expires_in_days": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_EXPIRY_DAYS,
            },
        },
    },
)
component(
    "ApiKey",
    {
        "type": "object",
        "required": [*KEY_FIELDS, "last_used_at"],
        "additionalProperties": False,
        "properties": {**KEY_FIELDS, "last_used_at": nullable(TIMESTAMP)},
    },
)
component(
    "ApiKeyCreateResponse",
    {
        "type": "object",
        "required": [*KEY_FIELDS, "key"],
        "additionalProperties": False,
        "properties": {**KEY_FIELDS, "key": {"type": "string"}},
    },
)
component(
    "ApiKeyList",
    {
        "type": "object",
        "required": ["api_keys", "total"],
        "additionalProperties": False,
        "properties": {
            "api_keys": {"type": "array", "items": ref("ApiKey")},
            "total": {"type": "integer", "minimum": 0},
        },
    },
)


def api_key_json(key: ApiKey) -> dict[str, Any]:
    """ApiKey {id, prefix, name, permissions, expires_at, last_used_at, created_at}: no secret."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "permissions": list(key.permissions),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "created_at": iso(key.created_at),
    }


def query_int(param: dict[str, Any]) -> int:
    """An integer query parameter within the bounds its documentation states, else 400."""
    name, schema = param["name"], param["schema"]
    raw = request.args.get(name)
    if raw is None:
        default: int = schema["default"]
        return default
    low, high = schema["minimum"], schema["maximum"]
    if re.fullmatch(r"[0-9]{1,10}", raw) is None or not low <= int(raw) <= high:
        raise invalid({name: f"must be an integer from {low} to {high}"})
    return int(raw)


def _find_key(session: Session, svc: Service, key_id: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.service_id == svc.id))
    if key is None:
        raise not_found(f"API key '{key_id}' not found in service '{svc.slug}'")
    return key


@operation(
    bp,
    "POST",
    "/organizations/<org>/services/<svc>/api-keys",
    summary="Create an API key (owner/admin); the key is in this response only",
    ok=201,
    body="CreateApiKey",
    response=ref("ApiKeyCreateResponse"),
)
def create_api_key(org: str, svc: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Only the key's SHA-256 digest is stored; the audit trail records neither."""
    secret, prefix = new_api_key()
    days = payload.get("expires_in_days")
    now = utcnow()
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE)
        key = ApiKey(
            service_id=service.id,
            name=payload["name"],
            prefix=prefix,
            key_hash=digest(secret),
            permissions=list(payload["permissions"]),
            expires_at=None if days is None else now + timedelta(days=int(days)),
            created_at=now,
        )
        session.add(key)
        session.flush()
        audit.record(
            session,
            access.actor(),
            "api_key.create",
            "api_key",
            key.id,
            organization_id=organization.id,
            service_id=service.id,
            after=api_key_json(key),
        )
    created = api_key_json(key)
    del created["last_used_at"]
    return {**created, "key": secret}, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/api-keys",
    summary="List the API keys of a service, newest first (never the keys themselves)",
    query=(LIMIT, OFFSET),
    response=ref("ApiKeyList"),
)
def list_api_keys(org: str, svc: str) -> dict[str, Any]:
    """Any member; API keys cannot list keys."""
    limit, offset = query_int(LIMIT), query_int(OFFSET)
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ)
        of_service = ApiKey.service_id == service.id
        total = session.scalar(select(func.count()).select_from(ApiKey).where(of_service))
        page = session.scalars(
            select(ApiKey)
            .where(of_service)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
            .limit(limit)
            .offset(offset)
        )
        return {"api_keys": [api_key_json(key) for key in page], "total": total or 0}


@operation(
    bp,
    "GET",
    "/organizations/<org>/services/<svc>/api-keys/<key_id>",
    summary="Get an API key's details (never the key itself)",
    response=ref("ApiKey"),
)
def get_api_key(org: str, svc: str, key_id: str) -> dict[str, Any]:
    """Any member; API keys cannot read keys."""
    with runtime().db.read() as session:
        _, service = access.service(session, org, svc, Need.READ)
        return api_key_json(_find_key(session, service, key_id))


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/services/<svc>/api-keys/<key_id>",
    summary="Delete an API key (owner/admin); it is refused from the next request on",
    ok=204,
)
def delete_api_key(org: str, svc: str, key_id: str) -> tuple[str, int]:
    """The row goes, so the very next use of the key answers 401."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE)
        key = _find_key(session, service, key_id)
        audit.record(
            session,
            access.actor(),
            "api_key.delete",
            "api_key",
            key.id,
            organization_id=organization.id,
            service_id=service.id,
            before=api_key_json(key),
        )
        session.delete(key)
    return "", 204
