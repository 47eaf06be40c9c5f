"""The error model of the admin API: ``{"error", "message", "details"?}``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

from idp.domain.errors import DomainError, Throttled

STATUS_OF_CODE = {
    "invalid_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "limit_reached": 409,
    "rate_limited": 429,
}


class ApiError(Exception):
    """An error answered as JSON with a status, a code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        """The JSON body of the error response."""
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


def invalid(details: dict[str, str], message: str = "The request is invalid") -> ApiError:
    """400: a validation failure, reason per field."""
    return ApiError(400, "invalid_request", message, details)


def bad_request(message: str) -> ApiError:
    """400: a request that cannot be read at all."""
    return ApiError(400, "invalid_request", message)


def unauthenticated(message: str = "Authentication required") -> ApiError:
    """401: no credential, or one that is wrong, expired or revoked."""
    return ApiError(401, "unauthenticated", message)


def forbidden(message: str) -> ApiError:
    """403: authenticated, but not allowed to do this."""
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    """404: the resource does not exist (or is not visible to the caller)."""
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    """409: the request conflicts with the current state."""
    return ApiError(409, "conflict", message)


def limit_reached(message: str) -> ApiError:
    """409: a quota is used up."""
    return ApiError(409, "limit_reached", message)


def rate_limited(retry_after: int) -> ApiError:
    """429: too many attempts; try again after ``retry_after`` seconds."""
    return ApiError(
        429,
        "rate_limited",
        "Too many sign-in attempts; try again later",
        headers={"Retry-After": str(retry_after)},
    )


@contextmanager
def conflict_on_duplicate(message: str) -> Iterator[None]:
    """Turn a uniqueness violation inside the block (commit included) into a 409."""
    try:
        yield
    except IntegrityError:
        raise conflict(message) from None


def from_domain(error: DomainError) -> ApiError:
    """The API's answer to a refusal of the domain layer."""
    if isinstance(error, Throttled):
        return rate_limited(error.retry_after)
    return ApiError(STATUS_OF_CODE[error.code], error.code, error.message, error.details)
