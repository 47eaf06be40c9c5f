"""The JSON admin API under /api: one blueprint per resource, one error model."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from idp.api import (
    accounts,
    analytics,
    api_keys,
    audit,
    auth,
    docs,
    identity_providers,
    organizations,
    plans,
    saml,
    services,
    subscriptions,
)
from idp.api.errors import ApiError, from_domain
from idp.domain.errors import DomainError

BLUEPRINTS: tuple[Blueprint, ...] = (
    auth.bp,
    organizations.bp,
    accounts.bp,
    identity_providers.bp,
    services.bp,
    plans.bp,
    subscriptions.bp,
    api_keys.bp,
    saml.bp,
    analytics.bp,
    audit.bp,
    docs.bp,
)

HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "invalid_request",
    429: "rate_limited",
}


def is_api_request() -> bool:
    """True when the current request is for the JSON API."""
    return request.path == "/api" or request.path.startswith("/api/")


def error_response(error: ApiError) -> Response:
    """The JSON answer for an API error."""
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def http_error(exc: HTTPException) -> Response:
    """Werkzeug's HTTP errors (404, 405, 413...) in the API's JSON model."""
    status = exc.code or 500
    messages = {
        404: "No such API route",
        405: f"Method {request.method} is not allowed on this route",
        413: "The request body is larger than 1 MiB",
    }
    message = messages.get(status, exc.description or "Request failed")
    response = error_response(ApiError(status, HTTP_CODES.get(status, "error"), message))
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return response


def no_store(response: Response) -> Response:
    """Keep every API answer (tokens, API keys, members) out of caches."""
    if is_api_request():
        response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    """Mount every API blueprint under /api and install the JSON error model."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix="/api")
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(DomainError, domain_error_response)
    app.after_request(no_store)


def domain_error_response(error: DomainError) -> Response:
    """A refusal of the domain layer, answered in the API's JSON model."""
    return error_response(from_domain(error))
