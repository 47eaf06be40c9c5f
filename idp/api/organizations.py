"""Organizations, their members, and their users."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit
from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict, conflict_on_duplicate, forbidden, not_found
from idp.api.openapi import component, operation, ref
from idp.api.shapes import (
    OPTIONAL_STRING,
    TIMESTAMP,
    member_json,
    org_user_json,
    organization_json,
)
from idp.auth import ROLES, KeyPrincipal, UserPrincipal, membership
from idp.runtime import runtime
from idp.store.models import SLUG_PATTERN, Membership, Organization, User

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
EMAIL = {"type": "string", "format": "email", "maxLength": 320}
ROLE = {"type": "string", "enum": list(ROLES)}

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
    "AddMember",
    {
        "type": "object",
        "required": ["email", "role"],
        "additionalProperties": False,
        "properties": {"email": EMAIL, "role": ROLE},
    },
)
component(
    "Member",
    {
        "type": "object",
        "required": ["user_id", "email", "role"],
        "properties": {"user_id": {"type": "string"}, "email": {"type": "string"}, "role": ROLE},
    },
)
component(
    "MemberList",
    {
        "type": "object",
        "required": ["members"],
        "properties": {"members": {"type": "array", "items": ref("Member")}},
    },
)
component(
    "CreateUser",
    {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": {
            "email": EMAIL,
            "name": {"type": ["string", "null"], "maxLength": 200},
            "given_name": {"type": ["string", "null"], "maxLength": 200},
            "family_name": {"type": ["string", "null"], "maxLength": 200},
            "groups": {
                "type": "array",
                "maxItems": 100,
                "uniqueItems": True,
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
            },
            "password": {"type": ["string", "null"], "minLength": 8, "maxLength": 1024},
            "role": ROLE,
        },
    },
)
component(
    "User",
    {
        "type": "object",
        "required": ["id", "email", "name", "given_name", "family_name", "groups", "role"],
        "properties": {
            "id": {"type": "string"},
            "email": {"type": "string"},
            "name": OPTIONAL_STRING,
            "given_name": OPTIONAL_STRING,
            "family_name": OPTIONAL_STRING,
            "groups": {"type": "array", "items": {"type": "string"}},
            "role": ROLE,
        },
    },
)
component(
    "UserList",
    {
        "type": "object",
        "required": ["users"],
        "properties": {"users": {"type": "array", "items": ref("User")}},
    },
)


@operation(
    bp,
    "POST",
    "/organizations",
    summary="Create an organization; the caller becomes its owner",
    ok=201,
    body="CreateOrganization",
    response=ref("Organization"),
)
def create_organization(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Create the organization and the caller's owner membership in one transaction."""
    caller = access.actor_user()
    with (
        conflict_on_duplicate(f"Organization slug '{payload['slug']}' is already taken"),
        runtime().db.write() as session,
    ):
        org = Organization(slug=payload["slug"], name=payload["name"].strip())
        session.add(org)
        session.flush()
        session.add(Membership(organization_id=org.id, user_id=caller.user.id, role="owner"))
        audit.record(
            session,
            access.actor(),
            "organization.create",
            "organization",
            org.id,
            organization_id=org.id,
            after=organization_json(org),
        )
    return organization_json(org), 201


@operation(
    bp,
    "GET",
    "/organizations/<org>",
    summary="Get an organization",
    response=ref("Organization"),
)
def get_organization(org: str) -> dict[str, Any]:
    """Any member may read the organization."""
    with runtime().db.read() as session:
        return organization_json(access.organization(session, org, Need.READ))


@operation(
    bp,
    "POST",
    "/organizations/<org>/members",
    summary="Add an existing user as a member",
    ok=201,
    body="AddMember",
    response=ref("Member"),
)
def add_member(org: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Owners and admins add members; only owners grant the owner role."""
    email = payload["email"].strip().lower()
    with runtime().db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        _check_grant(session, organization, payload["role"])
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            raise not_found(f"No user with email '{email}'; create it through /users first")
        if membership(session, organization.id, user.id) is not None:
            raise conflict(f"'{email}' is already a member of '{org}'")
        member = Membership(organization_id=organization.id, user_id=user.id, role=payload["role"])
        member.user = user
        session.add(member)
        audit.record(
            session,
            access.actor(),
            "member.add",
            "member",
            user.id,
            organization_id=organization.id,
            after=member_json(member),
        )
        response = member_json(member)
    runtime().store.announce_change(org)
    return response, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/members",
    summary="List members",
    response=ref("MemberList"),
)
def list_members(org: str) -> dict[str, Any]:
    """Any member may list the members."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ)
        return {"members": [member_json(m) for m in _members(session, organization)]}


@operation(
    bp,
    "POST",
    "/organizations/<org>/users",
    summary="Create a user (or attach an existing one) as a member",
    ok=201,
    body="CreateUser",
    response=ref("User"),
)
def create_user(org: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A new user gets the given profile and password; an existing one keeps its own."""
    email = payload["email"].strip().lower()
    role = payload.get("role") or "member"
    rt = runtime()
    password = payload.get("password")
    password_hash = rt.passwords.hash(password) if password else None
    with (
        conflict_on_duplicate(f"'{email}' is already a member of '{org}'"),
        rt.db.write() as session,
    ):
        organization = access.organization(session, org, Need.MANAGE, "write:users")
        _check_grant(session, organization, role)
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            user = User(
                email=email,
                name=payload.get("name"),
                given_name=payload.get("given_name"),
                family_name=payload.get("family_name"),
                password_hash=password_hash,
            )
            session.add(user)
            session.flush()
        elif membership(session, organization.id, user.id) is not None:
            raise conflict(f"'{email}' is already a member of '{org}'")
        member = Membership(
            organization_id=organization.id,
            user_id=user.id,
            role=role,
            groups=list(payload.get("groups") or []),
        )
        member.user = user
        session.add(member)
        audit.record(
            session,
            access.actor(),
            "user.create",
            "user",
            user.id,
            organization_id=organization.id,
            after=org_user_json(member),
        )
        response = org_user_json(member)
    rt.store.announce_change(org)
    return response, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/users",
    summary="List the users of an organization",
    response=ref("UserList"),
)
def list_users(org: str) -> dict[str, Any]:
    """Members, or API keys with read:users."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ, "read:users")
        return {"users": [org_user_json(m) for m in _members(session, organization)]}


def _members(session: Session, org: Organization) -> list[Membership]:
    query = (
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org.id)
        .order_by(User.email)
    )
    return list(session.scalars(query))


def _check_grant(session: Session, org: Organization, role: str) -> None:
    """Only owners grant owner; API keys grant only member."""
    caller = access.principal()
    if isinstance(caller, KeyPrincipal):
        if role != "member":
            raise forbidden("API keys can only add users with the member role")
        return
    assert isinstance(caller, UserPrincipal)
    if role == "owner":
        granted = membership(session, org.id, caller.user.id)
        if granted is None or granted.role != "owner":
            raise forbidden("Only owners can grant the owner role")
