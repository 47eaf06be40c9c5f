"""Security-review findings, each as the attack: hostile JSON nesting, /metrics scraped from
afar, cacheable API answers, mailboxes with markup in them, world-readable stores, and
argon2 hashes that stay on an old cost. No test needs a signed-in user."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import (
    STARTUP_TIMEOUT_S,
    Account,
    Server,
    free_port,
    start_server,
    stop_server,
)
from prometheus_client.parser import text_string_to_metric_families

LOGIN = "/auth/login"
PASSWORD = "not-the-password-123"
MAX_DEPTH = 32  # idp.api.validation.MAX_DEPTH
METRICS_TOKEN = "scrape-token-0123456789abcdef"
OUTSIDER = "203.0.113.9"  # TEST-NET-3: a client that is not on this host
PRIVATE = 0o077  # group and other permission bits


def nested(depth: int, inner: Any = "x") -> Any:
    """``inner`` inside ``depth`` arrays, built without recursion."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int, inner: str = "") -> str:
    """JSON text of ``inner`` in ``depth`` nested arrays, written out (no encoder recursion)."""
    return "[" * depth + inner + "]" * depth


def login(server: Server, body: Any = None, raw: str | None = None) -> requests.Response:
    """POST /api/auth/login with no credential of any kind, as JSON or as raw text."""
    if raw is not None:
        headers = {"Content-Type": "application/json"}
        return server.api("POST", LOGIN, data=raw.encode(), headers=headers)
    return server.api("POST", LOGIN, json=body)


def assert_invalid(response: requests.Response, field: str | None = None) -> dict[str, Any]:
    """A 400 in the API's error model (naming ``field`` in its details when given)."""
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "invalid_request"
    if field is not None:
        assert field in body.get("details", {}), body
    return body


# -- JSON nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        f'{{"email": {deep_text(1000, json.dumps("x"))}, "password": "{PASSWORD}"}}',
        deep_text(1000),
        deep_text(100_000),
        '{"a":' * 5000 + "1" + "}" * 5000,
    ],
    ids=["email-1000", "array-1000", "array-100000", "object-5000"],
)
def test_deeply_nested_json_is_refused_not_crashed(server: Server, raw: str) -> None:
    assert_invalid(login(server, raw=raw), "body")
    assert requests.get(f"{server.url}/healthz", timeout=10).ok


def test_nesting_is_refused_only_past_the_bound(server: Server) -> None:
    at_bound = login(server, {"email": nested(MAX_DEPTH - 1), "password": PASSWORD})
    assert assert_invalid(at_bound, "email")["details"]["email"] == "must be a string"
    past_bound = login(server, {"email": nested(MAX_DEPTH), "password": PASSWORD})
    assert set(assert_invalid(past_bound, "body")["details"]) == {"body"}


# -- /metrics ----------------------------------------------------------------------------------


def assert_prometheus(response: requests.Response) -> None:
    """A scrape in the Prometheus text format with the service's own metrics."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "idp_request_duration_seconds" in names


def start_alongside(server: Server, log_dir: Path, **extra: str) -> Server:
    """Another server on this module's stores, with extra settings."""
    port = free_port()
    env = {**server.env, "IDP_BASE_URL": f"http://127.0.0.1:{port}", **extra}
    return start_server(env, port, log_dir / f"server-{port}.log")


