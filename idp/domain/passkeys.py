"""WebAuthn passkeys and security keys: registration and authentication ceremonies.

The relying party is the IdP's public origin (``IDP_BASE_URL``); its host is the RP ID. User
verification is required in both ceremonies, so a passkey alone is a multi-factor sign-in
(something held, plus the authenticator's PIN or biometric). Sign counters are checked by
py_webauthn and kept.

Challenges are stateless: 16 random bytes, the issue time and an HMAC under the secret key
over both, the ceremony and what the challenge is bound to (the account registering, or the
browser and organization signing in). Nothing is stored for an anonymous page view; a
challenge is spent in Redis only when a response to it verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp import audit
from idp.domain import mfa
from idp.runtime import Runtime
from idp.settings import Settings
from idp.store.models import Account, Organization, Passkey, utcnow

CHALLENGE_TTL_S = 300
TIMEOUT_MS = CHALLENGE_TTL_S * 1000
NONCE_BYTES = 16
MAC_BYTES = 16
MAX_CREDENTIAL_JSON = 16_384
NAME_MAX = 100
REGISTER = "register"
AUTHENTICATE = "authenticate"
PROBLEMS = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, RecursionError)


class Refused(Exception):
    """A ceremony response that does not verify (the reason is for logs, not for the page)."""


def rp_id(settings: Settings) -> str:
    """The relying-party ID: the host of the IdP's public origin."""
    return urlsplit(settings.base_url).hostname or "localhost"


def origin(settings: Settings) -> str:
    """The origin browsers report in clientDataJSON."""
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}"


# -- challenges ---------------------------------------------------------------


def _challenge(settings: Settings, ceremony: str, binding: str) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    issued = int(time.time()).to_bytes(8, "big")
    return nonce + issued + _mac(settings, ceremony, binding, nonce + issued)


def _mac(settings: Settings, ceremony: str, binding: str, body: bytes) -> bytes:
    message = f"webauthn\0{ceremony}\0{binding}\0".encode() + body
    return hmac.new(settings.secret_key, message, hashlib.sha256).digest()[:MAC_BYTES]


def _spend_challenge(rt: Runtime, ceremony: str, binding: str, client_data: bytes) -> bytes:
    """The challenge a response answers, when it is ours, fresh, for this ceremony and binding;
    it can answer only once."""
    challenge = parse_client_data_json(client_data).challenge
    if len(challenge) != NONCE_BYTES + 8 + MAC_BYTES:
        raise Refused("not a challenge of this IdP")
    body, mac = challenge[:-MAC_BYTES], challenge[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(rt.settings, ceremony, binding, body)):
        raise Refused("challenge made for another ceremony, browser or account")
    if time.time() - int.from_bytes(body[NONCE_BYTES:], "big") > CHALLENGE_TTL_S:
        raise Refused("challenge expired")
    return challenge


def _use_once(rt: Runtime, challenge: bytes) -> None:
    if not rt.store.first_use("webauthn:" + challenge.hex(), CHALLENGE_TTL_S + 60):
        raise Refused("challenge already answered")


def _parse(credential_json: str) -> dict[str, Any]:
    if len(credential_json) > MAX_CREDENTIAL_JSON:
        raise Refused("credential too large")
    data = json.loads(credential_json)
    if not isinstance(data, dict) or not isinstance(data.get("response"), dict):
        raise Refused("not a credential")
    return data


# -- registration -------------------------------------------------------------


def registration_options(
    rt: Runtime, org: Organization, account: Account, existing: list[Passkey]
) -> str:
    """PublicKeyCredentialCreationOptions (JSON) for the account to add a passkey."""
    options = generate_registration_options(
        rp_id=rp_id(rt.settings),
        rp_name=org.name,
        user_id=account.id.encode(),
        user_name=account.email,
        user_display_name=account.name or account.email,
        challenge=_challenge(rt.settings, REGISTER, account.id),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(p) for p in existing],
    )
    return _embeddable(options_to_json(options))


def register(
    rt: Runtime,
    session: Session,
    actor: audit.Actor,
    account: Account,
    credential_json: str,
    name: str,
) -> tuple[Passkey, list[str] | None]:
    """Verify a registration response and store the passkey; returns it, and new recovery
    codes when it is the account's first factor. Refused when it does not verify."""
    try:
        data = _parse(credential_json)
        client_data = base64url_to_bytes(data["response"]["clientDataJSON"])
        challenge = _spend_challenge(rt, REGISTER, account.id, client_data)
        verified = verify_registration_response(
            credential=data,
            expected_challenge=challenge,
            expected_rp_id=rp_id(rt.settings),
            expected_origin=origin(rt.settings),
            require_user_verification=True,
        )
    except PROBLEMS as exc:
        raise Refused(str(exc)) from None
    _use_once(rt, challenge)
    first = not mfa.factors(session, account.id).any
    passkey = Passkey(
        account_id=account.id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        transports=_transports(data),
        name=clean_name(name) or "Passkey",
    )
    session.add(passkey)
    session.flush()
    mfa.record(session, actor, account, "mfa.passkey.enrolled", {"passkey": passkey.name})
    codes = mfa.new_recovery_codes(rt, session, actor, account) if first else None
    return passkey, codes


