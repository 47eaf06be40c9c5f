"""JSON shapes and schema pieces shared by several API resources."""

from __future__ import annotations

from typing import Any

from idp.domain.shapes import iso

__all__ = ["GROUPS", "OPTIONAL_STRING", "TIMESTAMP", "iso", "text"]


TIMESTAMP = {"type": "string", "format": "date-time"}
OPTIONAL_STRING = {"type": ["string", "null"]}


def text(max_length: int) -> dict[str, Any]:
    """A non-empty line of text: no control characters (nor NUL), no surrounding spaces."""
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
        "x-reason": "must be non-empty text without control characters or surrounding spaces",
    }


GROUPS = {  # an account's groups, and the groups a service admits
    "type": "array",
    "maxItems": 100,
    "uniqueItems": True,
    "items": {
        "type": "string",
        "maxLength": 200,
        "pattern": r"^[^\x00-\x1f\x7f]+$",  # non-empty
        "x-reason": "must be a group name: 1-200 characters without control characters",
    },
}
