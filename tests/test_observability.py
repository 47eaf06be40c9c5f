"""Metrics, logs and request IDs after real SSO traffic, on a server with two workers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from admin_helpers import client, new_key
from conftest import (
    Account,
    Server,
    flush_redis,
    free_port,
    server_env,
    start_server,
    stop_server,
)
from metrics_helpers import scrape, value
from sso_helpers import (
    Browser,
    SamlService,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    saml_service,
)

REFUSALS = 7  # malformed AuthnRequests sent, each counted once whichever worker served it
WRONG_PASSWORD = "not-the-password-123"
ID_HEADER = "X-Request-ID"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def server(
    database_url: str,
    redis_url: str,
    metrics_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """This module's server runs two workers sharing their metrics through a directory."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log", workers=2)
    yield running
    stop_server(running)


@dataclass
class Traffic:
    """What the module's traffic used: the service, and every secret it sent or received."""

    service: SamlService
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def traffic(server: Server, owner: Account) -> Traffic:
    """One successful SSO, refused AuthnRequests, a failed login, an API key in use."""
    service = saml_service(server, owner.token, owner.org)
    auth = onelogin_auth(service)
    browser = Browser(server)
    url = auth.login()
    page = browser.sso(url, owner.email, WRONG_PASSWORD)
    assert page.status_code == 401 and 'name="password"' in page.text
    pending = re.search(r'name="pending" value="([^"]+)"', page.text)
    assert pending
    page = browser.login(page, owner.email, owner.password)
    message = posted_message(page.text)
    onelogin_accepts(service, message, auth.get_last_request_id())
    for _ in range(REFUSALS):
        refused = requests.get(f"{service.base}/sso", params={"SAMLRequest": "%%%"}, timeout=10)
        assert refused.status_code == 400
    elsewhere = auth.login().replace(f"/{service.svc}/sso", "/no-such-app/sso")
    unknown = requests.get(elsewhere, timeout=10)
    assert unknown.status_code == 404
    key = new_key(client(server, owner), owner.org, service.svc, "read:service")
    assert server.api("GET", f"/organizations/{owner.org}/services/{service.svc}", key).ok
    return Traffic(
        service,
        {
            "owner password": owner.password,
            "wrong password": WRONG_PASSWORD,
            "bearer token": owner.token,
            "API key": key,
            "SAMLResponse": message.value,
            "SAMLRequest": parse_qs(urlsplit(url).query)["SAMLRequest"][0],
            "SAMLRequest as sent": re.findall(r"SAMLRequest=([^&]+)", url)[0],
            "pending login token": pending.group(1),
            "session cookie": browser.session.cookies["idp_session"],
            "private key": "PRIVATE KEY",
        },
    )


# -- metrics -----------------------------------------------------------------------------------


def test_sso_and_login_outcomes_are_counted(server: Server, traffic: Traffic) -> None:
    samples = scrape(server)
    sso = "idp_sso_requests_total"
    assert value(samples, sso, outcome="success", reason="") == 1
    assert value(samples, sso, outcome="login_required", reason="") == 1
    assert value(samples, sso, outcome="refused", reason="bad_encoding") == REFUSALS
    assert value(samples, sso, outcome="refused", reason="unknown_service") == 1
    assert value(samples, "idp_logins_total", result="failure") == 1
    assert value(samples, "idp_logins_total", result="success") == 1


def test_latency_signing_sessions_and_certificate_expiry(
    server: Server, owner: Account, traffic: Traffic
) -> None:
    samples = scrape(server)
    counts = {s.labels["group"]: s.value for s in samples["idp_request_duration_seconds_count"]}
    assert counts["sso"] >= REFUSALS + 2  # the refusals, the unknown service, the first request
    assert counts["login"] >= 2 and counts["api"] >= 4
    buckets = [
        s for s in samples["idp_request_duration_seconds_bucket"] if s.labels["group"] == "sso"
    ]
    assert any(s.labels["le"] == "+Inf" and s.value == counts["sso"] for s in buckets)
    assert value(samples, "idp_signing_seconds_count") >= 1
    assert value(samples, "idp_active_sessions") >= 1
    days = value(samples, "idp_certificate_expiry_days", org=owner.org, service=traffic.service.svc)
    assert 3649 < days <= 3650


