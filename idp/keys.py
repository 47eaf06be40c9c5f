"""The IdP's signing keys and certificates, and the installation's own secrets: generation,
encryption at rest, and the rotation of ``IDP_SECRET_KEY``.

A private key (or an instance secret, such as the persistent-NameID key) is stored as
``v1.<kid>.<base64url(nonce | ciphertext)>``: AES-256-GCM under a key derived with HKDF-SHA256
from ``IDP_SECRET_KEY``. ``kid`` is a public tag naming the secret it was encrypted under, so
decryption picks ``IDP_SECRET_KEY`` or ``IDP_SECRET_KEY_PREVIOUS`` and ``rotate_secret`` can
find the rows still to re-encrypt. The associated data binds the ciphertext to its row (a
certificate's id and certificate, an instance secret's name): a value copied into another row
does not decrypt. Private keys never leave this module except as the loaded signing key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from idp.saml.signing import SigningKey
from idp.settings import Settings
from idp.store.db import Database
from idp.store.models import (
    IdentityProvider,
    InstanceSecret,
    Organization,
    SamlCertificate,
    Service,
    TotpFactor,
    new_id,
    utcnow,
)

FORMAT = "v1"
NONCE_BYTES = 12
KID_BYTES = 6
PUBLIC_EXPONENT = 65537
SIGNING_KEY_CACHE_SIZE = 1024
NAMEID_KEY = "nameid"  # the instance secret persistent NameIDs are derived with
INSTANCE_SECRET_BYTES = 32
ROLLOVER_DUE_DAYS = 30  # stage the next certificate before the active one gets this close


class KeyDecryptionError(Exception):
    """A stored private key does not decrypt with the configured secrets."""


class StoredCertificate(Protocol):
    """A certificate row, or anything holding the same columns."""

    @property
    def id(self) -> str: ...

    @property
    def service_id(self) -> str: ...

    @property
    def certificate_pem(self) -> str: ...

    @property
    def private_key_encrypted(self) -> str: ...


def key_id(secret: bytes) -> str:
    """The public tag of a secret, stored beside each ciphertext made with it."""
    return _derive(secret, b"idp keys: key id", KID_BYTES).hex()


def encrypt_private_key(
    private_key_pem: bytes, certificate: StoredCertificate, secret: bytes
) -> str:
    """Encrypt a PEM private key for the row of ``certificate`` (id and certificate_pem set)."""
    return _seal(private_key_pem, _associated_data(certificate), secret)


def decrypt_private_key(certificate: StoredCertificate, settings: Settings) -> bytes:
    """The PEM private key of a certificate row, decrypted with the current or previous secret."""
    return _open(
        certificate.private_key_encrypted,
        _associated_data(certificate),
        settings,
        f"certificate {certificate.id}",
    )


def instance_secret(db: Database, settings: Settings, name: str) -> bytes:
    """A random secret of this installation, made on first use and stored encrypted.

    Every process and host reads the same value; a concurrent first use keeps the row that
    was stored first. Callers cache it (it never changes, a secret rotation re-encrypts it).
    """
    with db.read() as session:
        row = session.get(InstanceSecret, name)
    if row is None:
        value = secrets.token_bytes(INSTANCE_SECRET_BYTES)
        stored = _seal(value, _secret_data(name), settings.secret_key)
        try:
            with db.write() as session:
                session.add(InstanceSecret(name=name, value_encrypted=stored))
            return value
        except IntegrityError:  # another process stored it first
            with db.read() as session:
                row = session.get(InstanceSecret, name)
            assert row is not None
    return _open_secret(row, settings)


def encrypt_totp_secret(account_id: str, seed: str, secret: bytes) -> str:
    """Encrypt an account's TOTP seed (base32) for its row."""
    return _seal(seed.encode(), _totp_data(account_id), secret)


def decrypt_totp_secret(account_id: str, stored: str, settings: Settings) -> str:
    """The base32 TOTP seed of an account's authenticator, from its encrypted form."""
    what = f"TOTP seed of account {account_id}"
    return _open(stored, _totp_data(account_id), settings, what).decode()


def encrypt_client_secret(provider_id: str, client_secret: str, secret: bytes) -> str:
    """Encrypt an upstream OpenID Provider's client secret for its row."""
    return _seal(client_secret.encode(), _client_secret_data(provider_id), secret)


def decrypt_client_secret(provider_id: str, stored: str, settings: Settings) -> str:
    """An upstream OpenID Provider's client secret, from its encrypted form."""
    what = f"client secret of identity provider {provider_id}"
    return _open(stored, _client_secret_data(provider_id), settings, what).decode()


