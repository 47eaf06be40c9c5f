"""Second factors of an account: a TOTP authenticator, recovery codes, and their bookkeeping.

TOTP follows RFC 6238 as authenticator apps do (SHA-1, 6 digits, 30 s steps), accepting one
step either side; each code is accepted once (Redis remembers the step it was used for). The
seed is encrypted at rest like signing keys. Recovery codes are ten one-time codes, hashed with
argon2 like passwords. Passkeys are in :mod:`idp.domain.passkeys`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.domain import accounts
from idp.runtime import Runtime
from idp.store.models import Account, Organization, Passkey, RecoveryCode, TotpFactor, utcnow

TOTP_STEP_S = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps accepted either side of now
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
RECOVERY_HALF = 5
MAX_CODE = 64


@dataclass(frozen=True)
class Factors:
    """What an account has enrolled."""

    totp: bool
    passkeys: int
    recovery_codes_left: int

    @property
    def any(self) -> bool:
        """True when the account has a second factor (recovery codes alone are not one)."""
        return self.totp or self.passkeys > 0

    def summary(self) -> dict[str, Any]:
        """The account JSON's ``mfa``: {totp, passkeys}."""
        return {"totp": self.totp, "passkeys": self.passkeys}


def factors(session: Session, account_id: str) -> Factors:
    """The account's enrolled factors, in one query."""
    return factors_of(session, [account_id]).get(account_id, Factors(False, 0, 0))


def factors_of(session: Session, account_ids: list[str]) -> dict[str, Factors]:
    """The enrolled factors of several accounts (accounts with none may be left out)."""
    if not account_ids:
        return {}
    passkeys = (
        select(func.count()).where(Passkey.account_id == Account.id).scalar_subquery()
    )
    codes = (
        select(func.count())
        .where(RecoveryCode.account_id == Account.id, RecoveryCode.used_at.is_(None))
        .scalar_subquery()
    )
    query = (
        select(Account.id, TotpFactor.account_id, passkeys, codes)
        .outerjoin(TotpFactor, TotpFactor.account_id == Account.id)
        .where(Account.id.in_(account_ids))
    )
    return {
        row[0]: Factors(row[1] is not None, int(row[2]), int(row[3]))
        for row in session.execute(query)
    }


# -- TOTP ---------------------------------------------------------------------


def new_totp_seed() -> str:
    """A fresh 160-bit TOTP seed, base32 as authenticator apps take it."""
    return pyotp.random_base32(32)


def totp_uri(seed: str, account: Account, org: Organization) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return pyotp.TOTP(seed).provisioning_uri(name=account.email, issuer_name=org.name)


