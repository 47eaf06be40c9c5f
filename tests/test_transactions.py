"""A process killed in the middle of a write leaves the previous state intact.

The server and ``idp provision`` run unchanged, with one addition that lives in this test
only: a ``sitecustomize`` module on their PYTHONPATH wraps ``idp.keys.activate_certificate``
so that, while a trigger file exists, the process flushes its transaction (the old certificate
deactivated, the new one inserted, with everything written before it) and SIGKILLs itself,
leaving a note that it did. The transaction never commits: the database must roll it back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Account, Server, flush_redis, free_port, server_env, start_server, stop_server
from sqlalchemy import select
from sso_helpers import saml_service

from idp.store.db import Database
from idp.store.models import Base

HOOK = '''
"""Test-only (tests/test_transactions.py): SIGKILL this process inside a transaction."""
import os
import signal
from pathlib import Path

import idp.keys

TRIGGER = Path({trigger!r})  # holds how many more certificates to store before the kill
NOTE = Path({note!r})
_activate = idp.keys.activate_certificate


def activate_certificate(session, certificate):
    retired = _activate(session, certificate)
    if TRIGGER.exists():
        left = int(TRIGGER.read_text()) - 1
        if left > 0:
            TRIGGER.write_text(str(left))
        else:
            session.flush()
            TRIGGER.unlink()
            NOTE.write_text(f"killed {{os.getpid()}} holding certificate {{certificate.id}}")
            os.kill(os.getpid(), signal.SIGKILL)
    return retired


idp.keys.activate_certificate = activate_certificate
'''
TABLES = ("organizations", "services", "saml_configs", "saml_certificates", "events")


class Killer:
    """Arms the hook: the Nth certificate stored from now on kills its process."""

    def __init__(self, directory: Path) -> None:
        self.trigger = directory / "kill-at"
        self.note = directory / "killed"
        (directory / "sitecustomize.py").write_text(
            HOOK.format(trigger=str(self.trigger), note=str(self.note))
        )
        self.path = str(directory)

    def arm(self, at: int = 1) -> None:
        self.note.unlink(missing_ok=True)
        self.trigger.write_text(str(at))

    def killed(self) -> str:
        """The note the killed process left (fails when nothing was killed)."""
        assert not self.trigger.exists(), "the hook never fired"
        return self.note.read_text()


@pytest.fixture(scope="module")
def killer(tmp_path_factory: pytest.TempPathFactory) -> Killer:
    return Killer(tmp_path_factory.mktemp("hook"))


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, killer: Killer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The module's server, its processes carrying the hook (replaces conftest's)."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port, PYTHONPATH=killer.path)
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


def snapshot(server: Server) -> dict[str, list[Any]]:
    """Every row of the tables a certificate rotation or a provisioning run writes."""
    database = Database(server.env["IDP_DATABASE_URL"])
    try:
        with database.read() as session:
            return {
                name: sorted(tuple(map(str, row)) for row in session.execute(select(table)))
                for name, table in Base.metadata.tables.items()
                if name in TABLES
            }
    finally:
        database.dispose()


def wait_for(server: Server) -> None:
    """Until the server answers again (gunicorn replaces a killed worker)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server did not come back:\n{server.log()}")


def test_worker_killed_while_storing_a_certificate_keeps_the_previous_one(
    server: Server, owner: Account, killer: Killer
) -> None:
    service = saml_service(server, owner.token, owner.org)
    previous = service.api("GET", "/saml/certificate").json()
    before = snapshot(server)

    killer.arm()
    with pytest.raises(requests.ConnectionError):
        service.api("POST", "/saml/certificate")
    assert "holding certificate" in killer.killed()
    wait_for(server)

    assert snapshot(server) == before
    assert service.api("GET", "/saml/certificate").json() == previous
    metadata = requests.get(service.entity_id, timeout=10)
    assert metadata.status_code == 200
    assert previous["public_key"].splitlines()[1] in metadata.text
    # nothing is left locked: the next rotation goes through
    rotated = service.api("POST", "/saml/certificate")
    assert rotated.status_code == 201, rotated.text
    assert service.api("GET", "/saml/certificate").json()["id"] == rotated.json()["id"]


def provision_file(name: str, services: list[tuple[str, str]]) -> str:
    """A file declaring organization ``prov`` named ``name`` with SAML services (slug, SP)."""
    lines = ["[organization]", 'slug = "prov"', f'name = "{name}"']
    for slug, entity_id in services:
        lines += [
            "[[services]]",
            f'slug = "{slug}"',
            f'name = "{slug}"',
            'service_type = "web"',
            "redirect_uris = []",
            "[services.saml]",
            "enabled = true",
            f'entity_id = "{entity_id}"',
            f'acs_url = "https://{slug}.sp.test/acs"',
            'name_id_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"',
            "sign_assertions = true",
            "sign_response = true",
            "[services.saml.attribute_mapping]",
            'email = "mail"',
        ]
    return "\n".join(lines) + "\n"


def provision(server: Server, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idp", "provision", str(directory)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_provisioning_killed_mid_run_keeps_the_previous_state(
    server: Server, killer: Killer, tmp_path: Path
) -> None:
    declared = tmp_path / "prov.toml"
    declared.write_text(provision_file("Before", [("first", "https://first.sp.test/a")]))
    assert provision(server, tmp_path).returncode == 0
    before = snapshot(server)

    # renames the organization, changes the first SP, adds three services with certificates
    new = [(f"new-{n}", f"https://new-{n}.sp.test") for n in range(3)]
    declared.write_text(provision_file("After", [("first", "https://first.sp.test/b"), *new]))
    killer.arm(at=3)
    run = provision(server, tmp_path)
    assert run.returncode == -9, run.stdout + run.stderr
    assert "holding certificate" in killer.killed()
    assert snapshot(server) == before

    run = provision(server, tmp_path)
    assert run.returncode == 0, run.stderr
    after = snapshot(server)
    assert len(after["services"]) == len(before["services"]) + 3
    assert any("After" in row for row in after["organizations"])
