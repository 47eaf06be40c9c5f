"""Organizations: created, listed and deleted by operators and platform keys."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict_on_duplicate
from idp.api.openapi import component, operation, ref
from idp.api.shapes import TIMESTAMP
from idp.auth import AccountPrincipal, KeyPrincipal
from idp.domain import organizations
from idp.domain.organizations import organization_json
from idp.runtime import runtime
from idp.store.models import SLUG_PATTERN, Organization

bp = Blueprint("organizations", __name__)

SLUG = {
    "type": "string",
    "pattern": SLUG_PATTERN,
    "x-reason": "must be 1-63 lowercase letters, digits or hyphens, not starting or ending "
    "with a hyphen",
}
NAME = {  # surrounding spaces are stripped when stored
    "type": "string",
    "maxLength": 200,
    "pattern": r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
    "x-reason": "must be non-empty text without control characters",
}

component(
    "CreateOrganization",
    {
        "type": "object",
        "required": ["slug", "name"],
        "additionalProperties": False,
        "properties": {"slug": SLUG, "name": NAME},
    },
)
component(
    "Organization",
    {
        "type": "object",
        "required": ["id", "slug", "name", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "created_at": TIMESTAMP,
        },
    },
)
component(
    "OrganizationList",
    {
        "type": "object",
        "required": ["organizations"],
        "properties": {"organizations": {"type": "array", "items": ref("Organization")}},
    },
)


@operation(
    bp,
    "POST",
    "/organizations",
    summary="Create an organization (operators and platform keys only)",
    ok=201,
    body="CreateOrganization",
    response=ref("Organization"),
)
def create_organization(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Operators and platform keys create organizations; its first owner is then added
    through /users."""
    access.require_platform()
    with (
        conflict_on_duplicate(f"Organization slug '{payload['slug']}' is already taken"),
        runtime().db.write() as session,
    ):
        org = organizations.create(session, access.actor(), payload["slug"], payload["name"])
        answer = organization_json(org)
    return answer, 201


@operation(
    bp,
    "GET",
    "/organizations",
    summary="List organizations (operators: all; accounts and keys: their own)",
    response=ref("OrganizationList"),
)
def list_organizations() -> dict[str, Any]:
    """Platform callers see every organization; anyone else sees only their own."""
    caller = access.principal()
    with runtime().db.read() as session:
        if isinstance(caller, AccountPrincipal):
            found = [session.get_one(Organization, caller.account.organization_id)]
        elif isinstance(caller, KeyPrincipal):
            found = [session.get_one(Organization, caller.organization_id)]
        else:
            found = organizations.listing(session)
        return {"organizations": [organization_json(org) for org in found]}


@operation(
    bp,
    "GET",
    "/organizations/<org>",
    summary="Get an organization",
    response=ref("Organization"),
)
def get_organization(org: str) -> dict[str, Any]:
    """Any account of the organization may read it."""
    with runtime().db.read() as session:
        return organization_json(access.organization(session, org, Need.READ, "read:service"))


@operation(
    bp,
    "DELETE",
    "/organizations/<org>",
    summary="Delete an organization and everything it owns (operators and platform keys only)",
    ok=204,
)
def delete_organization(org: str) -> tuple[str, int]:
    """Accounts, their tokens and sign-ins, services, keys and certificates all go."""
    access.require_platform()
    rt = runtime()
    with rt.db.write() as session:
        organizations.remove(session, access.actor(), organizations.find(session, org))
    rt.store.announce_change(org)
    return "", 204
