"""How the domain writes values into JSON answers and audit records."""

from __future__ import annotations

from datetime import datetime


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 UTC timestamp ending in Z, or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")
