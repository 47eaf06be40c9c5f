"""Login throttling under concurrent attempts: no race lets more password checks through than
the limit, per email and per client address, at the login page and the API login alike; and
once the limit is reached even the right password waits for the window to end."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from conftest import (
    Account,
    Server,
    add_user,
    flush_redis,
    free_port,
    server_env,
    start_server,
    stop_server,
    unique_slug,
)
from requests.adapters import HTTPAdapter

from idp.sessions import Store, _throttle_key, connect

PER_EMAIL = 5
PER_ADDRESS = 10
WINDOW_S = 4
BURST = 24


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Two workers (the race crosses processes) with small limits and a short window."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(
        database_url,
        redis_url,
        port,
        IDP_LOGIN_MAX_FAILURES=str(PER_EMAIL),
        IDP_LOGIN_MAX_FAILURES_PER_IP=str(PER_ADDRESS),
        IDP_LOGIN_THROTTLE_WINDOW=str(WINDOW_S),
    )
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log", workers=2)
    yield running
    stop_server(running)


class FromAddress(HTTPAdapter):
    """Connects from another loopback address, as another client would."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Client:
    """A browser (its CSRF cookie and form token) and an API caller at one client address."""

    server: Server
    address: str
    org: str = "acme"  # the organization its sign-ins aim at

    def __post_init__(self) -> None:
        page = self.http().get(f"{self.server.url}/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token, page.text
        self.cookie = page.cookies["idp_csrf"]
        self.token = token.group(1)

    def http(self) -> requests.Session:
        session = requests.Session()
        session.mount("http://", FromAddress(self.address))
        session.headers["Connection"] = "close"
        return session

    def page_login(self, email: str, password: str) -> requests.Response:
        return self.http().post(
            f"{self.server.url}/login",
            data={
                "csrf_token": self.token,
                "org": self.org,
                "email": email,
                "password": password,
            },
            headers={"Cookie": f"idp_csrf={self.cookie}"},
            allow_redirects=False,
            timeout=30,
        )

    def api_login(self, email: str, password: str) -> requests.Response:
        return self.http().post(
            f"{self.server.url}/api/auth/login",
            json={"email": email, "password": password, "organization": self.org},
            timeout=30,
        )


ADDRESSES = iter(f"127.0.0.{n}" for n in range(20, 250))


def client(server: Server, org: str = "acme") -> Client:
    """A client at a loopback address no other test uses, signing in to ``org``."""
    return Client(server, next(ADDRESSES), org)


def burst(calls: list[Callable[[], requests.Response]]) -> Counter[int]:
    """Start every call at the same instant; count the answers by status."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], requests.Response]) -> int:
        start.wait()
        return call().status_code

    with ThreadPoolExecutor(len(calls)) as pool:
        return Counter(pool.map(run, calls))


def signed_in(response: requests.Response) -> bool:
    """A login that succeeded: the page's session cookie, or the API's token."""
    if response.request.url and response.request.url.endswith("/api/auth/login"):
        return response.status_code == 200 and "token" in response.json()
    return response.status_code == 200 and "idp_session" in response.cookies


def refused_until_the_window_ends(attempt: Callable[[], requests.Response]) -> float:
    """Retry the right password until it is accepted: every earlier answer is 429 with a
    Retry-After within the window. Returns how long it took."""
    started = time.monotonic()
    while True:
        response = attempt()
        if signed_in(response):
            return time.monotonic() - started
        assert response.status_code == 429, (response.status_code, response.text)
        assert 0 < int(response.headers["Retry-After"]) <= WINDOW_S
        assert time.monotonic() - started < WINDOW_S + 2, "the window never ended"
        time.sleep(0.25)


@pytest.fixture
def victim(server: Server, owner: Account) -> Account:
    return add_user(server, owner.token, owner.org)


def test_concurrent_wrong_passwords_at_the_login_page_pass_at_most_the_limit(
    server: Server, victim: Account
) -> None:
    guesser = client(server)
    answers = burst([lambda: guesser.page_login(victim.email, "wrong-password")] * BURST)
    assert answers == {401: PER_EMAIL, 429: BURST - PER_EMAIL}
    waited = refused_until_the_window_ends(
        lambda: guesser.page_login(victim.email, victim.password)
    )
    assert waited > WINDOW_S - 2  # refused for most of the window that the burst opened


def test_the_page_and_the_api_share_one_count(server: Server, victim: Account) -> None:
    guesser = client(server)
    page = [lambda: guesser.page_login(victim.email, "wrong-password")] * (BURST // 2)
    api = [lambda: guesser.api_login(victim.email, "wrong-password")] * (BURST // 2)
    answers = burst(page + api)
    assert answers == {401: PER_EMAIL, 429: BURST - PER_EMAIL}
    refused = guesser.api_login(victim.email, victim.password)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= WINDOW_S
    assert "token" not in refused.json()
    elsewhere = client(server)  # the email is locked, whatever the address
    assert elsewhere.page_login(victim.email, victim.password).status_code == 429
    refused_until_the_window_ends(lambda: elsewhere.api_login(victim.email, victim.password))


def test_the_email_is_counted_within_its_organization(
    server: Server, owner: Account, victim: Account
) -> None:
    """The same email in another organization names another account, with its own count."""
    other = unique_slug("other")
    body = {"slug": other, "name": other}
    assert server.api("POST", "/organizations", owner.token, json=body).status_code == 201
    twin = add_user(server, owner.token, other, email=victim.email, password="twin-password-1")
    guesser = client(server)
    answers = burst([lambda: guesser.page_login(victim.email, "wrong-password")] * BURST)
    assert answers == {401: PER_EMAIL, 429: BURST - PER_EMAIL}
    assert guesser.page_login(victim.email, victim.password).status_code == 429
    elsewhere = client(server, other)
    assert signed_in(elsewhere.page_login(twin.email, twin.password))
    assert signed_in(elsewhere.api_login(twin.email, twin.password))


def test_concurrent_guesses_from_one_address_pass_at_most_its_limit(
    server: Server, owner: Account
) -> None:
    guesser, neighbour = client(server), client(server)
    calls = [
        (lambda i=i: guesser.page_login(f"guess-{i}@example.test", "password"))
        for i in range(BURST)
    ]
    assert burst(calls) == {401: PER_ADDRESS, 429: BURST - PER_ADDRESS}
    member = add_user(server, owner.token, owner.org)
    assert guesser.page_login(member.email, member.password).status_code == 429
    assert guesser.api_login(member.email, member.password).status_code == 429
    assert signed_in(neighbour.page_login(member.email, member.password))
    refused_until_the_window_ends(lambda: guesser.page_login(member.email, member.password))


def test_a_good_login_gives_its_attempt_back_to_the_address(server: Server, owner: Account) -> None:
    """Many people behind one address: successes never use up its failure budget (all of it
    within the one window the first attempt opens)."""
    office = client(server)
    member = add_user(server, owner.token, owner.org)
    started = time.monotonic()
    for _ in range(PER_ADDRESS):
        assert signed_in(office.page_login(member.email, member.password))
        assert signed_in(office.api_login(member.email, member.password))
    for i in range(PER_ADDRESS):
        assert office.page_login(f"typo-{i}@example.test", "password").status_code == 401
    throttled = office.page_login("one-more@example.test", "password")
    assert time.monotonic() - started < WINDOW_S, "too slow to stay within one window"
    assert throttled.status_code == 429


def test_a_give_back_after_the_window_ended_leaves_no_count_without_expiry(
    redis_url: str,
) -> None:
    """A login whose password check outlasts the window must not leave a count that never
    resets (a plain DECR on the expired key would create one)."""
    store = Store(connect(redis_url), 60)
    email, address = f"email:{time.time_ns()}", f"ip:{time.time_ns()}"
    assert store.take_attempt({email: 5, address: 5}, window=1) == 0
    time.sleep(1.2)  # the password check took longer than the window
    store.login_succeeded(email, address)
    assert store.redis.ttl(_throttle_key(address)) == -2  # no key, rather than one forever
    assert store.take_attempt({address: 5}, window=1) == 0
    assert 0 < store.redis.ttl(_throttle_key(address)) <= 1
