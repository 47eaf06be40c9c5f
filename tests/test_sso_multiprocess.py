"""Two server processes behind one public origin, sharing the database and Redis: a login,
a pending request, a replay, a throttle, a rotation or a logout at one is seen by the other."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import (
    Account,
    Server,
    add_user,
    free_port,
    server_env,
    start_server,
    stop_server,
)
from sso_helpers import (
    Browser,
    assert_refused,
    authn_request,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    onelogin_rejects,
    posted_message,
    pysaml2_accepts,
    pysaml2_redirect,
    pysaml2_sp,
    redirect_url,
    request_id_of,
    saml_service,
)


@pytest.fixture(scope="module")
def second(
    server: Server, database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Another ``idp serve`` on the same database and Redis, with the same public origin."""
    port = free_port()
    env = server_env(database_url, redis_url, port, IDP_BASE_URL=server.url)
    running = start_server(env, port, tmp_path_factory.mktemp("log-second") / "server.log")
    yield running
    stop_server(running)


@pytest.fixture
def member(server: Server, owner: Account, org: str) -> Account:
    """An account of the test's organization (the module's owner is an operator)."""
    return add_user(server, owner.token, org)


def at(process: Server, url: str) -> str:
    """The same public URL, sent to one process."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{process.url}{parts.path}{query}"


def test_login_at_one_process_serves_sso_and_slo_at_the_other(
    server: Server, second: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, sign_response=True)
    browser = Browser(server)
    auth = onelogin_auth(service)
    page = browser.sso(auth.login(), member.email, member.password)
    onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())

    client = pysaml2_sp(service, tmp_path)
    request_id, url = pysaml2_redirect(client, service)
    page = browser.get(at(second, url))
    assert not page.history and not is_login_page(page)
    message = posted_message(page.text)
    info = pysaml2_accepts(client, message, request_id).session_info()
    onelogin_accepts(service, message, request_id)

    logout = auth.logout(
        name_id=info["name_id"].text,
        session_index=info["session_index"],
        name_id_format=service.config["name_id_format"],
    )
    assert browser.get(logout).status_code == 200
    assert is_login_page(browser.get(at(second, onelogin_auth(service).login())))


def test_pending_request_survives_a_change_of_process(
    server: Server, second: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org)
    member = add_user(server, owner.token, org)
    browser = Browser(server)
    auth = onelogin_auth(service)
    start = browser.get(auth.login(), allow_redirects=False)
    assert start.status_code == 303
    page = browser.get(at(second, server.url + start.headers["Location"]))
    assert is_login_page(page) and f"App {service.svc}" in page.text

    second_browser = Browser(second, browser.session)
    signed_in = second_browser.session.post(
        f"{second.url}/login",
        data={
            "csrf_token": _field(page, "csrf_token"),
            "pending": _field(page, "pending"),
            "email": member.email,
            "password": member.password,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 303
    answer = browser.get(server.url + signed_in.headers["Location"])
    response = onelogin_accepts(service, posted_message(answer.text), auth.get_last_request_id())
    assert response.get_nameid() == member.email


def _field(page: requests.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_rotation_through_one_process_changes_the_others_signatures(
    server: Server, second: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    browser = Browser(server)
    auth = onelogin_auth(service)
    page = browser.get(at(second, auth.login()))
    page = Browser(second, browser.session).login(page, member.email, member.password)
    onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())

    old = service.rotate()
    page = browser.get(at(second, auth.login()))
    message = posted_message(page.text)
    onelogin_rejects(service, message, auth.get_last_request_id(), certificate=old)
    onelogin_accepts(service, message, auth.get_last_request_id())


def test_replay_at_another_process_is_refused(
    server: Server, second: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    browser = Browser(server)
    page = browser.sso(f"{service.base}/init", member.email, member.password)
    posted_message(page.text)
    xml = authn_request(service)
    url = redirect_url(service, xml)
    onelogin_accepts(service, posted_message(browser.get(url).text), request_id_of(xml))
    assert_refused(browser.get(at(second, url), allow_redirects=False), 400, "already used")


def test_login_failures_count_across_processes(
    server: Server, second: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org)
    victim = add_user(server, owner.token, org)
    for process in (server, second, server, second, server):
        browser = Browser(process)
        page = browser.get(at(process, onelogin_auth(service).login()))
        assert browser.login(page, victim.email, "wrong").status_code == 401
    browser = Browser(second)
    page = browser.get(at(second, onelogin_auth(service).login()))
    assert browser.login(page, victim.email, victim.password).status_code == 429
