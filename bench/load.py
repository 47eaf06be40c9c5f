"""Load test: concurrent SP-initiated logins and SSO against gunicorn, for a bounded time.

Starts ``idp serve`` (gunicorn, N workers) on a fresh database and Redis, provisions one
SAML service and a pool of users through the admin API, then runs concurrent virtual
browsers. Each one repeatedly: starts a fresh browser session, sends an HTTP-Redirect
AuthnRequest, is sent to the login page, signs in (argon2id at the production cost unless
--argon2-time-cost says otherwise), receives the SAMLResponse, then does --sso-per-login
more SSO round trips on that session. Reports throughput, p50/p99 per step, errors, and
the memory (RSS) of the server processes after warm-up and at the end.

Usage: ``.venv/bin/python bench/load.py [--seconds 30] [--browsers 8] [--workers 2]``
(PostgreSQL and a Redis server are used when --database-url / --redis-url are given).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PASSWORD = "load-password-1"
SP_ENTITY = "https://sp.load.test/metadata"
ACS = "https://sp.load.test/acs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(args: argparse.Namespace, workdir: Path, port: int) -> dict[str, str]:
    """The environment of the server (and of the CLI that bootstraps its owner)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_DATABASE_URL=args.database_url or f"sqlite:///{workdir / 'idp.db'}",
        IDP_SECRET_KEY=secrets.token_urlsafe(40),
        IDP_BASE_URL=f"http://127.0.0.1:{port}",
        IDP_ARGON2_TIME_COST=str(args.argon2_time_cost),
        IDP_LOGIN_MAX_FAILURES_PER_IP="1000000",
    )
    if args.redis_url:
        env["IDP_REDIS_URL"] = args.redis_url
    return env