@dataclass(frozen=True)
class Rotation:
    """What ``rotate_secret`` did: rows re-encrypted, rows already under IDP_SECRET_KEY."""

    reencrypted: int
    unchanged: int


def rotate_secret(session: Session, settings: Settings) -> Rotation:
    """Re-encrypt every stored private key, instance secret, TOTP seed and OpenID client secret
    under IDP_SECRET_KEY.

    Every row is decrypted first (with IDP_SECRET_KEY or IDP_SECRET_KEY_PREVIOUS); when any
    does not decrypt, KeyDecryptionError names each such row and nothing is changed. Rows
    already under IDP_SECRET_KEY are left as they are, so running it again changes nothing.
    """
    current = f"{FORMAT}.{key_id(settings.secret_key)}."
    rows = 0
    problems: list[str] = []
    updates: list[tuple[Any, str, str]] = []  # row, column, value
    for sealed in SEALED:
        column = getattr(sealed.model, sealed.column)
        query = select(sealed.model).where(column.is_not(None)).with_for_update()
        for row in session.scalars(query):
            rows += 1
            stored, data = getattr(row, sealed.column), sealed.associated_data(row)
            try:
                plaintext = _open(stored, data, settings, sealed.what(row))
            except KeyDecryptionError as exc:
                problems.append(str(exc))
                continue
            if not stored.startswith(current):
                updates.append((row, sealed.column, _seal(plaintext, data, settings.secret_key)))
    if problems:
        raise KeyDecryptionError("\n".join(problems))
    for row, column, value in updates:
        setattr(row, column, value)
    return Rotation(len(updates), rows - len(updates))


