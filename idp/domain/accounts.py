"""Accounts of an organization: create, change, disable, delete, and the role rules.

``caller_role`` is the caller's role in the organization; operators, platform keys, the CLI
and provisioning act with owner rights. Only owners grant or remove ``owner`` (and only they
change an owner's account); the last owner can be neither removed, demoted nor disabled.
Changing a password, disabling an account or resetting its factors ends its sign-ins and
revokes its tokens at once (:func:`revoke`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from idp import audit
from idp.auth import Passwords
from idp.domain.errors import Conflict, Forbidden, NotFound
from idp.store.models import Account, AuthToken, Organization

ROLES = ("owner", "admin", "member")
MANAGER_ROLES = ("owner", "admin")
PROFILE_FIELDS = ("email", "name", "given_name", "family_name", "groups")


def normalize_email(email: str) -> str:
    """Emails are compared without regard to case or surrounding spaces."""
    return email.strip().lower()


def account_json(account: Account) -> dict[str, Any]:
    """User {id, email, name, given_name, family_name, groups, role, disabled}."""
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "given_name": account.given_name,
        "family_name": account.family_name,
        "groups": list(account.groups),
        "role": account.role,
        "disabled": account.disabled,
    }


def by_email(session: Session, organization_id: str, email: str) -> Account | None:
    """The organization's account with this email. An email holding NUL names nobody (no
    account can have one, and PostgreSQL could not even compare it)."""
    email = normalize_email(email)
    if "\x00" in email:
        return None
    return session.scalar(
        select(Account).where(Account.organization_id == organization_id, Account.email == email)
    )


def find(session: Session, org: Organization, account_id: str) -> Account:
    """The organization's account with this id; another organization's is not found."""
    account = session.get(Account, account_id) if len(account_id) <= 36 else None
    if account is None or account.organization_id != org.id:
        raise NotFound(f"No user '{account_id}' in organization '{org.slug}'")
    return account


def listing(session: Session, org: Organization) -> list[Account]:
    """The organization's accounts, by email."""
    query = select(Account).where(Account.organization_id == org.id).order_by(Account.email)
    return list(session.scalars(query))


def create(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    fields: dict[str, Any],
    passwords: Passwords,
    caller_role: str,
) -> Account:
    """A new account of the organization (409 when the email already has one here)."""
    role = fields.get("role") or "member"
    _check_grant(caller_role, role)
    email = normalize_email(fields["email"])
    _lock(session, org)
    if by_email(session, org.id, email) is not None:
        raise Conflict(f"'{email}' already has an account in '{org.slug}'")
    password = fields.get("password")
    account = Account(
        organization_id=org.id,
        email=email,
        name=fields.get("name"),
        given_name=fields.get("given_name"),
        family_name=fields.get("family_name"),
        groups=list(fields.get("groups") or []),
        role=role,
        disabled=bool(fields.get("disabled", False)),
        password_hash=passwords.hash(password) if password else None,
    )
    session.add(account)
    session.flush()
    _record(session, actor, org, account, "user.create", None)
    return account


def update(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    account: Account,
    fields: dict[str, Any],
    passwords: Passwords,
    caller_role: str,
) -> bool:
    """Change the given fields; returns True when the account's sign-ins were ended."""
    check_may_change(caller_role, account)
    role = fields.get("role") or account.role
    if role != account.role:
        _check_grant(caller_role, role)
    _lock(session, org)
    losing_owner = account.role == "owner" and not account.disabled
    if losing_owner and (role != "owner" or fields.get("disabled")):
        _check_not_last_owner(session, org, account)
    if "email" in fields:
        email = normalize_email(fields["email"])
        other = by_email(session, org.id, email)
        if other is not None and other.id != account.id:
            raise Conflict(f"'{email}' already has an account in '{org.slug}'")
        fields = {**fields, "email": email}
    before = account_json(account)
    for name in PROFILE_FIELDS:
        if name in fields:
            setattr(account, name, fields[name] if name != "groups" else list(fields[name] or []))
    account.role = role
    ends_sign_ins = bool(fields.get("password")) or (
        fields.get("disabled", account.disabled) and not account.disabled
    )
    if "disabled" in fields:
        account.disabled = bool(fields["disabled"])
    if fields.get("password"):
        account.password_hash = passwords.hash(fields["password"])
    if ends_sign_ins:
        revoke(session, account)
    session.flush()
    _record(session, actor, org, account, "user.update", before, revoked=ends_sign_ins)
    return ends_sign_ins


def remove(
    session: Session, actor: audit.Actor, org: Organization, account: Account, caller_role: str
) -> None:
    """Delete the account (its subscriptions and tokens go with it, its sign-ins end)."""
    check_may_change(caller_role, account)
    _lock(session, org)
    if account.role == "owner" and not account.disabled:
        _check_not_last_owner(session, org, account)
    before = account_json(account)
    session.delete(account)
    session.flush()
    audit.record(
        session,
        actor,
        "user.delete",
        "user",
        before["id"],
        organization_id=org.id,
        user_id=before["id"],
        before=before,
    )


def revoke(session: Session, account: Account) -> None:
    """End every sign-in of the account (its generation moves on) and revoke its tokens."""
    account.generation += 1
    session.execute(delete(AuthToken).where(AuthToken.account_id == account.id))


def _lock(session: Session, org: Organization) -> None:
    """Serialize account changes of one organization (owner counts, email uniqueness)."""
    session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())


def _check_grant(caller_role: str, role: str) -> None:
    if caller_role not in MANAGER_ROLES:
        raise Forbidden("This needs the owner or admin role")
    if role == "owner" and caller_role != "owner":
        raise Forbidden("Only owners grant the owner role")


def check_may_change(caller_role: str, account: Account) -> None:
    """Owners and admins change accounts; only owners change an owner's."""
    if caller_role not in MANAGER_ROLES:
        raise Forbidden("This needs the owner or admin role")
    if account.role == "owner" and caller_role != "owner":
        raise Forbidden("Only owners change or remove an owner's account")


def _check_not_last_owner(session: Session, org: Organization, account: Account) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(Account)
        .where(
            Account.organization_id == org.id,
            Account.role == "owner",
            Account.disabled.is_(False),
            Account.id != account.id,
        )
    )
    if not others:
        raise Conflict(f"'{account.email}' is the last owner of '{org.slug}'; add another first")


def _record(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    account: Account,
    action: str,
    before: dict[str, Any] | None,
    revoked: bool = False,
) -> None:
    after: dict[str, Any] = account_json(account)
    if revoked:
        after = {**after, "sign_ins_ended": True}
    audit.record(
        session,
        actor,
        action,
        "user",
        account.id,
        organization_id=org.id,
        user_id=account.id,
        before=before,
        after=after,
    )
