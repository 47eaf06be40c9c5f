"""Accounts of an organization: /organizations/{org}/users."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from idp.api import access
from idp.api.access import Need
from idp.api.errors import conflict_on_duplicate
from idp.api.openapi import component, operation, ref
from idp.api.shapes import GROUPS, OPTIONAL_STRING
from idp.domain import accounts, mfa
from idp.domain.accounts import ROLES, account_json
from idp.runtime import runtime
from idp.store.models import Account

bp = Blueprint("accounts", __name__)

EMAIL = {"type": "string", "format": "email", "maxLength": 320}
ROLE = {"type": "string", "enum": list(ROLES)}
PROFILE = {
    "email": EMAIL,
    "name": {"type": ["string", "null"], "maxLength": 200},
    "given_name": {"type": ["string", "null"], "maxLength": 200},
    "family_name": {"type": ["string", "null"], "maxLength": 200},
    "groups": GROUPS,
    "password": {"type": ["string", "null"], "minLength": 8, "maxLength": 1024},
    "role": ROLE,
}

component(
    "CreateUser",
    {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": PROFILE,
    },
)
component(
    "UpdateUser",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {**PROFILE, "disabled": {"type": "boolean"}},
    },
)
component(
    "User",
    {
        "type": "object",
        "required": [
            "id",
            "email",
            "name",
            "given_name",
            "family_name",
            "groups",
            "role",
            "disabled",
            "mfa",
        ],
        "properties": {
            "id": {"type": "string"},
            "email": {"type": "string"},
            "name": OPTIONAL_STRING,
            "given_name": OPTIONAL_STRING,
            "family_name": OPTIONAL_STRING,
            "groups": {"type": "array", "items": {"type": "string"}},
            "role": ROLE,
            "disabled": {"type": "boolean"},
            "mfa": {
                "type": "object",
                "required": ["totp", "passkeys"],
                "properties": {
                    "totp": {"type": "boolean"},
                    "passkeys": {"type": "integer", "minimum": 0},
                },
            },
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
    "/organizations/<org>/users",
    summary="Create an account in the organization",
    ok=201,
    body="CreateUser",
    response=ref("User"),
)
def create_user(org: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Owners and admins (only owners grant owner); 409 when the email has an account here."""
    rt = runtime()
    email = accounts.normalize_email(payload["email"])
    with (
        conflict_on_duplicate(f"'{email}' already has an account in '{org}'"),
        rt.db.write() as session,
    ):
        organization = access.organization(session, org, Need.MANAGE)
        account = accounts.create(
            session,
            access.actor(),
            organization,
            payload,
            rt.passwords,
            access.caller_role(organization),
        )
        answer = _user(session, account)
    return answer, 201


@operation(
    bp,
    "GET",
    "/organizations/<org>/users",
    summary="List the accounts of an organization",
    response=ref("UserList"),
)
def list_users(org: str) -> dict[str, Any]:
    """Any account of the organization, or a service key with read:users."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ, "read:users")
        listed = accounts.listing(session, organization)
        factors = mfa.factors_of(session, [a.id for a in listed])
        return {"users": [_user(session, a, factors.get(a.id)) for a in listed]}


@operation(
    bp,
    "GET",
    "/organizations/<org>/users/<user_id>",
    summary="Get an account",
    response=ref("User"),
)
def get_user(org: str, user_id: str) -> dict[str, Any]:
    """Any account of the organization, or a service key with read:users."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ, "read:users")
        return _user(session, accounts.find(session, organization, user_id))


@operation(
    bp,
    "PATCH",
    "/organizations/<org>/users/<user_id>",
    summary="Change an account (profile, role, password, disabled)",
    body="UpdateUser",
    response=ref("User"),
)
def update_user(org: str, user_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A new password or disabling ends the account's sign-ins and revokes its tokens."""
    rt = runtime()
    with (
        conflict_on_duplicate(f"That email already has an account in '{org}'"),
        rt.db.write() as session,
    ):
        organization = access.organization(session, org, Need.MANAGE)
        account = accounts.find(session, organization, user_id)
        accounts.update(
            session,
            access.actor(),
            organization,
            account,
            payload,
            rt.passwords,
            access.caller_role(organization),
        )
        answer = _user(session, account)
    rt.store.announce_change(org)
    return answer


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/users/<user_id>",
    summary="Delete an account (its sign-ins end, its tokens and subscriptions go)",
    ok=204,
)
def delete_user(org: str, user_id: str) -> tuple[str, int]:
    """Owners and admins; the last owner cannot be deleted."""
    rt = runtime()
    with rt.db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        account = accounts.find(session, organization, user_id)
        accounts.remove(
            session, access.actor(), organization, account, access.caller_role(organization)
        )
    rt.store.announce_change(org)
    return "", 204


@operation(
    bp,
    "DELETE",
    "/organizations/<org>/users/<user_id>/mfa",
    summary="Reset an account's second factors (its sign-ins end, its tokens are revoked)",
    ok=204,
)
def reset_mfa(org: str, user_id: str) -> tuple[str, int]:
    """Owners and admins (only owners reset an owner's); for someone who lost every factor."""
    rt = runtime()
    with rt.db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        account = accounts.find(session, organization, user_id)
        accounts.check_may_change(access.caller_role(organization), account)
        mfa.reset(session, access.actor(), organization, account)
    rt.store.announce_change(org)
    return "", 204


def _user(session: Session, account: Account, factors: mfa.Factors | None = None) -> dict[str, Any]:
    """User JSON with its second factors: {..., mfa: {totp, passkeys}}."""
    factors = factors or mfa.factors(session, account.id)
    return {**account_json(account), "mfa": factors.summary()}