def new_certificate(settings: Settings, org_slug: str, service: Service) -> SamlCertificate:
    """A fresh key pair and self-signed SHA-256 certificate for a service, not yet stored.

    RSA of ``settings.cert_key_size`` bits, subject O=<org slug>, CN=<service slug>, a random
    serial, valid from now for ``settings.cert_valid_days``. Slow (key generation): call it
    outside a transaction.
    """
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=settings.cert_key_size)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_slug),
            x509.NameAttribute(NameOID.COMMON_NAME, service.slug),
        ]
    )
    valid_from = utcnow().replace(microsecond=0)
    valid_until = valid_from + timedelta(days=settings.cert_valid_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_until)
        .sign(key, hashes.SHA256())
    )
    row = SamlCertificate(
        id=new_id(),
        service_id=service.id,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        valid_from=valid_from,
        valid_until=valid_until,
        is_active=True,
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    row.private_key_encrypted = encrypt_private_key(private_pem, row, settings.secret_key)
    return row


def deactivate_certificates(session: Session, service_id: str) -> list[str]:
    """Deactivate every active (and next) certificate of a service; returns their ids."""
    retired = session.scalars(
        update(SamlCertificate)
        .where(
            SamlCertificate.service_id == service_id,
            SamlCertificate.is_active | SamlCertificate.is_next,
        )
        .values(is_active=False, is_next=False)
        .returning(SamlCertificate.id)
    )
    session.flush()
    return list(retired)


def activate_certificate(session: Session, certificate: SamlCertificate) -> list[str]:
    """Store a new certificate as the service's only active one; returns the ids it retired.

    Call it holding the service's row lock, so concurrent rotations queue up and each sees
    the certificate the previous one stored; the partial unique index
    ``uq_saml_certificates_active`` makes two active certificates impossible regardless.
    """
    retired = deactivate_certificates(session, certificate.service_id)
    session.add(certificate)
    session.flush()
    return retired


_signing_keys: OrderedDict[str, tuple[str, SigningKey]] = OrderedDict()
_signing_keys_lock = threading.Lock()


def signing_key(certificate: StoredCertificate, settings: Settings) -> SigningKey:
    """The certificate's private key, decrypted and loaded once per process (for the SSO path).

    Kept per service: a service's next certificate replaces the key of its previous one, so a
    rotated-away key leaves memory at once; the least recently used of more than
    SIGNING_KEY_CACHE_SIZE services are dropped.
    """
    with _signing_keys_lock:
        cached = _signing_keys.get(certificate.service_id)
        if cached is not None and cached[0] == certificate.id:
            _signing_keys.move_to_end(certificate.service_id)
            return cached[1]
    key = SigningKey.from_pem(
        decrypt_private_key(certificate, settings), certificate.certificate_pem.encode()
    )
    with _signing_keys_lock:
        _signing_keys[certificate.service_id] = (certificate.id, key)
        _signing_keys.move_to_end(certificate.service_id)
        while len(_signing_keys) > SIGNING_KEY_CACHE_SIZE:
            _signing_keys.popitem(last=False)
    return key


def active_certificate_expiry(session: Session) -> list[tuple[str, str, datetime, bool]]:
    """(organization slug, service slug, valid_until, whether a next one is staged) of every
    active signing certificate, soonest expiry first."""
    staged = aliased(SamlCertificate)
    query = (
        select(Organization.slug, Service.slug, SamlCertificate.valid_until, staged.id)
        .join(Service, Service.id == SamlCertificate.service_id)
        .join(Organization, Organization.id == Service.organization_id)
        .outerjoin(staged, and_(staged.service_id == Service.id, staged.is_next))
        .where(SamlCertificate.is_active)
        .order_by(SamlCertificate.valid_until)
    )
    return [
        (org, svc, valid_until, next_id is not None)
        for org, svc, valid_until, next_id in session.execute(query)
    ]


def rollover_due(days_left: float, has_next: bool) -> bool:
    """True when the active certificate expires within ROLLOVER_DUE_DAYS and no next one is
    staged to take over."""
    return days_left < ROLLOVER_DUE_DAYS and not has_next


def fingerprint(certificate_pem: str) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as colon-separated hex."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _known_secrets(settings: Settings) -> tuple[bytes, ...]:
    previous = settings.secret_key_previous
    return (settings.secret_key,) if previous is None else (settings.secret_key, previous)


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def _cipher(secret: bytes) -> AESGCM:
    return AESGCM(_derive(secret, b"idp keys: saml private key, aes-256-gcm", 32))


def _associated_data(certificate: StoredCertificate) -> bytes:
    return f"{FORMAT}\n{certificate.id}\n{certificate.certificate_pem}".encode()


def _secret_data(name: str) -> bytes:
    return f"{FORMAT}\ninstance secret\n{name}".encode()


def _client_secret_data(provider_id: str) -> bytes:
    return f"{FORMAT}\noidc client secret\n{provider_id}".encode()


def _totp_data(account_id: str) -> bytes:
    return f"{FORMAT}\ntotp seed\n{account_id}".encode()


def _open_secret(row: InstanceSecret, settings: Settings) -> bytes:
    return _open(row.value_encrypted, _secret_data(row.name), settings, f"secret '{row.name}'")


def _seal(plaintext: bytes, associated_data: bytes, secret: bytes) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = _cipher(secret).encrypt(nonce, plaintext, associated_data)
    blob = base64.urlsafe_b64encode(nonce + ciphertext).decode()
    return f"{FORMAT}.{key_id(secret)}.{blob}"


def _open(stored: str, associated_data: bytes, settings: Settings, what: str) -> bytes:
    """Decrypt a value made by _seal with whichever known secret its tag names."""
    parts = stored.split(".")
    if len(parts) != 3 or parts[0] != FORMAT:
        raise KeyDecryptionError(f"{what}: unknown key format")
    _, kid, blob = parts
    secret = next((s for s in _known_secrets(settings) if key_id(s) == kid), None)
    if secret is None:
        raise KeyDecryptionError(
            f"{what}: encrypted under a secret that is neither IDP_SECRET_KEY nor "
            "IDP_SECRET_KEY_PREVIOUS"
        )
    try:
        raw = base64.urlsafe_b64decode(blob)
        return _cipher(secret).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError, binascii.Error):
        raise KeyDecryptionError(
            f"{what}: the stored key is damaged or belongs to another row"
        ) from None


@dataclass(frozen=True)
class Sealed:
    """A column holding values encrypted with ``_seal``: what binds each to its row, and how
    to name the row in an error."""

    model: Any
    column: str
    associated_data: Callable[[Any], bytes]
    what: Callable[[Any], str]


SEALED = (
    Sealed(
        SamlCertificate, "private_key_encrypted", _associated_data, lambda r: f"certificate {r.id}"
    ),
    Sealed(
        InstanceSecret,
        "value_encrypted",
        lambda r: _secret_data(r.name),
        lambda r: f"secret '{r.name}'",
    ),
    Sealed(
        TotpFactor,
        "secret_encrypted",
        lambda r: _totp_data(r.account_id),
        lambda r: f"TOTP seed of account {r.account_id}",
    ),
    Sealed(
        IdentityProvider,
        "client_secret_encrypted",
        lambda r: _client_secret_data(r.id),
        lambda r: f"client secret of identity provider {r.id}",
    ),
)