def matching_step(seed: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (within the window), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(seed, digits=TOTP_DIGITS, interval=TOTP_STEP_S)
    now = time.time() if now is None else now
    step = int(now // TOTP_STEP_S)
    found = None
    for candidate in range(step - TOTP_WINDOW, step + TOTP_WINDOW + 1):
        expected = totp.at(candidate * TOTP_STEP_S)
        if hmac.compare_digest(expected.encode(), code.encode()):
            found = candidate  # no early exit: the same work for every code
    return found


def use_totp_step(rt: Runtime, account_id: str, step: int) -> bool:
    """Spend the code of this step: False when it was used before."""
    ttl = (2 * TOTP_WINDOW + 2) * TOTP_STEP_S
    return rt.store.first_use(f"totp:{account_id}:{step}", ttl)


def check_totp(rt: Runtime, account_id: str, code: str) -> bool:
    """True for a current, unused code of the account's authenticator (then it is used up)."""
    with rt.db.read() as session:
        factor = session.get(TotpFactor, account_id)
    if factor is None:
        return False
    seed = keys.decrypt_totp_secret(account_id, factor.secret_encrypted, rt.settings)
    step = matching_step(seed, code)
    if step is None or not use_totp_step(rt, account_id, step):
        return False
    with rt.db.write() as session:
        session.execute(
            update(TotpFactor)
            .where(TotpFactor.account_id == account_id)
            .values(last_used_at=utcnow())
        )
    return True


def enrol_totp(
    rt: Runtime, session: Session, actor: audit.Actor, account: Account, seed: str
) -> list[str] | None:
    """Store a confirmed authenticator (replacing one the account had); returns new recovery
    codes when this is the account's first factor, else None."""
    first = not factors(session, account.id).any
    session.execute(delete(TotpFactor).where(TotpFactor.account_id == account.id))
    secret = keys.encrypt_totp_secret(account.id, seed, rt.settings.secret_key)
    session.add(TotpFactor(account_id=account.id, secret_encrypted=secret))
    record(session, actor, account, "mfa.totp.enrolled")
    return new_recovery_codes(rt, session, actor, account) if first else None


def remove_totp(session: Session, actor: audit.Actor, account: Account) -> bool:
    """Remove the account's authenticator; False when it had none."""
    removed = session.execute(delete(TotpFactor).where(TotpFactor.account_id == account.id))
    if not removed.rowcount:  # type: ignore[attr-defined]
        return False
    record(session, actor, account, "mfa.totp.removed")
    return True


# -- recovery codes -----------------------------------------------------------


def new_recovery_codes(
    rt: Runtime, session: Session, actor: audit.Actor, account: Account
) -> list[str]:
    """Replace the account's recovery codes with ten new ones, returned once in clear."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    session.add_all(
        RecoveryCode(account_id=account.id, code_hash=rt.passwords.hash(code)) for code in codes
    )
    record(session, actor, account, "mfa.recovery_codes.generated")
    return codes


def use_recovery_code(rt: Runtime, account_id: str, code: str) -> bool:
    """Spend one unused recovery code of the account; False when none matches."""
    typed = normalize_recovery_code(code)
    if typed is None:
        return False
    with rt.db.read() as session:
        unused = session.execute(
            select(RecoveryCode.id, RecoveryCode.code_hash).where(
                RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    match = next((row.id for row in unused if rt.passwords.verify(row.code_hash, typed)), None)
    if match is None:
        return False
    with rt.db.write() as session:  # only one concurrent use of a code wins
        spent = session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.id == match, RecoveryCode.used_at.is_(None))
            .values(used_at=utcnow())
        )
        return bool(spent.rowcount)  # type: ignore[attr-defined]


def normalize_recovery_code(code: str) -> str | None:
    """``xxxxx-xxxxx`` as shown, whatever case, spaces or dash it was typed with."""
    raw = "".join(code[:MAX_CODE].lower().split()).replace("-", "")
    if len(raw) != 2 * RECOVERY_HALF or any(ch not in RECOVERY_ALPHABET for ch in raw):
        return None
    return f"{raw[:RECOVERY_HALF]}-{raw[RECOVERY_HALF:]}"


def _recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(2 * RECOVERY_HALF))
    return f"{raw[:RECOVERY_HALF]}-{raw[RECOVERY_HALF:]}"


# -- any code, reset, audit ---------------------------------------------------------


def check_code(rt: Runtime, account_id: str, code: str) -> str | None:
    """Which factor a typed code is ("totp" or "recovery_code"), spending it; None if neither."""
    if check_totp(rt, account_id, code):
        return "totp"
    if use_recovery_code(rt, account_id, code):
        return "recovery_code"
    return None


def reset(session: Session, actor: audit.Actor, org: Organization, account: Account) -> None:
    """Remove every factor and recovery code of the account and end its sign-ins."""
    for model in (TotpFactor, Passkey, RecoveryCode):
        session.execute(delete(model).where(model.account_id == account.id))
    accounts.revoke(session, account)
    audit.record(
        session,
        actor,
        "mfa.reset",
        "user",
        account.id,
        organization_id=org.id,
        user_id=account.id,
        after={"sign_ins_ended": True},
    )


def record(
    session: Session,
    actor: audit.Actor,
    account: Account,
    action: str,
    after: dict[str, Any] | None = None,
) -> None:
    """An enrolment or removal in the audit trail (never a secret)."""
    audit.record(
        session,
        actor,
        action,
        "user",
        account.id,
        organization_id=account.organization_id,
        user_id=account.id,
        after=after,
    )
