"""API keys of a service: shown once at creation, stored only as a digest, managed by people."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, request

from idp.api import access
from idp.api.access import Need
from idp.api.errors import invalid
from idp.api.openapi import component, nullable, operation, ref
from idp.api.shapes import TIMESTAMP, text
from idp.auth import PERMISSIONS
from idp.domain import api_keys
from idp.domain.api_keys import MAX_EXPIRY_DAYS, api_key_json, created_json, permission_reason
from idp.runtime import runtime

bp = Blueprint("api_keys", __name__)

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
    "items": {"type": "string", "enum": list(PERMISSIONS), "x-reason": permission_reason()},
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
    """Only the key's SHA-256 digest is stored; write:users is refused (400)."""
    with runtime().db.write() as session:
        organization, service = access.service(session, org, svc, Need.MANAGE)
        key, secret = api_keys.create(session, access.actor(), organization, service, payload)
    return created_json(key, secret), 201


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
        page, total = api_keys.page(session, service, limit, offset)
        return {"api_keys": [api_key_json(key) for key in page], "total": total}


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
        return api_key_json(api_keys.find(session, service, key_id))


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
        api_keys.remove(session, access.actor(), organization, service, key_id)
    return "", 204
