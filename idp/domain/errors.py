"""What a use case refuses, independent of how the caller answers (JSON, HTML or CLI)."""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation: a kind (the API's error code), a message, reasons per field."""

    code = "invalid_request"

    def __init__(self, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(DomainError):
    """The input breaks a rule (400)."""

    code = "invalid_request"


class NotFound(DomainError):
    """The thing does not exist, or is not visible to the caller (404)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller may not do this (403)."""

    code = "forbidden"


class Conflict(DomainError):
    """The operation conflicts with the current state (409)."""

    code = "conflict"


class LimitReached(DomainError):
    """A quota is used up (409)."""

    code = "limit_reached"


class WrongCredentials(DomainError):
    """A sign-in that failed: one message whatever part was wrong (401)."""

    code = "unauthenticated"


class Throttled(DomainError):
    """Too many attempts; try again after ``retry_after`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many sign-in attempts; try again later")
        self.retry_after = retry_after
