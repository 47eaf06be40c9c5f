"""The HTTP side of the client: one JSON call, and the error it raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

import requests

Json = dict[str, Any]
DEFAULT_TIMEOUT_S = 10.0


class SsoApiError(Exception):
    """The API answered an error: HTTP status, error code, message (and per-field details)."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})

    @classmethod
    def from_response(cls, response: requests.Response) -> SsoApiError:
        """Read the API's error body; anything else (a proxy's page) keeps its HTTP status."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return cls(
                response.status_code,
                body["error"],
                str(body.get("message", "")),
                body.get("details") if isinstance(body.get("details"), dict) else None,
            )
        return cls(response.status_code, "http_error", f"HTTP {response.status_code}")


def path(*segments: str) -> str:
    """An API path from segments, each percent-encoded so that it stays one segment.

    A segment that no encoding keeps in place names nothing, and raises SsoApiError 404
    without a request: one holding ``/`` (servers decode ``%2F`` before routing), and an
    empty, ``.`` or ``..`` one (URL parsing drops or resolves it).
    """
    for segment in segments:
        if segment in ("", ".", "..") or "/" in segment:
            raise SsoApiError(404, "not_found", f"{segment!r} names no API resource")
    return "".join("/" + quote(segment, safe="") for segment in segments)


class Transport:
    """Sends JSON requests to ``{base_url}/api`` with the bearer credential."""

    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(
        self,
        method: str,
        api_path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; the decoded JSON answer, None for 204, SsoApiError for anything else
        (redirects are not followed: the API never sends one, a proxy's would lose the body)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = requests.request(
            method,
            f"{self.base_url}/api{api_path}",
            json=None if body is None else dict(body),
            params=params,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
        )
        if response.status_code >= 300:
            raise SsoApiError.from_response(response)
        return response.json() if response.content else None

    def object(self, method: str, api_path: str, **kwargs: Any) -> Json:
        """A call answering a JSON object."""
        return cast(Json, self.call(method, api_path, **kwargs))

    def array(self, method: str, api_path: str, **kwargs: Any) -> list[Json]:
        """A call answering a JSON array of objects."""
        return cast(list[Json], self.call(method, api_path, **kwargs))

    def empty(self, method: str, api_path: str) -> None:
        """A call answering 204 No Content."""
        self.call(method, api_path)


def merged(payload: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Json:
    """A request body: the payload mapping, then keyword fields on top of it."""
    return {**(payload or {}), **fields}
