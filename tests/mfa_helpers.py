"""Helpers for multi-factor sign-in over HTTP, as a browser does it (tests/test_mfa_*.py and the
SP-stack MFA tests): plain functions taking the server URL and a ``requests.Session``.

- ``sign_in_with_password``: the password step at ``/login?org=…`` (or a login page already
  fetched, e.g. the one an SSO request was sent to); answers 303 to ``/login/factor`` for an
  account with a factor.
- ``answer_factor``: the code step at ``/login/factor``.
- ``enrol_totp``: turn on an authenticator at ``/account/totp?org=…`` in a signed-in session;
  returns the ``pyotp.TOTP`` and the ten recovery codes shown once.
- ``totp_code``: a valid code of a step this test process never spent (each TOTP step is
  accepted once, and three steps are valid at any time: now and one either side).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import requests
from conftest import Server, flush_redis, free_port, server_env, start_server, stop_server
from lxml import html as lxml_html

TIMEOUT_S = 10
TOTP_STEP_S = 30
RECOVERY_CODE = re.compile(r"^[a-z0-9]{5}-[a-z0-9]{5}$")


def browser_session() -> requests.Session:
    """A cookie-keeping client without idle keep-alive connections (they hold up the test
    server's shutdown)."""
    session = requests.Session()
    session.headers["Connection"] = "close"
    return session


def serve(database_url: str, redis_url: str, log_dir: Path) -> Iterator[Server]:
    """The body of a module's ``server`` fixture for MFA tests: a server as conftest's, but with
    a roomy per-address failure limit, since every request of the module comes from 127.0.0.1
    and its many deliberate wrong codes would otherwise lock the address (the per-email limit,
    what the MFA rules are about, stays at its default of 5 in 15 minutes)."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port, IDP_LOGIN_MAX_FAILURES_PER_IP="10000")
    running = start_server(env, port, log_dir / "server.log")
    yield running
    stop_server(running)


# HTML forms ------------------------------------------------------------------------------------


def forms(page: str, action: str) -> list[lxml_html.FormElement]:
    """The forms of ``page`` that post to the path ``action`` (absolute or relative action)."""
    tree = lxml_html.fromstring(page)
    return [
        form
        for form in tree.forms
        if urlsplit(form.get("action") or "").path == action
        and (form.get("method") or "get").lower() == "post"
    ]


def form_fields(page: str, action: str) -> dict[str, str]:
    """What the first form of ``page`` posting to ``action`` sends as the page has it: its
    hidden inputs (csrf_token, org, pending, next, ...) and the values its other inputs were
    filled with (the organization of a login page reached with ?org=); fails when the page
    has no such form."""
    found = forms(page, action)
    assert found, f"no form posting to {action}: {page[:2000]}"
    fields: dict[str, str] = {}
    for field in found[0].inputs:
        kind = (field.get("type") or "text").lower()
        name = field.get("name")
        if field.tag != "input" or not name or kind in ("password", "submit", "button"):
            continue
        if kind == "hidden" or field.get("value"):
            fields[name] = field.get("value") or ""
    return fields


def element_text(page: str, element_id: str) -> str | None:
    """The text of the element with that id, or None."""
    found = lxml_html.fromstring(page).xpath(f'//*[@id="{element_id}"]')
    return found[0].text_content().strip() if found else None


def recovery_codes(page: str) -> list[str]:
    """The codes listed in ``<ul id="recovery-codes">`` (each ``<li><code>…</code></li>``)."""
    tree = lxml_html.fromstring(page)
    return [code.text_content().strip() for code in tree.xpath('//ul[@id="recovery-codes"]//code')]


# Sign-in ---------------------------------------------------------------------------------------


def login_page(url: str, session: requests.Session, org: str) -> requests.Response:
    """GET /login?org=SLUG."""
    page = session.get(f"{url}/login", params={"org": org}, timeout=TIMEOUT_S)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:1000]
    return page


def sign_in_with_password(
    url: str,
    session: requests.Session,
    org: str | None,
    email: str,
    password: str,
    page: requests.Response | None = None,
) -> requests.Response:
    """The password step, redirects not followed: fill the login form of ``page`` (default:
    ``GET /login?org=org``), keeping its hidden fields (csrf_token, pending, org, next), and
    POST it. ``org`` fills the organization field when given.

    The answer: 303 to ``/login/factor`` for an account with a factor, 303 to the pending SSO
    step or 200 "You are signed in" for one without, 401 wrong, 429 throttled."""
    if page is None:
        assert org is not None
        page = login_page(url, session, org)
    fields = form_fields(page.text, "/login")
    if org is not None:
        fields["org"] = org
    return session.post(
        f"{url}/login",
        data={**fields, "email": email, "password": password},
        allow_redirects=False,
        timeout=TIMEOUT_S,
    )


def goes_to_factor(response: requests.Response) -> bool:
    """True for the password step's 303 to /login/factor."""
    location = response.headers.get("Location", "")
    return response.status_code == 303 and urlsplit(location).path == "/login/factor"


def factor_page(url: str, session: requests.Session) -> requests.Response:
    """GET /login/factor: the code form."""
    page = session.get(f"{url}/login/factor", timeout=TIMEOUT_S)
    assert page.status_code == 200 and 'name="code"' in page.text, (
        page.status_code,
        page.text[:1000],
    )
    return page


def answer_factor(
    url: str, session: requests.Session, code: str, allow_redirects: bool = False
) -> requests.Response:
    """The code step: fetch /login/factor, POST its form with ``code`` (a TOTP or recovery
    code). Without redirects: 303 to the pending SSO step or 200 "You are signed in" when
    right, 401 wrong, 429 throttled."""
    fields = form_fields(factor_page(url, session).text, "/login/factor")
    return session.post(
        f"{url}/login/factor",
        data={**fields, "code": code},
        allow_redirects=allow_redirects,
        timeout=TIMEOUT_S,
    )


def sign_in_with_code(
    url: str, session: requests.Session, org: str, email: str, password: str, code: str
) -> requests.Response:
    """Both steps at /login?org=…; the code step's answer (redirects not followed)."""
    first = sign_in_with_password(url, session, org, email, password)
    assert goes_to_factor(first), (first.status_code, first.headers, first.text[:1000])
    return answer_factor(url, session, code)


def is_signed_in_page(response: requests.Response) -> bool:
    """The sign-in's final page without a pending SSO request."""
    return response.status_code == 200 and "You are signed in" in response.text


# TOTP ------------------------------------------------------------------------------------------

_spent: dict[str, set[int]] = {}
_spent_lock = threading.Lock()


def same_account(totp: pyotp.TOTP, other: pyotp.TOTP) -> None:
    """Two authenticators of one account (a replacement being set up): the IdP may count a
    used step per account, so hand out no step of one that the other used."""
    with _spent_lock:
        _spent[totp.secret] = _spent.setdefault(other.secret, set())


def spend_step(totp: pyotp.TOTP, at: float) -> str:
    """The code of the step holding ``at``, remembered as used."""
    with _spent_lock:
        _spent.setdefault(totp.secret, set()).add(int(at // TOTP_STEP_S))
    return totp.at(at)


def totp_code(totp: pyotp.TOTP) -> str:
    """A valid code of a step not handed out before (then remembered as used): this step,
    else the next one, else the previous one while it is safely inside the window, else wait
    for the next step."""
    while True:
        now = time.time()
        step = int(now // TOTP_STEP_S)
        left_in_step = (step + 1) * TOTP_STEP_S - now
        with _spent_lock:
            spent = _spent.setdefault(totp.secret, set())
            candidates = [step, step + 1] + ([step - 1] if left_in_step > 3 else [])
            for candidate in candidates:
                if candidate not in spent:
                    spent.add(candidate)
                    return totp.at(candidate * TOTP_STEP_S)
        time.sleep(left_in_step + 0.1)


def totp_page(url: str, session: requests.Session, org: str) -> requests.Response:
    """GET /account/totp?org=SLUG (a signed-in session)."""
    page = session.get(f"{url}/account/totp", params={"org": org}, timeout=TIMEOUT_S)
    assert page.status_code == 200, (page.status_code, page.text[:1000])
    return page


def authenticator(page: str) -> pyotp.TOTP:
    """The authenticator app for the base32 secret of ``<code id="totp-secret">`` (spaces
    between its groups dropped), as someone typing it in would set it up."""
    secret = element_text(page, "totp-secret")
    assert secret, page[:2000]
    return pyotp.TOTP("".join(secret.split()))


def enrol_totp(url: str, session: requests.Session, org: str) -> tuple[pyotp.TOTP, list[str]]:
    """Turn on an authenticator app from the account page of a signed-in session: read the
    base32 secret of ``<code id="totp-secret">``, answer with a current code. Returns the
    authenticator and the recovery codes the page listed (empty when it was not the account's
    first factor)."""
    page = totp_page(url, session, org)
    totp = authenticator(page.text)
    fields = form_fields(page.text, "/account/totp")
    done = session.post(
        f"{url}/account/totp",
        data={**fields, "org": fields.get("org", org), "code": totp_code(totp)},
        timeout=TIMEOUT_S,
    )
    assert done.status_code == 200, (done.status_code, done.text[:2000])
    return totp, recovery_codes(done.text)


def enrolled_account_session(
    url: str, org: str, email: str, password: str
) -> tuple[requests.Session, pyotp.TOTP, list[str]]:
    """A fresh browser signed in with the password (an account without a factor yet), which
    then enrols TOTP; returns it (signed in with MFA), the authenticator and recovery codes."""
    session = browser_session()
    first = sign_in_with_password(url, session, org, email, password)
    assert is_signed_in_page(first), (first.status_code, first.text[:1000])
    totp, codes = enrol_totp(url, session, org)
    return session, totp, codes
