"""Route registration that also writes the OpenAPI document, so the two never drift."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, request

from idp.api.access import authenticate_request
from idp.api.errors import bad_request, invalid, not_found
from idp.api.validation import check_depth, too_deep, validate

View = Callable[..., Any]

COMPONENTS: dict[str, dict[str, Any]] = {}


def component(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Register a named schema for the document; returns it for validation use."""
    COMPONENTS[name] = schema
    return schema


def ref(name: str) -> dict[str, str]:
    """A JSON reference to a registered component."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or null."""
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True)
class Operation:
    """One documented route."""

    method: str
    path: str
    summary: str
    tag: str
    ok: int
    response: dict[str, Any] | None
    body: str | None
    query: tuple[dict[str, Any], ...]
    public: bool
    body_optional: bool = False
    also_ok: tuple[int, ...] = ()  # other success statuses (201 for a PUT that created)
    extra: dict[str, Any] = field(default_factory=dict)


OPERATIONS: list[Operation] = []


def operation(
    blueprint: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    ok: int = 200,
    response: dict[str, Any] | None = None,
    body: str | None = None,
    body_optional: bool = False,
    also_ok: tuple[int, ...] = (),
    query: tuple[dict[str, Any], ...] = (),
    public: bool = False,
) -> Callable[[View], View]:
    """Register a JSON route: authenticate, validate the body against a component, document.

    The view receives the validated body as ``payload`` when ``body`` names a schema (``{}``
    for no body at all when ``body_optional``).
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def handler(**kwargs: Any) -> Any:
            if not public:
                authenticate_request()
            if any(isinstance(v, str) and "\x00" in v for v in kwargs.values()):  # unstorable
                raise not_found("No resource has a name with a NUL character")
            _check_query_names(query)
            if body is not None:
                given = {} if body_optional and not request.get_data() else _json_body()
                kwargs["payload"] = validate(given, COMPONENTS[body])
            return view(**kwargs)

        blueprint.add_url_rule(path, view_func=handler, methods=[method])
        OPERATIONS.append(
            Operation(
                method,
                path,
                summary,
                blueprint.name,
                ok,
                response,
                body,
                query,
                public,
                body_optional,
                also_ok,
            )
        )
        return handler

    return decorate


def _check_query_names(query: tuple[dict[str, Any], ...]) -> None:
    """Refuse query parameters the route does not document (a misspelt ``limt`` is not ignored)."""
    unknown = sorted(set(request.args) - {param["name"] for param in query})
    if unknown:
        raise invalid({name: "is not a query parameter of this route" for name in unknown})


def _json_body() -> Any:
    try:
        payload = request.get_json(silent=True, force=True)
    except RecursionError:  # the parser recurses once per array or object
        raise too_deep() from None
    if payload is None:
        raise bad_request("The request body must be a JSON object")
    check_depth(payload)
    try:  # JSON may escape unpaired surrogates, which no database or response can encode
        json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise bad_request("The request body holds an unpaired Unicode surrogate") from None
    return payload


def _openapi_path(path: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", path)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path), names


def _operation_doc(op: Operation) -> dict[str, Any]:
    path, names = _openapi_path(op.path)
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
    params += list(op.query)
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": op.response}}
    doc: dict[str, Any] = {
        "operationId": f"{op.tag}_{op.method.lower()}_{path}",
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": {
            **{str(status): ok for status in (op.ok, *op.also_ok)},
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": ref("Error")}},
            },
        },
    }
    if op.body is not None:
        doc["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
    if op.public:
        doc["security"] = []
    return doc


def document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every /api route."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path, _ = _openapi_path(op.path)
        paths.setdefault("/api" + path, {})[op.method.lower()] = _operation_doc(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "IdP admin API", "version": "2.0"},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


component(
    "Error",
    {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
)