def start(env: dict[str, str], workers: int, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """``idp serve`` with its own database and Redis, answering on the port."""
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start:\n{(workdir / 'server.log').read_text()}")


def provision(url: str, env: dict[str, str], workdir: Path, users: int) -> None:
    """Owner (CLI), service, SAML config, certificate and users (API)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "idp",
            "bootstrap",
            "--org",
            "load",
            "--email",
            "owner@load.test",
            "--password",
            PASSWORD,
        ],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    login = requests.post(
        f"{url}/api/auth/login", json={"email": "owner@load.test", "password": PASSWORD}, timeout=30
    )
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    api = f"{url}/api/organizations/load"
    service = {"slug": "app", "name": "Load App", "service_type": "web", "redirect_uris": []}
    requests.post(f"{api}/services", json=service, headers=auth, timeout=30).raise_for_status()
    config = {
        "enabled": True,
        "entity_id": SP_ENTITY,
        "acs_url": ACS,
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "email", "name": "displayName", "groups": "groups"},
        "sign_assertions": True,
        "sign_response": False,
    }
    requests.put(
        f"{api}/services/app/saml", json=config, headers=auth, timeout=30
    ).raise_for_status()
    requests.post(
        f"{api}/services/app/saml/certificate", headers=auth, timeout=60
    ).raise_for_status()
    for i in range(users):
        body = {
            "email": f"user{i}@load.test",
            "password": PASSWORD,
            "name": f"User {i}",
            "groups": ["staff"],
        }
        requests.post(f"{api}/users", json=body, headers=auth, timeout=30).raise_for_status()


def authn_query() -> str:
    instant = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_{secrets.token_hex(16)}" Version="2.0" IssueInstant="{instant}" '
        f'AssertionConsumerServiceURL="{ACS}">'
        f"<saml:Issuer>{SP_ENTITY}</saml:Issuer></samlp:AuthnRequest>"
    )
    deflater = zlib.compressobj(wbits=-15)
    data = deflater.compress(xml.encode()) + deflater.flush()
    return urlencode({"SAMLRequest": base64.b64encode(data), "RelayState": "/home"})


class Recorder:
    """Latencies per step and error counts, shared by the browser threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)

    def timed(
        self, step: str, client: requests.Session, method: str, url: str, **kwargs: Any
    ) -> requests.Response | None:
        """One request through the browser's session, timed under a step name."""
        started = time.perf_counter()
        try:
            response = client.request(method, url, timeout=30, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.errors[f"{step}: {exc.__class__.__name__}"] += 1
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[step].append(elapsed)
        return response

    def error(self, step: str, what: str) -> None:
        with self.lock:
            self.errors[f"{step}: {what}"] += 1


def browser(url: str, users: int, sso_per_login: int, stop: float, rec: Recorder) -> None:
    """One virtual browser: log in as a user, then SSO again on the session, until stop."""
    sso = f"{url}/saml/load/app/sso"
    while time.monotonic() < stop:
        client = requests.Session()
        email = f"user{secrets.randbelow(users)}@load.test"
        page = rec.timed("sso_to_login", client, "GET", f"{sso}?{authn_query()}")
        if page is None or 'name="password"' not in page.text:
            rec.error("sso_to_login", f"status {page.status_code if page else '-'}")
            continue
        fields = dict(re.findall(r'name="(csrf_token|pending)" value="([^"]*)"', page.text))
        form = {**fields, "email": email, "password": PASSWORD}
        answer = rec.timed("login", client, "POST", f"{url}/login", data=form)
        if answer is None or "SAMLResponse" not in answer.text:
            rec.error("login", f"status {answer.status_code if answer else '-'}")
            continue
        for _ in range(sso_per_login):
            if time.monotonic() >= stop:
                break
            page = rec.timed("sso", client, "GET", f"{sso}?{authn_query()}")
            if page is None or page.status_code != 200 or "SAMLResponse" not in page.text:
                rec.error("sso", f"status {page.status_code if page else '-'}")


def rss_kib(root_pid: int) -> dict[int, int]:
    """Resident memory of the server process and its children (gunicorn workers)."""
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    sizes = {}
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            match = re.search(r"VmRSS:\s+(\d+)", status.read_text())
            if match:
                sizes[pid] = int(match.group(1))
    return sizes


def run_phase(url: str, args: argparse.Namespace, seconds: float) -> Recorder:
    rec = Recorder()
    stop = time.monotonic() + seconds
    threads = [
        threading.Thread(target=browser, args=(url, args.users, args.sso_per_login, stop, rec))
        for _ in range(args.browsers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rec


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured run length")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--browsers", type=int, default=8, help="concurrent virtual browsers")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--sso-per-login", type=int, default=10)
    parser.add_argument("--argon2-time-cost", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idp-load-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        env = server_env(args, workdir, port)
        process = start(env, args.workers, workdir, port)
        url = f"http://127.0.0.1:{port}"
        try:
            provision(url, env, workdir, args.users)
            run_phase(url, args, args.warmup)
            before = rss_kib(process.pid)
            started = time.perf_counter()
            rec = run_phase(url, args, args.seconds)
            elapsed = time.perf_counter() - started
            after = rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"{args.browsers} browsers, {args.workers} gunicorn workers, {elapsed:.0f} s, "
        f"argon2 time cost {args.argon2_time_cost}"
    )
    total = 0
    for step in ("sso_to_login", "login", "sso"):
        values = rec.latency.get(step, [])
        total += len(values)
        print(
            f"  {step:<13} {len(values) / elapsed:8.1f}/s   p50 {pct(values, 50):7.1f} ms   "
            f"p99 {pct(values, 99):7.1f} ms   n={len(values)}"
        )
    print(f"  all requests  {total / elapsed:8.1f}/s")
    errors = sum(rec.errors.values())
    print(f"  errors: {errors}" + "".join(f"\n    {k}: {v}" for k, v in rec.errors.items()))
    for pid in after:
        print(
            f"  rss pid {pid}: {before.get(pid, 0) / 1024:.1f} MiB after warm-up -> "
            f"{after[pid] / 1024:.1f} MiB at the end"
        )
    grew = sum(after.values()) - sum(before.get(p, 0) for p in after)
    print(
        f"load_rps={total / elapsed:.1f} sso_rps={len(rec.latency.get('sso', [])) / elapsed:.1f} "
        f"errors={errors} rss_growth_mib={grew / 1024:.1f}"
    )


if __name__ == "__main__":
    main()
