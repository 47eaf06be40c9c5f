"""Password sign-in, for the login page and POST /api/auth/login alike.

Throttled before the password is checked (per email within its organization, and per client
address); the password is verified in the same time whether or not the account exists; a hash
made under older argon2 parameters is replaced on success. The audit trail records the
outcome, and of a failed attempt only what identifies an existing account: what was typed
into the email field (sometimes a password) is never kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
from sqlalchemy import update

from idp import audit
from idp.auth import address_subject, login_subjects
from idp.domain import accounts, mfa, operators, organizations
from idp.domain.errors import Throttled, WrongCredentials
from idp.runtime import Runtime
from idp.store.models import Account, Operator, Organization

log = logging.getLogger(__name__)
T = TypeVar("T")

WRONG_CREDENTIALS = "Invalid email or password"


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt: what was typed, where it aims, where it comes from."""

    email: str
    password: str
    organization: str | None  # a slug; None signs in an operator
    address: str
    via: str  # "page" or "api"
    service_id: str | None = None  # the service being signed in to, from the login page
    code: str | None = None  # the API's second factor: a TOTP or recovery code


@dataclass(frozen=True)
class Verified:
    """A right password, and whether the account still owes its second factor (the login
    page asks for it next; the API takes it with the password)."""

    subject: Account | Operator
    factor_required: bool


def sign_in(rt: Runtime, attempt: Attempt, throttle_required: bool) -> Verified:
    """The account (or operator) whose password this is, or raise WrongCredentials/Throttled.

    ``throttle_required``: during a Redis outage the login page fails (it needs Redis for the
    session anyway), while the API login goes on unthrottled (argon2 still slows guessing).
    An account with a second factor stays counted against the throttle until it is given:
    a right password alone never clears the count its codes are guessed against.
    """
    email = accounts.normalize_email(attempt.email)
    subjects = login_subjects(rt.settings, attempt.organization, email, attempt.address)
    window = rt.settings.login_throttle_window
    retry_after = _throttle(lambda: rt.store.take_attempt(subjects, window), throttle_required)
    if retry_after:
        raise Throttled(retry_after)
    org, found, factors = _find(rt, attempt.organization, email)
    subject = None if isinstance(found, Account) and found.disabled else found
    stored = subject.password_hash if subject is not None else None
    if not rt.passwords.verify(stored, attempt.password) or subject is None:
        _record(rt, attempt, org, found, "login.failure")  # a disabled account is named too
        raise WrongCredentials(WRONG_CREDENTIALS)
    if stored is not None and rt.passwords.needs_rehash(stored):
        _rehash(rt, subject, attempt.password)
    if factors.any and attempt.via == "page":  # the factor step counts its own attempt
        address = next(iter(address_subject(rt.settings, attempt.address)))
        _throttle(lambda: rt.store.give_back(address), throttle_required)
        return Verified(subject, factor_required=True)
    if factors.any and not mfa.check_code(rt, subject.id, attempt.code or ""):
        _record(rt, attempt, org, subject, "mfa.failure")
        raise WrongCredentials(WRONG_CREDENTIALS)
    _throttle(lambda: rt.store.login_succeeded(*subjects), throttle_required)
    _record(rt, attempt, org, subject, "login.success")
    return Verified(subject, factor_required=False)


@dataclass(frozen=True)
class FactorAttempt:
    """A second factor given on the login page for an account whose password was right."""

    organization: Organization
    account: Account
    factor: str  # "totp", "recovery_code" or "passkey"; "code" when a typed code matched none
    ok: bool
    address: str
    service_id: str | None = None


def throttle_factor(rt: Runtime, org_slug: str, email: str, address: str) -> None:
    """Count a second-factor attempt like a password attempt (Throttled when over)."""
    subjects = login_subjects(rt.settings, org_slug, email, address)
    retry_after = rt.store.take_attempt(subjects, rt.settings.login_throttle_window)
    if retry_after:
        raise Throttled(retry_after)


def throttle_address(rt: Runtime, address: str) -> None:
    """Count a sign-in attempt that names no account (a passkey on the first screen) against
    the client address alone."""
    subjects = address_subject(rt.settings, address)
    retry_after = rt.store.take_attempt(subjects, rt.settings.login_throttle_window)
    if retry_after:
        raise Throttled(retry_after)


def factor_outcome(rt: Runtime, attempt: FactorAttempt) -> None:
    """Record a second factor's outcome; a good one completes the sign-in (its throttle count
    is forgiven), a bad one raises WrongCredentials."""
    org, account = attempt.organization, attempt.account
    page = Attempt(account.email, "", org.slug, attempt.address, "page", attempt.service_id)
    if not attempt.ok:
        _record(rt, page, org, account, "mfa.failure", {"factor": attempt.factor})
        raise WrongCredentials("That code or passkey was not accepted")
    rt.store.login_succeeded(*login_subjects(rt.settings, org.slug, account.email, page.address))
    _record(rt, page, org, account, "login.success", {"factor": attempt.factor})


def _find(
    rt: Runtime, organization: str | None, email: str
) -> tuple[Organization | None, Account | Operator | None, mfa.Factors]:
    none = mfa.Factors(False, 0, 0)
    with rt.db.read() as session:
        if organization is None:
            return None, operators.by_email(session, email), none
        org = organizations.by_slug(session, organization)
        account = None if org is None else accounts.by_email(session, org.id, email)
        factors = none if account is None else mfa.factors(session, account.id)
    return org, account, factors


def _rehash(rt: Runtime, subject: Account | Operator, password: str) -> None:
    """Store the password under the current argon2 parameters."""
    new_hash = rt.passwords.hash(password)
    model = Account if isinstance(subject, Account) else Operator
    with rt.db.write() as session:
        session.execute(
            update(model)
            .where(model.id == subject.id, model.password_hash == subject.password_hash)
            .values(password_hash=new_hash)
        )


def _throttle(step: Callable[[], T], required: bool) -> T | None:
    try:
        return step()
    except redis.RedisError as exc:
        if required:
            raise
        log.warning("login throttle unavailable: %s", exc.__class__.__name__)
        return None


def _record(
    rt: Runtime,
    attempt: Attempt,
    org: Organization | None,
    subject: Account | Operator | None,
    action: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Queue the outcome for the audit trail: never the password, and the email only when
    it is an existing account's (or operator's)."""
    after: dict[str, str] = {"address": attempt.address, "via": attempt.via, **(extra or {})}
    if subject is not None:
        after["email"] = subject.email
    actor = audit.Actor("anonymous")
    if subject is not None and action == "login.success":
        actor = audit.Actor("user" if isinstance(subject, Account) else "operator", subject.id)
    event = audit.queued(
        actor,
        action,
        "login",
        organization_id=org.id if org is not None else None,
        service_id=attempt.service_id,
        user_id=subject.id if isinstance(subject, Account) else None,
        after=after,
    )
    try:
        audit.flush_when_due(rt, rt.store.queue_event(event))
    except redis.RedisError as exc:
        log.warning("login event not queued: %s", exc.__class__.__name__)
