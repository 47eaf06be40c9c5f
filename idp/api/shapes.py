"""JSON shapes shared by several API resources."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idp.store.models import Membership, Organization, User


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 UTC timestamp ending in Z, or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def organization_json(org: Organization) -> dict[str, Any]:
    """Organization {id, slug, name, created_at}."""
    return {"id": org.id, "slug": org.slug, "name": org.name, "created_at": iso(org.created_at)}


def user_json(user: User) -> dict[str, Any]:
    """The user fields every user shape shares."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
    }


def org_user_json(member: Membership) -> dict[str, Any]:
    """User {id, email, name, given_name, family_name, groups, role} within an organization."""
    return {**user_json(member.user), "groups": list(member.groups), "role": member.role}


def member_json(member: Membership) -> dict[str, Any]:
    """Member {user_id, email, role}."""
    return {"user_id": member.user_id, "email": member.user.email, "role": member.role}


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