@pytest.fixture(scope="module")
def behind_proxy(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No metrics token, behind one trusted proxy: X-Forwarded-For names the client."""
    running = start_alongside(server, tmp_path_factory.mktemp("log"), IDP_TRUSTED_PROXIES="1")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def guarded(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """IDP_METRICS_TOKEN set."""
    running = start_alongside(
        server, tmp_path_factory.mktemp("log"), IDP_METRICS_TOKEN=METRICS_TOKEN
    )
    yield running
    stop_server(running)


def test_metrics_answer_loopback_scrapers_without_a_token(server: Server) -> None:
    assert_prometheus(requests.get(f"{server.url}/metrics", timeout=10))


def test_metrics_are_not_served_to_a_remote_client_without_a_token(behind_proxy: Server) -> None:
    url = f"{behind_proxy.url}/metrics"
    remote = requests.get(url, headers={"X-Forwarded-For": OUTSIDER}, timeout=10)
    assert remote.status_code == 404
    assert "idp_" not in remote.text
    local = {"X-Forwarded-For": "127.0.0.1"}  # the proxy's own host scraping through it
    assert_prometheus(requests.get(url, headers=local, timeout=10))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token-0123456789abcdef",
        f"Bearer {METRICS_TOKEN}x",
        f"Bearer {METRICS_TOKEN[:-1]}",
        METRICS_TOKEN,
        f"Basic {METRICS_TOKEN}",
        f"Bearer  {METRICS_TOKEN}",
    ],
)
def test_metrics_token_when_set_is_the_only_way_in(
    guarded: Server, authorization: str | None
) -> None:
    url = f"{guarded.url}/metrics"
    headers = {"Authorization": authorization} if authorization else {}
    refused = requests.get(url, headers=headers, timeout=10)  # from loopback, all the same
    assert refused.status_code == 404
    assert "idp_" not in refused.text


def test_the_metrics_token_lets_a_scraper_in(guarded: Server) -> None:
    right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert_prometheus(requests.get(f"{guarded.url}/metrics", headers=right, timeout=10))


def test_a_short_metrics_token_stops_the_service(server: Server) -> None:
    env = {**server.env, "IDP_METRICS_TOKEN": "short"}
    command = [sys.executable, "-m", "idp", "migrate"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "IDP_METRICS_TOKEN is malformed" in done.stderr


# -- caching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", LOGIN, {"email": "nobody@example.test", "password": PASSWORD}),
        ("POST", LOGIN, {"email": 1}),
        ("GET", "/openapi.json", None),
        ("GET", "/no-such-route", None),
        ("GET", "/organizations", None),
    ],
)
def test_api_answers_are_never_cached(
    server: Server, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = server.api(method, path, json=body)
    assert response.headers["Cache-Control"] == "no-store", (response.status_code, path)


def test_no_store_stays_under_api(server: Server) -> None:
    health = requests.get(f"{server.url}/healthz", timeout=10)
    assert "no-store" not in health.headers.get("Cache-Control", "")


# -- email syntax ------------------------------------------------------------------------------

LONGEST_EMAIL = "x" * 64 + "@" + ".".join(["d" * 63] * 4)  # 320 characters
GOOD_EMAILS = [
    "first.last+tag@sub.example.org",
    "o'brien@example.ie",
    "a!#$%&'*+/=?^_`{|}~-z@example.test",
    "user@xn--bcher-kva.example",
    "josé@exämple.de",
    "用户@例子.广告",
    "दीपक@उदाहरण.भारत",
    "x" * 64 + "@example.test",
    LONGEST_EMAIL,
]
BAD_EMAILS = [
    "a<b>@x.test",
    '"q"@x.test',
    "a..b@x.test",
    ".a@x.test",
    "a.@x.test",
    "a@x",
    "a@-x.test",
    "a@x-.test",
    "a@x..test",
    "a@x.test.",
    "a@[127.0.0.1]",
    "a@127.0.0.1",
    "a b@x.test",
    "a@x.test\n",
    "a\x00@x.test",
    "@x.test",
    "a@",
    "a@@x.test",
    "a(comment)@x.test",
    "a@ex_ample.test",
    "a\uff1cb@x.test",  # a fullwidth '<'
    "x" * 65 + "@example.test",
    "x" * 64 + "@" + ".".join(["d" * 63] * 3 + ["e" * 62, "f"]),  # 321 characters
    "x@" + "d" * 64 + ".test",
]


EMAIL_SCHEMA = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}


@pytest.mark.parametrize("email", GOOD_EMAILS)
def test_practical_mailboxes_are_emails(email: str) -> None:
    from idp.api import validation

    assert validation.validate({"email": email}, EMAIL_SCHEMA) == {"email": email}
    assert validation.is_email(email)


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_markup_quotes_and_malformed_domains_are_not_emails(email: str) -> None:
    from idp.api import validation
    from idp.api.errors import ApiError

    with pytest.raises(ApiError) as refused:
        validation.validate({"email": email}, EMAIL_SCHEMA)
    assert (refused.value.status, refused.value.code) == (400, "invalid_request")
    assert refused.value.details == {"email": "must be an email address"}
    assert not validation.is_email(email)


def test_a_normal_mailbox_passes_login_validation(server: Server) -> None:
    response = login(server, {"email": "first.last+tag@sub.example.org", "password": PASSWORD})
    assert response.status_code != 400 or "email" not in response.json().get("details", {})


@pytest.mark.parametrize("email", ["a<b>@x.test", '"q"@x.test', "a..b@x.test", "a@x", "a@-x.test"])
def test_an_account_cannot_get_a_malformed_email(
    server: Server, owner: Account, email: str
) -> None:
    """v1.1 stored `a<b>@x.test` as an account's email; now it is refused with a reason."""
    body = {"email": email, "password": PASSWORD}
    response = server.api("POST", f"/organizations/{owner.org}/users", owner.token, json=body)
    assert_invalid(response, "email")


@pytest.mark.parametrize("email", ["a<b>@x.test", '"q"@x.test'])
def test_a_malformed_email_at_login_is_a_wrong_credential(server: Server, email: str) -> None:
    """No account can have such an email, so the login says what any wrong login says."""
    response = login(server, {"email": email, "password": PASSWORD, "organization": "acme"})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid email or password"


# -- file modes --------------------------------------------------------------------------------


def serve_in(directory: Path) -> Server:
    """``idp serve`` with every default (embedded SQLite, Redis and secret) in a directory."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_ARGON2_TIME_COST="1", IDP_ARGON2_MEMORY_KIB="64", PYTHONUNBUFFERED="1")
    log_path = directory / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve", "--port", str(port), "--workers", "1"],
        cwd=directory,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    running = Server(f"http://127.0.0.1:{port}", env, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{running.url}/healthz", timeout=1).ok:
                return running
        except (requests.ConnectionError, requests.Timeout):  # still booting
            time.sleep(0.1)
    stop_server(running)
    raise RuntimeError(f"server did not start:\n{running.log()}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(paths: list[Path]) -> None:
    """Nobody but the owner can read, write or enter any of these."""
    loose = {str(p): oct(mode(p)) for p in paths if mode(p) & PRIVATE}
    assert not loose, loose


def test_embedded_stores_and_secret_are_private(tmp_path: Path) -> None:
    running = serve_in(tmp_path)
    try:
        login(running, {"email": "nobody@example.test", "password": PASSWORD})  # a real read
        var = tmp_path / "var"
        for name in ("idp.db", "secret.key"):
            assert mode(var / name) == 0o600
        socket = re.search(r"embedded Redis at unix://(\S+)", running.log())
        assert socket is not None, running.log()
        socket_path = Path(socket.group(1))
        assert_private([socket_path, socket_path.parent])
        assert_private([var, *var.iterdir()])
    finally:
        stop_server(running)
    files = [p for p in var.iterdir() if p.is_file()]
    assert {"idp.db", "secret.key", "redis.db"} <= {p.name for p in files}
    assert_private(files)


# -- password hashes ---------------------------------------------------------------------------


def test_a_hash_of_an_older_cost_needs_a_rehash() -> None:
    from idp.auth import Passwords

    today = Passwords(time_cost=1, memory_kib=64)
    stored = today.hash(PASSWORD)
    assert today.needs_rehash(stored) is False
    assert Passwords(time_cost=2, memory_kib=64).needs_rehash(stored) is True
    assert Passwords(time_cost=1, memory_kib=128).needs_rehash(stored) is True
    assert today.needs_rehash("not an argon2 hash") is False
