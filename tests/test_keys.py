"""idp.keys: certificates, private keys encrypted at rest, and the per-process signing keys."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from admin_helpers import client, new_service, storage
from conftest import TEST_SECRET, Account, Server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from test_saml_config import sp_config

from idp import keys
from idp.settings import Settings, load_settings
from idp.store.models import SamlCertificate, Service, new_id

OTHER_SECRET = "another-secret-key-0123456789abcdef0123456789abcdef"


def settings_with(secret: str = TEST_SECRET, previous: str | None = None, **env: str) -> Settings:
    """Settings as a server with this secret (and previous secret) would read them."""
    values = {"IDP_DATABASE_URL": "sqlite:////nonexistent/idp.db", "IDP_SECRET_KEY": secret, **env}
    if previous is not None:
        values["IDP_SECRET_KEY_PREVIOUS"] = previous
    return load_settings(values)


def a_service(slug: str = "main-app") -> Service:
    """A service row that is not stored anywhere."""
    return Service(id=new_id(), slug=slug)


def public_key_of(certificate_pem: str) -> rsa.RSAPublicKey:
    """The RSA public key in a PEM certificate."""
    key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@dataclasses.dataclass(frozen=True)
class StoredView:
    """The stored columns of a certificate row, as another caller might hold them."""

    id: str
    service_id: str
    certificate_pem: str
    private_key_encrypted: str


def view(row: SamlCertificate, **changes: str) -> StoredView:
    """A StoredView of a row, with some columns changed."""
    stored = StoredView(row.id, row.service_id, row.certificate_pem, row.private_key_encrypted)
    return dataclasses.replace(stored, **changes)


def test_stored_private_key_needs_the_secret(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    svc = new_service(sso, org)["slug"]
    sso.services.saml.configure(org, svc, sp_config())
    cert_id = sso.services.saml.generate_certificate(org, svc)["id"]
    with storage(server) as session:
        (stored,) = session.execute(
            text("SELECT private_key_encrypted FROM saml_certificates WHERE id = :id"),
            {"id": cert_id},
        ).one()
        row = session.get(SamlCertificate, cert_id)
        assert row is not None
        session.expunge(row)
    assert stored.startswith(f"v1.{keys.key_id(TEST_SECRET.encode())}.")
    assert "BEGIN" not in stored and "PRIVATE" not in stored

    pem = keys.decrypt_private_key(row, settings_with())
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert (
        private_key.public_key().public_numbers()
        == public_key_of(row.certificate_pem).public_numbers()
    )

    with pytest.raises(keys.KeyDecryptionError) as caught:
        keys.decrypt_private_key(row, settings_with(OTHER_SECRET))
    assert "IDP_SECRET_KEY" in str(caught.value) and stored not in str(caught.value)
    rotated = settings_with(OTHER_SECRET, previous=TEST_SECRET)
    assert keys.decrypt_private_key(row, rotated) == pem


def test_ciphertext_is_bound_to_its_certificate_row() -> None:
    settings = settings_with()
    first = keys.new_certificate(settings, "acme", a_service())
    second = keys.new_certificate(settings, "acme", a_service())
    moved = view(second, private_key_encrypted=first.private_key_encrypted)
    renamed = view(first, id=new_id())
    for row in (moved, renamed):
        with pytest.raises(keys.KeyDecryptionError, match="damaged or belongs to another row"):
            keys.decrypt_private_key(row, settings)

    version, kid, blob = first.private_key_encrypted.split(".")
    flipped = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    for damaged in (
        f"{version}.{kid}.{flipped}",
        f"v0.{kid}.{blob}",
        "garbage",
        f"{version}.{kid}.!",
    ):
        with pytest.raises(keys.KeyDecryptionError):
            keys.decrypt_private_key(view(first, private_key_encrypted=damaged), settings)


def test_each_encryption_is_fresh() -> None:
    settings = settings_with()
    cert = keys.new_certificate(settings, "acme", a_service())
    pem = keys.decrypt_private_key(cert, settings)
    again = keys.encrypt_private_key(pem, cert, settings.secret_key)
    assert again != cert.private_key_encrypted
    assert keys.decrypt_private_key(view(cert, private_key_encrypted=again), settings) == pem
    assert keys.key_id(b"x" * 32) != keys.key_id(b"y" * 32)


@pytest.mark.parametrize("key_size", ["2048", "3072", "4096"])
def test_new_certificate_follows_the_settings(key_size: str) -> None:
    settings = settings_with(IDP_CERT_KEY_SIZE=key_size, IDP_CERT_VALID_DAYS="30")
    service = a_service("billing")
    row = keys.new_certificate(settings, "acme-corp", service)
    cert = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    assert public_key_of(row.certificate_pem).key_size == int(key_size)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme-corp"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "billing"
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        row.valid_from,
        row.valid_until,
    )
    assert row.valid_until - row.valid_from == timedelta(days=30)
    assert (row.service_id, row.is_active) == (service.id, True)


def test_serials_are_random() -> None:
    settings = settings_with()
    serials = {
        x509.load_pem_x509_certificate(
            keys.new_certificate(settings, "acme", a_service()).certificate_pem.encode()
        ).serial_number
        for _ in range(3)
    }
    assert len(serials) == 3 and all(s.bit_length() > 64 for s in serials)


def test_signing_key_is_loaded_once_and_signs() -> None:
    settings = settings_with()
    cert = keys.new_certificate(settings, "acme", a_service())
    key = keys.signing_key(cert, settings)
    assert keys.signing_key(cert, settings) is key
    data = b"<samlp:Response/>"
    public_key_of(cert.certificate_pem).verify(
        key.sign_bytes(data), data, padding.PKCS1v15(), hashes.SHA256()
    )


def test_rotated_away_signing_key_is_dropped() -> None:
    settings = settings_with()
    service = a_service()
    old = keys.new_certificate(settings, "acme", service)
    new = keys.new_certificate(settings, "acme", service)
    old_key = keys.signing_key(old, settings)
    new_key = keys.signing_key(new, settings)
    assert new_key is not old_key and keys.signing_key(new, settings) is new_key
    assert keys.signing_key(old, settings) is not old_key


def test_signing_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SIGNING_KEY_CACHE_SIZE", 2)
    settings = settings_with()
    certs = [keys.new_certificate(settings, "acme", a_service()) for _ in range(3)]
    loaded = [keys.signing_key(cert, settings) for cert in certs]
    assert keys.signing_key(certs[2], settings) is loaded[2]
    assert keys.signing_key(certs[1], settings) is loaded[1]
    assert keys.signing_key(certs[0], settings) is not loaded[0]


def test_signing_key_refuses_a_foreign_secret() -> None:
    cert = keys.new_certificate(settings_with(), "acme", a_service())
    with pytest.raises(keys.KeyDecryptionError):
        keys.signing_key(cert, settings_with(OTHER_SECRET))