def clean_name(name: str) -> str:
    """A passkey's display name: printable, one line, at most NAME_MAX characters."""
    return " ".join("".join(ch for ch in name if ch.isprintable()).split())[:NAME_MAX]


def _transports(data: dict[str, Any]) -> list[str]:
    known = {t.value for t in AuthenticatorTransport}
    given = data["response"].get("transports") or []
    return [t for t in given if isinstance(t, str) and t in known][:8]


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id),
        transports=[AuthenticatorTransport(t) for t in passkey.transports],
    )


# -- authentication -----------------------------------------------------------


def authentication_options(rt: Runtime, binding: str, allowed: list[Passkey]) -> str:
    """PublicKeyCredentialRequestOptions (JSON): for these passkeys, or, with none, for any
    discoverable credential of this RP (the passkey button on the login page)."""
    options = generate_authentication_options(
        rp_id=rp_id(rt.settings),
        challenge=_challenge(rt.settings, AUTHENTICATE, binding),
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(p) for p in allowed],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return _embeddable(options_to_json(options))


def _embeddable(options_json: str) -> str:
    """JSON safe to place inside an HTML script element (names come from users: no ``<``)."""
    return options_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def authenticate(
    rt: Runtime,
    credential_json: str,
    binding: str,
    organization_id: str | None,
    account_id: str | None,
) -> Account:
    """The enabled account whose passkey produced this assertion, with user verification; of
    the organization and the very account when given. Refused otherwise."""
    try:
        data = _parse(credential_json)
        client_data = base64url_to_bytes(data["response"]["clientDataJSON"])
        challenge = _spend_challenge(rt, AUTHENTICATE, binding, client_data)
        credential_id = bytes_to_base64url(base64url_to_bytes(data["rawId"]))
    except PROBLEMS as exc:
        raise Refused(str(exc)) from None
    passkey, account = _find(rt, credential_id, organization_id, account_id)
    try:
        verified = verify_authentication_response(
            credential=data,
            expected_challenge=challenge,
            expected_rp_id=rp_id(rt.settings),
            expected_origin=origin(rt.settings),
            credential_public_key=base64url_to_bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except PROBLEMS as exc:
        raise Refused(str(exc)) from None
    _use_once(rt, challenge)
    with rt.db.write() as session:  # a concurrent use with the same count loses
        moved = session.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
            .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            raise Refused("passkey used concurrently")
    return account


def _find(
    rt: Runtime, credential_id: str, organization_id: str | None, account_id: str | None
) -> tuple[Passkey, Account]:
    query = (
        select(Passkey, Account)
        .join(Account, Account.id == Passkey.account_id)
        .where(Passkey.credential_id == credential_id, Account.disabled.is_(False))
    )
    if organization_id is not None:
        query = query.where(Account.organization_id == organization_id)
    if account_id is not None:
        query = query.where(Account.id == account_id)
    with rt.db.read() as session:
        row = session.execute(query).first()
    if row is None:
        raise Refused("unknown passkey")
    return row[0], row[1]


# -- management ---------------------------------------------------------------


def listing(session: Session, account_id: str) -> list[Passkey]:
    """The account's passkeys, oldest first."""
    return list(
        session.scalars(
            select(Passkey).where(Passkey.account_id == account_id).order_by(Passkey.created_at)
        )
    )


def rename(
    session: Session, actor: audit.Actor, account: Account, passkey_id: str, name: str
) -> bool:
    """Rename one of the account's passkeys; False when it has no such passkey or no name."""
    name = clean_name(name)
    passkey = _own(session, account, passkey_id)
    if passkey is None or not name:
        return False
    passkey.name = name
    mfa.record(session, actor, account, "mfa.passkey.renamed", {"passkey": name})
    return True


def remove(session: Session, actor: audit.Actor, account: Account, passkey_id: str) -> bool:
    """Remove one of the account's passkeys; False when it has no such passkey."""
    passkey = _own(session, account, passkey_id)
    if passkey is None:
        return False
    session.execute(delete(Passkey).where(Passkey.id == passkey.id))
    mfa.record(session, actor, account, "mfa.passkey.removed", {"passkey": passkey.name})
    return True


def _own(session: Session, account: Account, passkey_id: str) -> Passkey | None:
    passkey = session.get(Passkey, passkey_id) if len(passkey_id) <= 36 else None
    return passkey if passkey is not None and passkey.account_id == account.id else None
