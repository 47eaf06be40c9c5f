"""Rotating IDP_SECRET_KEY: keys under the previous secret keep signing, ``idp rotate-secret``
re-encrypts them in one transaction, and persistent NameIDs survive the rotation.

One database, one public URL, three servers in turn: the old secret; the new secret with the
old one as IDP_SECRET_KEY_PREVIOUS (then ``idp rotate-secret``); the new secret alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import (
    OWNER_PASSWORD,
    Account,
    Server,
    add_user,
    flush_redis,
    free_port,
    server_env,
    start_server,
    stop_server,
)
from cryptography import x509
from sqlalchemy import select, text
from sso_helpers import (
    Browser,
    SamlService,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    saml_service,
)

from idp import keys
from idp.saml import constants as c
from idp.settings import Settings, load_settings
from idp.store.db import Database
from idp.store.models import Event, InstanceSecret, Organization, SamlCertificate, Service, new_id

OLD = "the-old-secret-0123456789abcdef0123456789abcdef"
NEW = "the-new-secret-0123456789abcdef0123456789abcdef"
UNKNOWN = "nobody-knows-this-secret-0123456789abcdef012345"


@pytest.fixture(scope="module")
def port() -> int:
    """One public URL for every server of the module: the IdP entity IDs stay the same."""
    return free_port()


def env_with(
    database_url: str, redis_url: str, port: int, secret: str, previous: str | None = None
) -> dict[str, str]:
    env = server_env(database_url, redis_url, port, IDP_SECRET_KEY=secret)
    if previous is not None:
        env["IDP_SECRET_KEY_PREVIOUS"] = previous
    return env


@contextmanager
def serving(env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    server = start_server(env, port, log)
    try:
        yield server
    finally:
        stop_server(server)


def idp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idp", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def settings_for(database_url: str, secret: str) -> Settings:
    return load_settings({"IDP_DATABASE_URL": database_url, "IDP_SECRET_KEY": secret})


def stored_values(database_url: str) -> dict[str, str]:
    """Every encrypted value at rest, by row."""
    database = Database(database_url)
    try:
        with database.read() as session:
            values = {
                f"certificate {row.id}": row.private_key_encrypted
                for row in session.scalars(select(SamlCertificate))
            }
            for secret in session.scalars(select(InstanceSecret)):
                values[f"secret {secret.name}"] = secret.value_encrypted
            return values
    finally:
        database.dispose()


def tagged(secret: str) -> str:
    return f"v1.{keys.key_id(secret.encode())}."


def sso(server: Server, service: SamlService, member: Account) -> str:
    """A full SP-initiated login, verified by python3-saml; returns the NameID."""
    service.server = server
    auth = onelogin_auth(service)
    page = Browser(server).sso(auth.login(), member.email, member.password)
    response = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    name_id: str = response.get_nameid()
    return name_id


def metadata_certificate(service: SamlService) -> x509.Certificate:
    """The signing certificate the IdP metadata publishes."""
    document = service.metadata()
    body = document.split("<ds:X509Certificate>")[1].split("</ds:X509Certificate>")[0]
    pem = f"-----BEGIN CERTIFICATE-----\n{body.strip()}\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(pem.encode())


def test_rotation_keeps_signing_keys_and_persistent_nameids(
    database_url: str, redis_url: str, port: int, tmp_path: Path
) -> None:
    flush_redis(redis_url)
    with serving(env_with(database_url, redis_url, port, OLD), port, tmp_path / "1.log") as server:
        email = "owner@acme.test"
        server.cli("bootstrap", "--org", "acme", "--email", email, "--password", OWNER_PASSWORD)
        owner = Account(email, OWNER_PASSWORD, server.login(email, OWNER_PASSWORD), "acme")
        service = saml_service(server, owner.token, owner.org, name_id_format=c.NAMEID_PERSISTENT)
        member = add_user(server, owner.token, owner.org)
        name_id = sso(server, service, member)
        published = metadata_certificate(service)
    values = stored_values(database_url)
    assert len(values) == 2 and "secret nameid" in values  # the certificate and the NameID key
    assert all(value.startswith(tagged(OLD)) for value in values.values())

    rotating = env_with(database_url, redis_url, port, NEW, previous=OLD)
    with serving(rotating, port, tmp_path / "2.log") as server:
        # keys under the previous secret still sign; the NameID key still derives the same IDs
        assert metadata_certificate(service) == published
        assert sso(server, service, member) == name_id
        first = idp(rotating, "rotate-secret")
        assert first.returncode == 0, first.stderr
        assert "re-encrypted 2 stored key(s) under IDP_SECRET_KEY; 0 already were" in first.stdout
        rotated = stored_values(database_url)
        assert set(rotated) == set(values)
        assert all(value.startswith(tagged(NEW)) for value in rotated.values())
        again = idp(rotating, "rotate-secret")
        assert again.returncode == 0, again.stderr
        assert "re-encrypted 0 stored key(s) under IDP_SECRET_KEY; 2 already were" in again.stdout
        assert stored_values(database_url) == rotated
        # this worker read the NameID key before the rotation: its cached copy is the same key
        assert sso(server, service, member) == name_id
        assert OLD not in first.stdout + first.stderr and NEW not in first.stdout + first.stderr

    with serving(env_with(database_url, redis_url, port, NEW), port, tmp_path / "3.log") as server:
        assert metadata_certificate(service) == published
        assert sso(server, service, member) == name_id
        # a new certificate is made under the new secret
        service.rotate()
        assert all(value.startswith(tagged(NEW)) for value in stored_values(database_url).values())
        assert sso(server, service, member) == name_id

    database = Database(database_url)
    with database.read() as session:
        events = session.scalars(select(Event).where(Event.action == "secret.rotate")).all()
    database.dispose()
    assert [(e.actor_type, e.summary) for e in events] == [("cli", {"after": {"reencrypted": 2}})]


def add_certificate(database_url: str, secret: str, active: bool) -> str:
    """Store a certificate encrypted under ``secret`` for a new service; returns its id."""
    settings = settings_for(database_url, secret)
    database = Database(database_url)
    try:
        with database.write() as session:
            org = session.scalar(select(Organization).where(Organization.slug == "keys"))
            if org is None:
                org = Organization(slug="keys", name="Keys")
                session.add(org)
                session.flush()
            slug = f"svc-{new_id()[:8]}"
            service = Service(
                organization_id=org.id,
                slug=slug,
                name=slug,
                service_type="web",
                client_id=new_id(),
            )
            session.add(service)
            session.flush()
            certificate = keys.new_certificate(settings, "keys", service)
            certificate.is_active = active
            session.add(certificate)
            return certificate.id
    finally:
        database.dispose()


def test_rotate_secret_refuses_a_key_no_secret_opens_and_changes_nothing(
    database_url: str, redis_url: str, port: int
) -> None:
    rotating = env_with(database_url, redis_url, port, NEW, previous=OLD)
    assert idp(rotating, "migrate").returncode == 0
    readable = add_certificate(database_url, OLD, active=True)
    unreadable = add_certificate(database_url, UNKNOWN, active=False)
    before = stored_values(database_url)

    refused = idp(rotating, "rotate-secret")
    assert refused.returncode == 1
    assert (
        f"certificate {unreadable}: encrypted under a secret that is neither IDP_SECRET_KEY "
        "nor IDP_SECRET_KEY_PREVIOUS" in refused.stderr
    )
    assert readable not in refused.stderr and "nothing changed" in refused.stderr
    assert stored_values(database_url) == before

    # without the previous secret, the keys still under it are refused the same way
    alone = idp(env_with(database_url, redis_url, port, NEW), "rotate-secret")
    assert alone.returncode == 1 and f"certificate {readable}:" in alone.stderr
    assert stored_values(database_url) == before

    database = Database(database_url)
    with database.write() as session:
        session.execute(text("DELETE FROM saml_certificates WHERE id = :id"), {"id": unreadable})
    database.dispose()
    done = idp(rotating, "rotate-secret")
    assert done.returncode == 0, done.stderr
    assert stored_values(database_url)[f"certificate {readable}"].startswith(tagged(NEW))


def test_instance_secret_is_made_once_under_concurrent_first_use(database_url: str) -> None:
    settings = settings_for(database_url, NEW)
    env = {**os.environ, "IDP_DATABASE_URL": database_url, "IDP_SECRET_KEY": NEW}
    assert idp(env, "migrate").returncode == 0
    name = f"race-{new_id()[:8]}"
    databases = [Database(database_url) for _ in range(8)]
    try:
        with ThreadPoolExecutor(len(databases)) as pool:
            values = set(pool.map(lambda db: keys.instance_secret(db, settings, name), databases))
        assert len(values) == 1 and len(values.pop()) == keys.INSTANCE_SECRET_BYTES
        with databases[0].write() as session:
            row = session.get(InstanceSecret, name)
            assert row is not None and row.value_encrypted.startswith(tagged(NEW))
            session.delete(row)
    finally:
        for database in databases:
            database.dispose()
