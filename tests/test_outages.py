"""Outages: Redis and PostgreSQL stop (or freeze) under a running server, then come back.

Redis: a ``redis-server`` of this module's own, killed and restarted on the same port.
PostgreSQL: a cluster of this module's own (initdb + pg_ctl), stopped, frozen and restarted.
Every page that needs the stopped store answers 503 with Retry-After quickly (JSON under /api,
HTML elsewhere), never a 500 or a hang; /readyz names the store that is down; the server
resumes by itself when the store is back. The measured figures are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
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
from sso_helpers import (
    Browser,
    SamlService,
    authn_request,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    post_form,
    posted_message,
    redirect_url,
    saml_service,
)

from idp.sessions import EVENTS
from idp.store.db import CONNECT_TIMEOUT_S

ANSWER_LIMIT_S = 1.0  # a page needing a store that is down answers within this
RECOVERY_LIMIT_S = 5.0  # after the store is back, service resumes within this
STARTUP_TIMEOUT_S = 15


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    """One request and how long it took, in seconds."""
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def figure(name: str, seconds: float) -> None:
    """Print a measured figure for the report."""
    print(f"\n[outage figure] {name}: {seconds * 1000:.0f} ms")


def assert_unavailable(
    response: requests.Response, elapsed: float, api: bool, limit: float = ANSWER_LIMIT_S
) -> None:
    """A quick 503 with Retry-After: JSON ``unavailable`` under /api, an HTML page elsewhere."""
    where = f"{response.request.method} {response.url}"
    assert response.status_code == 503, (where, response.status_code, response.text[:500])
    assert int(response.headers["Retry-After"]) > 0, where
    assert elapsed < limit, (where, elapsed)
    if api:
        assert response.headers["Content-Type"].startswith("application/json"), where
        assert response.json()["error"] == "unavailable", where
    else:
        assert response.headers["Content-Type"].startswith("text/html"), where
        assert "unavailable" in response.text, where


def gauges(server: Server) -> set[str]:
    """The store-backed gauges /metrics shows (it answers 200 even while a store is down)."""
    response = requests.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200, response.text[:500]
    names = {"idp_active_sessions", "idp_certificate_expiry_days"}
    return {name for name in names if f"\n{name}" in response.text}


def wait_until(what: str, ready: Callable[[], bool], limit: float = RECOVERY_LIMIT_S) -> float:
    """Poll until ``ready()``; returns the seconds it took (fails past ``limit``)."""
    started = time.monotonic()
    while not ready():
        assert time.monotonic() - started < limit, f"{what}: not back after {limit} s"
        time.sleep(0.02)
    return time.monotonic() - started


def answers(url: str, status: int = 200) -> Callable[[], bool]:
    """A probe: True once GET ``url`` answers ``status``."""

    def probe() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == status
        except requests.RequestException:
            return False

    return probe


def all_answer(url: str, token: str | None = None, count: int = 32) -> bool:
    """True when ``count`` requests, 8 at a time, all answer 200 (no stale pooled connection)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: requests.get(url, headers=headers, timeout=10).status_code, range(count)
            )
        )
    return statuses == [200] * count


def readiness(server: Server) -> tuple[int, dict[str, str]]:
    response = requests.get(f"{server.url}/readyz", timeout=5)
    body: dict[str, str] = response.json()
    return response.status_code, body


# -- a Redis server of our own -----------------------------------------------------------