def test_every_worker_reports_into_the_same_totals(
    server: Server, metrics_dir: Path, traffic: Traffic
) -> None:
    writers = {re.sub(r"\D", "", p.stem) for p in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 2, "both workers should have counted requests"
    for _ in range(8):  # whichever worker answers the scrape sees the sum of all of them
        samples = scrape(server)
        assert (
            value(samples, "idp_sso_requests_total", outcome="refused", reason="bad_encoding")
            == REFUSALS
        )


# -- logs -------------------------------------------------------------------------------------


def log_lines(server: Server) -> list[dict[str, Any]]:
    lines = [line for line in server.log().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return parsed


def test_every_log_line_is_json_and_requests_are_described(
    server: Server, owner: Account, traffic: Traffic
) -> None:
    lines = log_lines(server)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    requests_logged = [line for line in lines if line["logger"] == "idp.access"]
    sso = [line for line in requests_logged if line["route"] == "/saml/<org>/<svc>/sso"]
    assert len(sso) >= REFUSALS
    refused = next(line for line in sso if line["status"] == 400)
    assert refused["org"] == owner.org and refused["service"] == traffic.service.svc
    assert refused["path"] == f"/saml/{owner.org}/{traffic.service.svc}/sso"  # no query string
    assert isinstance(refused["duration_ms"], float | int) and refused["request_id"]
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # its start, as JSON
    assert not any(line["logger"] == "gunicorn.access" for line in lines)  # query strings


def test_no_secret_reaches_the_log(server: Server, traffic: Traffic) -> None:
    log = server.log()
    for name, secret in traffic.secrets.items():
        assert secret not in log, f"the log holds the {name}"


# -- request IDs ------------------------------------------------------------------------------


def test_every_response_carries_a_request_id_that_the_log_line_names(server: Server) -> None:
    ids = set()
    for path in ("/healthz", "/metrics", "/api/openapi.json", "/login", "/api/nope", "/nope"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        request_id = response.headers.get(ID_HEADER)
        assert request_id and re.fullmatch(r"[A-Za-z0-9._-]{8,64}", request_id), path
        ids.add(request_id)
    assert len(ids) == 6
    logged = {line.get("request_id") for line in log_lines(server)}
    assert ids <= logged


def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(server: Server) -> None:
    kept = requests.get(f"{server.url}/healthz", headers={ID_HEADER: "lb-1234abcd"}, timeout=10)
    assert kept.headers[ID_HEADER] == "lb-1234abcd"
    hostile = 'x" onload="alert(1)' + "A" * 80
    replaced = requests.get(f"{server.url}/healthz", headers={ID_HEADER: hostile}, timeout=10)
    assert replaced.headers[ID_HEADER] != hostile
    assert hostile not in server.log()


def test_error_pages_show_the_request_id(server: Server, traffic: Traffic) -> None:
    response = requests.get(  # a refused LogoutRequest: not one of the counted SSO refusals
        f"{traffic.service.base}/slo", params={"SAMLRequest": "%%%"}, timeout=10
    )
    assert response.status_code == 400
    request_id = response.headers[ID_HEADER]
    assert f"<code>{request_id}</code>" in response.text
    unknown = requests.get(f"{server.url}/no/such/page", timeout=10)
    assert unknown.status_code == 404
    assert unknown.headers[ID_HEADER] in unknown.text


# -- forwarded headers ------------------------------------------------------------------------


def remote_of(server: Server, request_id: str) -> str:
    """The client address the server logged for a request."""
    line = next(line for line in log_lines(server) if line.get("request_id") == request_id)
    remote: str = line["remote"]
    return remote


def forwarded(server: Server, request_id: str) -> None:
    headers = {
        ID_HEADER: request_id,
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
    }
    assert requests.get(f"{server.url}/healthz", headers=headers, timeout=10).ok


def test_forwarded_headers_count_only_behind_trusted_proxies(
    server: Server, tmp_path: Path
) -> None:
    forwarded(server, "untrusted-0001")
    assert remote_of(server, "untrusted-0001") == "127.0.0.1"
    port = free_port()
    env = {**server.env, "IDP_BASE_URL": f"http://127.0.0.1:{port}", "IDP_TRUSTED_PROXIES": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    behind = start_server(env, port, tmp_path / "behind.log")
    try:
        forwarded(behind, "trusted-00001")
        assert remote_of(behind, "trusted-00001") == "203.0.113.7"
    finally:
        stop_server(behind)
