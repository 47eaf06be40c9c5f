"""Authorization for admin routes: find the resource, then check role or key permission."""

from __future__ import annotations

from enum import Enum

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.api.errors import forbidden, not_found, unauthenticated
from idp.audit import Actor
from idp.auth import (
    KEY_PREFIX,
    MANAGER_ROLES,
    KeyPrincipal,
    Principal,
    UserPrincipal,
    authenticate,
    membership,
)
from idp.runtime import runtime
from idp.store.models import Organization, Service

MAX_CREDENTIAL_LENGTH = 256


class Need(Enum):
    """The role a user needs: any member, owner/admin, or owner."""

    READ = ("owner", "admin", "member")
    MANAGE = MANAGER_ROLES
    OWN = ("owner",)


def authenticate_request() -> None:
    """Resolve the bearer credential of this request into ``g.principal``, or raise 401."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise unauthenticated("Send a bearer token or API key in the Authorization header")
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise unauthenticated("Invalid, expired or revoked credential")
    db = runtime().db
    with db.write() if credential.startswith(KEY_PREFIX) else db.read() as session:
        caller = authenticate(session, credential)
    if caller is None:
        raise unauthenticated("Invalid, expired or revoked credential")
    g.credential = credential
    g.principal = caller


def principal() -> Principal:
    """The authenticated caller of this request."""
    caller: Principal = g.principal
    return caller


def actor() -> Actor:
    """The caller as recorded in the audit trail."""
    caller = principal()
    if isinstance(caller, KeyPrincipal):
        return Actor("api_key", caller.key_id)
    return Actor("user", caller.user.id)


def actor_user() -> UserPrincipal:
    """The caller, who must be a person (not an API key)."""
    caller = principal()
    if not isinstance(caller, UserPrincipal):
        raise forbidden("API keys cannot do this; sign in as a user")
    return caller


def organization(
    session: Session, slug: str, need: Need, permission: str | None = None
) -> Organization:
    """The organization, if the caller may act on it with that role or key permission."""
    org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise not_found(f"Organization '{slug}' not found")
    caller = principal()
    if isinstance(caller, KeyPrincipal):
        if caller.organization_id != org.id:
            raise forbidden("This API key belongs to another organization")
        _check_permission(caller, permission)
        return org
    member = membership(session, org.id, caller.user.id)
    if member is None:
        raise forbidden(f"You are not a member of organization '{slug}'")
    if member.role not in need.value:
        raise forbidden(f"This needs the {_role_words(need)} role in '{slug}'")
    return org


def service(
    session: Session, org_slug: str, svc_slug: str, need: Need, permission: str | None = None
) -> tuple[Organization, Service]:
    """The organization and service, if the caller may act on the service."""
    org = organization(session, org_slug, need, permission)
    svc = session.scalar(
        select(Service).where(Service.organization_id == org.id, Service.slug == svc_slug)
    )
    if svc is None:
        raise not_found(f"Service '{svc_slug}' not found in organization '{org_slug}'")
    caller = principal()
    if isinstance(caller, KeyPrincipal) and caller.service_id != svc.id:
        raise forbidden("This API key acts only on its own service")
    return org, svc


def _check_permission(caller: KeyPrincipal, permission: str | None) -> None:
    if permission is None:
        raise forbidden("API keys cannot do this; sign in as a user")
    if permission not in caller.permissions:
        raise forbidden(f"This API key lacks the '{permission}' permission")


def _role_words(need: Need) -> str:
    return " or ".join(need.value) if need is not Need.READ else "member"