@dataclass
class RedisProcess:
    """A ``redis-server`` on a fixed port that keeps nothing on disk."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until("redis-server", up, STARTUP_TIMEOUT_S)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)


@pytest.fixture(scope="module")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """This module's own redis-server."""
    process = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.signal(signal.SIGCONT)
        process.kill()


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_process: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The module's server, on the module's own redis-server (replaces conftest's)."""
    port = free_port()
    env = server_env(database_url, redis_process.url, port)
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def service(server: Server, owner: Account) -> SamlService:
    return saml_service(server, owner.token, owner.org)


@pytest.fixture(scope="module")
def member(server: Server, owner: Account) -> Account:
    return add_user(server, owner.token, owner.org)


@dataclass
class BrowserRequests:
    """Every kind of browser request the IdP answers, prepared while Redis was up."""

    requests: dict[str, Callable[[], requests.Response]]


def browser_requests(server: Server, service: SamlService, member: Account) -> BrowserRequests:
    """Login page, login POST, SSO by Redirect and POST, /init, /resume, SLO, logout, metadata."""
    signed_in = Browser(server)
    page = signed_in.sso(f"{service.base}/init", member.email, member.password)
    response = onelogin_accepts(service, posted_message(page.text), None)
    logout_url = onelogin_auth(service).logout(
        name_id=response.get_nameid(),
        session_index=response.get_session_index(),
        name_id_format=service.config["name_id_format"],
    )
    signed_in_page = signed_in.get(f"{server.url}/login")
    logout_csrf = re.search(r'name="csrf_token" value="([^"]+)"', signed_in_page.text)
    assert logout_csrf, signed_in_page.text
    logout_form = {"csrf_token": logout_csrf[1]}
    anonymous = Browser(server)
    login_page = anonymous.get(f"{service.base}/init")  # the login page of a pending SSO
    assert is_login_page(login_page)
    xml = authn_request(service)
    fields = {"email": member.email, "password": member.password}
    return BrowserRequests(
        {
            "GET /login": lambda: anonymous.get(login_page.url),
            "GET /login (signed in)": lambda: signed_in.get(f"{server.url}/login"),
            "POST /login": lambda: anonymous.login(login_page, **fields),
            "GET /sso": lambda: signed_in.get(redirect_url(service, xml)),
            "POST /sso": lambda: signed_in.post(service.sso_url, post_form(xml)),
            "GET /init": lambda: signed_in.get(f"{service.base}/init?RelayState=x"),
            "GET /resume": lambda: signed_in.get(f"{service.base}/resume?pending=abc"),
            "GET /slo": lambda: signed_in.get(logout_url),
            "POST /slo": lambda: signed_in.post(service.slo_url, {"SAMLRequest": "x"}),
            "POST /logout": lambda: signed_in.post(f"{server.url}/logout", logout_form),
            "GET /metadata": lambda: requests.get(service.entity_id, timeout=10),
        }
    )


def sso_works(server: Server, service: SamlService, member: Account) -> str:
    """A full SP-initiated login and SSO, verified by python3-saml; returns the signing cert."""
    auth = onelogin_auth(service)
    browser = Browser(server)
    page = browser.sso(auth.login(), member.email, member.password)
    onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    return service.certificate


def test_redis_outage_answers_503_quickly_and_service_resumes(
    server: Server,
    owner: Account,
    service: SamlService,
    member: Account,
    redis_process: RedisProcess,
) -> None:
    prepared = browser_requests(server, service, member)
    assert all_answer(f"{server.url}/login?pending=probe")  # fills the connection pool
    redis_process.kill()

    slowest = 0.0
    for _ in range(2):  # the first try finds broken pooled connections, the second none
        for call in prepared.requests.values():
            response, elapsed = timed(call)
            assert_unavailable(response, elapsed, api=False)
            slowest = max(slowest, elapsed)
    figure("redis killed: slowest 503 of the browser pages", slowest)
    status, body = readiness(server)
    assert status == 503 and body["database"] == "ok", body
    assert body["redis"].startswith("unavailable"), body
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert gauges(server) == {"idp_certificate_expiry_days"}

    # the admin API does not need Redis: reads and writes (announced best effort) go on
    org = f"/organizations/{owner.org}"
    assert server.api("GET", org, owner.token).status_code == 200
    assert server.login(owner.email, OWNER_PASSWORD)
    rotated = service.api("POST", "/saml/certificate")
    assert rotated.status_code == 201, rotated.text
    service.configure(attribute_mapping={"email": "mail"})
    assert "redis unavailable" in server.log()

    redis_process.start()
    recovery = wait_until("login page", answers(f"{server.url}/login?pending=probe"))
    figure("redis restarted: login page back after", recovery)
    assert all_answer(f"{server.url}/login?pending=probe")
    assert readiness(server)[0] == 200
    # the certificate made during the outage signs from now on (the caches reloaded)
    service.certificate = rotated.json()["public_key"]
    sso_works(server, service, member)


def test_frozen_redis_answers_503_within_the_socket_timeout(
    server: Server, service: SamlService, member: Account, redis_process: RedisProcess
) -> None:
    prepared = browser_requests(server, service, member)
    redis_process.signal(signal.SIGSTOP)
    try:
        slowest = 0.0
        for name in ("GET /login", "POST /login", "GET /sso", "GET /init", "GET /slo"):
            response, elapsed = timed(prepared.requests[name])
            assert_unavailable(response, elapsed, api=False)
            slowest = max(slowest, elapsed)
        figure("redis frozen (SIGSTOP): slowest 503", slowest)
        (status, body), elapsed = timed_readiness(server)
        assert status == 503 and body["redis"].startswith("unavailable"), body
        assert elapsed < ANSWER_LIMIT_S
    finally:
        redis_process.signal(signal.SIGCONT)
    recovery = wait_until("login page", answers(f"{server.url}/login?pending=probe"))
    figure("redis thawed: login page back after", recovery)
    sso_works(server, service, member)


def timed_readiness(server: Server) -> tuple[tuple[int, dict[str, str]], float]:
    started = time.monotonic()
    result = readiness(server)
    return result, time.monotonic() - started


# -- a PostgreSQL cluster of our own ---------------------------------------------------------


def pg_program(name: str) -> str:
    """A PostgreSQL server program: on the PATH, or in Debian's versioned directory."""
    found = shutil.which(name) or max(
        (str(path) for path in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")), default=None
    )
    assert found, f"{name} (PostgreSQL server programs) is not installed"
    return found


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class PostgresCluster:
    """A throwaway cluster on a fixed port: stopped (as by a crash), frozen, restarted."""

    directory: Path
    port: int

    @property
    def data(self) -> str:
        return str(self.directory / "data")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/idp"

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=idp"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            as_postgres(pg_program("pg_ctl"), "-D", self.data, "-w", *args),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        """Stop at once, like a crash: every connection is cut, new ones are refused."""
        self.pg_ctl("-m", "immediate", "stop")

    def signal_postmaster(self, signum: int) -> None:
        pid = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signum)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """This module's own PostgreSQL cluster, with an empty database ``idp``."""
    directory = Path(tempfile.mkdtemp(prefix="idp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    made = PostgresCluster(directory, free_port())
    subprocess.run(
        as_postgres(
            pg_program("initdb"), "-D", made.data, "-A", "trust", "-U", "postgres", "--no-sync"
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    made.start()
    with psycopg.connect(made.conninfo.replace("dbname=idp", "dbname=postgres")) as conn:
        conn.autocommit = True
        conn.execute("CREATE DATABASE idp")
    yield made
    with contextlib.suppress(ProcessLookupError, FileNotFoundError):
        made.signal_postmaster(signal.SIGCONT)
    with contextlib.suppress(subprocess.CalledProcessError):
        made.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server(
    cluster: PostgresCluster, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on the module's PostgreSQL cluster (and the run's usual Redis)."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(cluster.url, redis_url, port)
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def pg_owner(pg_server: Server) -> Account:
    email = "owner@acme.test"
    pg_server.cli("bootstrap", "--org", "acme", "--email", email, "--password", OWNER_PASSWORD)
    return Account(email, OWNER_PASSWORD, pg_server.login(email, OWNER_PASSWORD), "acme")


@pytest.fixture(scope="module")
def pg_service(pg_server: Server, pg_owner: Account) -> SamlService:
    return saml_service(pg_server, pg_owner.token, pg_owner.org)


@pytest.fixture(scope="module")
def pg_member(pg_server: Server, pg_owner: Account) -> Account:
    return add_user(pg_server, pg_owner.token, pg_owner.org)


def api_calls(server: Server, owner: Account, service: SamlService) -> dict[str, Any]:
    """Admin API reads and writes, and the API login."""
    org = f"/organizations/{owner.org}"
    return {
        "GET organization": lambda: server.api("GET", org, owner.token),
        "GET saml": lambda: service.api("GET", "/saml"),
        "POST organization": lambda: server.api(
            "POST", "/organizations", owner.token, json={"slug": "during-outage", "name": "x"}
        ),
        "POST certificate": lambda: service.api("POST", "/saml/certificate"),
        "POST auth/login": lambda: requests.post(
            f"{server.url}/api/auth/login",
            json={"email": owner.email, "password": OWNER_PASSWORD},
            timeout=10,
        ),
    }


def sso_count(server: Server, owner: Account, service: SamlService) -> int:
    """logins_total of the service's analytics (which first moves queued events in)."""
    response = service.api("GET", "/analytics")
    assert response.status_code == 200, response.text
    total: int = response.json()["logins_total"]
    return total


def test_database_outage_answers_json_503_keeps_sso_and_loses_no_event(
    pg_server: Server,
    pg_owner: Account,
    pg_service: SamlService,
    pg_member: Account,
    cluster: PostgresCluster,
    redis_url: str,
) -> None:
    cold = saml_service(pg_server, pg_owner.token, pg_owner.org)  # no worker reads it before
    signed_in = Browser(pg_server)
    page = signed_in.sso(f"{pg_service.base}/init", pg_member.email, pg_member.password)
    onelogin_accepts(pg_service, posted_message(page.text), None)
    before = sso_count(pg_server, pg_owner, pg_service)
    anonymous = Browser(pg_server)
    login_page = anonymous.get(f"{pg_service.base}/init")
    assert is_login_page(login_page)
    assert all_answer(f"{pg_server.url}/api/organizations/{pg_owner.org}", pg_owner.token)
    cluster.stop()

    slowest = 0.0
    for _ in range(2):
        for call in api_calls(pg_server, pg_owner, pg_service).values():
            response, elapsed = timed(call)
            assert_unavailable(response, elapsed, api=True)
            slowest = max(slowest, elapsed)
    figure("database stopped: slowest JSON 503 of the admin API", slowest)
    response, elapsed = timed(
        lambda: anonymous.login(login_page, pg_member.email, pg_member.password)
    )
    assert_unavailable(response, elapsed, api=False)
    for url in (f"{cold.base}/init", cold.entity_id):
        response, elapsed = timed(lambda: signed_in.get(url))  # noqa: B023
        assert_unavailable(response, elapsed, api=False)
    status, body = readiness(pg_server)
    assert status == 503 and body["redis"] == "ok", body
    assert body["database"].startswith("unavailable"), body
    assert requests.get(f"{pg_server.url}/healthz", timeout=5).status_code == 200
    assert gauges(pg_server) == {"idp_active_sessions"}

    # a signed-in user keeps signing in to SPs: the service and the user are cached
    during = 3
    for _ in range(during):
        page = signed_in.get(f"{pg_service.base}/init")
        onelogin_accepts(pg_service, posted_message(page.text), None)
    assert redis.Redis.from_url(redis_url).llen(EVENTS) >= during

    cluster.start()
    recovery = wait_until(
        "admin API",
        lambda: (
            pg_server.api("GET", f"/organizations/{pg_owner.org}", pg_owner.token).status_code
            == 200
        ),
    )
    figure("database restarted: admin API back after", recovery)
    assert all_answer(f"{pg_server.url}/api/organizations/{pg_owner.org}", pg_owner.token)
    assert readiness(pg_server)[0] == 200
    assert sso_count(pg_server, pg_owner, pg_service) == before + during
    assert redis.Redis.from_url(redis_url).llen(EVENTS) == 0
    # the organization refused during the outage was not written, and can be made now
    assert pg_server.api("GET", "/organizations/during-outage", pg_owner.token).status_code == 404
    created = pg_server.api(
        "POST", "/organizations", pg_owner.token, json={"slug": "during-outage", "name": "x"}
    )
    assert created.status_code == 201, created.text
    sso_works(pg_server, pg_service, pg_member)


def test_unanswering_database_answers_503_within_the_connect_timeout(
    pg_server: Server, pg_owner: Account, pg_service: SamlService, cluster: PostgresCluster
) -> None:
    cluster.stop()  # the server's pooled connections die with it
    cluster.start()
    cluster.signal_postmaster(signal.SIGSTOP)  # new connections are accepted, never answered
    try:
        limit = CONNECT_TIMEOUT_S + ANSWER_LIMIT_S
        response, elapsed = timed(api_calls(pg_server, pg_owner, pg_service)["GET organization"])
        assert_unavailable(response, elapsed, api=True, limit=limit)
        figure("database frozen (SIGSTOP): JSON 503 after", elapsed)
        (status, body), elapsed = timed_readiness(pg_server)
        assert status == 503 and body["database"].startswith("unavailable"), body
        assert elapsed < limit
    finally:
        cluster.signal_postmaster(signal.SIGCONT)
    recovery = wait_until(
        "admin API",
        lambda: (
            pg_server.api("GET", f"/organizations/{pg_owner.org}", pg_owner.token).status_code
            == 200
        ),
    )
    figure("database thawed: admin API back after", recovery)


def test_write_cut_off_by_the_outage_leaves_nothing_half_written(
    pg_server: Server, pg_owner: Account, pg_service: SamlService, cluster: PostgresCluster
) -> None:
    previous = pg_service.api("GET", "/saml/certificate").json()
    # The test holds the audit table, so a certificate rotation stops at its last statement:
    # the old certificate deactivated and the new one inserted, not yet committed.
    holder = psycopg.connect(cluster.conninfo)
    holder.execute("LOCK TABLE events IN SHARE MODE")
    with ThreadPoolExecutor(1) as pool:
        rotation = pool.submit(pg_service.api, "POST", "/saml/certificate")
        wait_until("rotation waiting on the lock", lambda: lock_waiters(cluster) == 1, 30)
        cluster.stop()
        response = rotation.result(timeout=30)
    holder.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    cluster.start()
    wait_until("admin API", answers(f"{pg_server.url}/healthz"))
    with psycopg.connect(cluster.conninfo) as conn:
        rows = conn.execute(
            "SELECT c.id, c.is_active FROM saml_certificates c JOIN services s "
            "ON s.id = c.service_id WHERE s.slug = %s",
            (pg_service.svc,),
        ).fetchall()
    assert rows == [(previous["id"], True)]
    current = pg_service.api("GET", "/saml/certificate")
    assert current.status_code == 200 and current.json() == previous


def lock_waiters(cluster: PostgresCluster) -> int:
    """How many sessions of the database wait for a lock."""
    with psycopg.connect(cluster.conninfo) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'idp' "
            "AND wait_event_type = 'Lock'"
        ).fetchone()  # type: ignore[misc]
    return int(count)
