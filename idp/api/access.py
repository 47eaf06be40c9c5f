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
    PLATFORM,
    PLATFORM_KEY_PREFIX,
    AccountPrincipal,
    KeyPrincipal,
    OperatorPrincipal,
    Principal,
    authenticate,
)
from idp.domain import organizations
from idp.domain.accounts import MANAGER_ROLES, ROLES
from idp.runtime import runtime
from idp.store.models import Organization, Service

MAX_CREDENTIAL_LENGTH = 256


class Need(Enum):
    """The role an account needs: any account, owner/admin, or owner."""

    READ = ROLES
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
    is_key = credential.startswith((KEY_PREFIX, PLATFORM_KEY_PREFIX))
    with db.write() if is_key else db.read() as session:
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
    if isinstance(caller, AccountPrincipal):
        return Actor("user", caller.account.id)
    if isinstance(caller, OperatorPrincipal):
        return Actor("operator", caller.operator.id)
    return Actor("platform_key", caller.key_id)


def is_platform() -> bool:
    """True for operators and platform keys, who act in every organization as owners."""
    return isinstance(principal(), PLATFORM)


def require_platform() -> None:
    """Only operators and platform keys may do this."""
    if not is_platform():
        raise forbidden("Only platform operators and platform API keys can do this")


def caller_role(org: Organization) -> str:
    """The caller's role in an organization it may act in (platform callers: owner)."""
    caller = principal()
    if isinstance(caller, AccountPrincipal) and caller.account.organization_id == org.id:
        return caller.account.role
    if isinstance(caller, KeyPrincipal):
        raise forbidden("API keys cannot do this; sign in as a user")
    return "owner"


def organization(
    session: Session, slug: str, need: Need, permission: str | None = None
) -> Organization:
    """The organization, if the caller may act on it with that role or key permission.

    Another organization's accounts and keys are told it does not exist (404).
    """
    org = _visible_organization(session, slug)
    caller = principal()
    if isinstance(caller, KeyPrincipal):
        _check_permission(caller, permission)
    elif isinstance(caller, AccountPrincipal) and caller.account.role not in need.value:
        raise forbidden(f"This needs the {_role_words(need)} role in '{slug}'")
    return org


def service(
    session: Session, org_slug: str, svc_slug: str, need: Need, permission: str | None = None
) -> tuple[Organization, Service]:
    """The organization and service, if the caller may act on the service (a service key
    is told other services do not exist, whatever the route asks: its permission is checked
    only once the service is found to be its own)."""
    caller = principal()
    key = caller if isinstance(caller, KeyPrincipal) else None
    if key is None:
        org = organization(session, org_slug, need, permission)
    else:
        org = _visible_organization(session, org_slug)
    svc = session.scalar(
        select(Service).where(Service.organization_id == org.id, Service.slug == svc_slug)
    )
    if svc is None or (key is not None and key.service_id != svc.id):
        raise not_found(f"Service '{svc_slug}' not found in organization '{org_slug}'")
    if key is not None:
        _check_permission(key, permission)
    return org, svc


def _visible_organization(session: Session, slug: str) -> Organization:
    """The organization, unless it does not exist or is another one than the caller's
    (an account's or a service key's): both are the same 404."""
    org = organizations.by_slug(session, slug)
    missing = not_found(f"Organization '{slug}' not found")
    if org is None:
        raise missing
    caller = principal()
    if isinstance(caller, KeyPrincipal) and caller.organization_id != org.id:
        raise missing
    if isinstance(caller, AccountPrincipal) and caller.account.organization_id != org.id:
        raise missing
    return org


def _check_permission(caller: KeyPrincipal, permission: str | None) -> None:
    if permission is None:
        raise forbidden("API keys cannot do this; sign in as a user")
    if permission not in caller.permissions:
        raise forbidden(f"This API key lacks the '{permission}' permission")


def _role_words(need: Need) -> str:
    return " or ".join(need.value) if need is not Need.READ else "member"
