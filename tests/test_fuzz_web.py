"""The browser routes fuzzed over HTTP with hostile input: /saml/{org}/{svc}/sso, /slo, /init,
/resume, /login and /logout get random and broken query strings, huge and repeated parameters,
broken encodings, mutated, hostile and wrapped SAML messages, odd bodies, and hostile Host and
Cookie headers, sent byte for byte on a raw socket.

Every answer is an HTML page: a 4xx page, or a valid flow (the login form, a redirect to our
own /login, a form posting to the configured ACS or SLO URL); never a 5xx, never a redirect
elsewhere, never a form posting anywhere else. Bounded: a fixed number of examples per test.
"""

from __future__ import annotations

import base64
import contextlib
import html
import http.client
import re
import secrets
import socket
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, urlencode, urlsplit

import pytest
from conftest import Account, Server, add_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from saml_attacks import AUTHN_MOVES, LOGOUT_MOVES, XML_ATTACKS, wrapped
from saml_core_helpers import b64_deflate, key_pair, redirect_query, sign_xml
from sso_helpers import ACS_PORT, Browser, SamlService, authn_request, instant, saml_service

from idp.saml import constants as c

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T = TypeVar("T")
OUTCOMES: Counter[tuple[str, str]] = Counter()
FORM_ACTION = re.compile(rb'<form\b[^>]*\baction="([^"]*)"')


@dataclass(frozen=True)
class Answer:
    """What the server sent back."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Target:
    """The running server, its SAML services and a signed-in browser's session cookie."""

    server: Server
    service: SamlService  # verifies signed requests, accepts unsigned ones
    strict: SamlService  # accepts only signed requests
    member: Account
    sid: str  # a signed-in session for SSO
    other_sid: str  # another, for the fuzzed logouts to end
    csrf: tuple[str, str]  # a browser's CSRF cookie and its form token

    @property
    def host(self) -> bytes:
        return urlsplit(self.server.url).netloc.encode()

    def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> Answer:
        """One request exactly as given (the Host header too, unless ``headers`` has one)."""
        headers = list(headers or [])
        if not any(name.lower() == b"host" for name, _ in headers):
            headers.insert(0, (b"Host", self.host))
        head = [method + b" " + target + b" HTTP/1.1"]
        head += [name + b": " + value for name, value in headers]
        head += [b"Content-Length: %d" % len(body), b"Connection: close"]
        parts = urlsplit(self.server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            # the server may answer (413) before reading everything: then read that answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
            response = http.client.HTTPResponse(sock, method=method.decode())
            response.begin()
            return Answer(response.status, response.headers, response.read())

    def allowed_form_actions(self, route: str) -> set[bytes]:
        """Where a page may post: our own forms, and the configured SP endpoints."""
        ours = {b"/login", b"/logout", b"/login/passkey", b"/oidc/start"}
        if route in ("sso", "init", "resume"):
            return ours | {s.config["acs_url"].encode() for s in (self.service, self.strict)}
        if route == "slo":
            return ours | {s.config["slo_url"].encode() for s in (self.service, self.strict)}
        return ours

    def check(self, route: str, answer: Answer) -> None:
        """The invariants of every answer of a browser route."""
        status = answer.status
        assert 200 <= status < 500, (route, status, answer.body[:500])
        assert answer.headers.get("Content-Type", "").startswith("text/html"), (
            route,
            status,
            answer.headers,
        )
        actions = {html.unescape(a.decode()).encode() for a in FORM_ACTION.findall(answer.body)}
        assert actions <= self.allowed_form_actions(route), (route, status, actions)
        posts_a_message = b'name="SAMLResponse"' in answer.body
        if 300 <= status < 400:
            self._check_redirect(route, answer.headers["Location"])
            kind = "redirect"
        elif posts_a_message:
            assert status == 200, (route, status)
            kind = "posted to the SP"
        elif status >= 400:
            kind = "refused"
        else:
            kind = "page"
        assert not (status >= 400 and posts_a_message), (route, status)
        OUTCOMES[route, kind] += 1

    def _check_redirect(self, route: str, location: str) -> None:
        parts = urlsplit(location)
        if route == "slo" and any(
            location.startswith(s.config["slo_url"] + "?") for s in (self.service, self.strict)
        ):
            return  # the LogoutResponse to the configured SP
        assert (parts.scheme, parts.netloc) in (("", ""), ("http", self.host.decode())), location
        assert parts.path == "/login" and parts.query.startswith("pending="), location


@pytest.fixture(scope="module")
def target(server: Server, owner: Account) -> Target:
    slo = {"slo_url": f"http://127.0.0.1:{ACS_PORT}/slo"}
    certificate = key_pair("sp")[1].decode()
    service = saml_service(server, owner.token, owner.org, sp_certificate=certificate, **slo)
    strict = saml_service(
        server,
        owner.token,
        owner.org,
        sp_certificate=certificate,
        want_authn_requests_signed=True,
        **slo,
    )
    member = add_user(server, owner.token, owner.org)
    sessions = []
    for _ in range(2):
        browser = Browser(server)
        browser.sso(f"{service.base}/init", member.email, member.password)
        assert browser.sid
        sessions.append(browser.sid)
    page = Browser(server).session.get(f"{server.url}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    csrf = (page.cookies["idp_csrf"], token.group(1))
    return Target(server, service, strict, member, sessions[0], sessions[1], csrf)


# Strategies: mostly a valid request with one thing hostile, sometimes everything hostile -------

TEXT = st.text(max_size=40)
BROKEN_ESCAPES = st.sampled_from(["%", "%z", "%zz", "%ff%fe%fd", "%00", "%2", "+%2B%", "%C3%28"])
RAW_BYTES = st.binary(max_size=60).map(lambda b: b.translate(None, b"\r\n"))
HUGE = st.integers(1000, 200_000).map(lambda n: "A" * n)
RELAY_STATE = st.one_of(st.none(), TEXT, st.just("r" * 1025))
PARAM_NAMES = st.one_of(
    st.sampled_from(["SAMLRequest", "RelayState", "SigAlg", "Signature", "pending"]),
    TEXT.map(lambda t: quote(t, safe="")),
).map(str.encode)


def mostly(
    good: st.SearchStrategy[T], bad: st.SearchStrategy[T], odds: int = 3
) -> st.SearchStrategy[T]:
    """``good`` ``odds`` times out of ``odds + 1``, else ``bad`` (failures shrink to good)."""
    return st.sampled_from([True] * odds + [False]).flatmap(lambda ok: good if ok else bad)


def urlencoded(value: str | bytes) -> bytes:
    return quote(value, safe="").encode()


def logout_request(service: SamlService) -> bytes:
    """A LogoutRequest as an SP sends it to ``service``."""
    return (
        f'<samlp:LogoutRequest xmlns:samlp="{c.SAMLP_NS}" xmlns:saml="{c.SAML_NS}" '
        f'ID="_{secrets.token_hex(16)}" Version="2.0" '
        f'IssueInstant="{instant()}" Destination="{service.slo_url}">'
        f"<saml:Issuer>{service.config['entity_id']}</saml:Issuer>"
        f'<saml:NameID Format="{c.NAMEID_EMAIL}">someone@example.test</saml:NameID>'
        "<samlp:SessionIndex>_s1</samlp:SessionIndex></samlp:LogoutRequest>"
    ).encode()


def xml_message(service: SamlService, kind: str) -> st.SearchStrategy[bytes]:
    """A request to ``service``, plain or signed by the SP, with odd attributes; else an XML
    attack, a wrapped signed request, or bytes changed. Built at draw time: fresh IDs."""
    if kind == "authn":
        attributes = st.fixed_dictionaries(
            {},
            optional={
                "ForceAuthn": st.sampled_from(["true", "1", "false", "0", "yes"]),
                "IsPassive": st.sampled_from(["true", "1", "false", "0"]),
                "ProtocolBinding": st.sampled_from([c.BINDING_POST, c.BINDING_REDIRECT]),
                "IssueInstant": st.sampled_from([instant(-3600), "2024-13-40T99:00:00Z"]),
                "Destination": st.sampled_from([service.sso_url, "https://evil.example/"]),
                "AssertionConsumerServiceURL": st.sampled_from(
                    [service.config["acs_url"], "https://evil.example/acs"]
                ),
                "name_id_format": st.sampled_from([c.NAMEID_PERSISTENT, c.NAMEID_UNSPECIFIED]),
            },
        )
        build = mostly(st.just({}), attributes, 1).map(lambda a: authn_request(service, **a))
        moves = AUTHN_MOVES
    else:
        build = st.builds(lambda: logout_request(service))
        moves = LOGOUT_MOVES
    signed = build.map(sign_xml)
    attacks = st.sampled_from(list(XML_ATTACKS.values())).map(
        lambda attack: attack[0] + authn_request(service, issuer=attack[1])
    )
    wrapping = st.tuples(signed, st.lists(st.sampled_from(list(moves.values())), min_size=1)).map(
        lambda pair: wrapped(*pair)
    )
    mutated = st.tuples(
        st.one_of(build, signed), st.integers(0, 4000), st.integers(0, 64), st.binary(max_size=64)
    ).map(lambda m: m[0][: m[1]] + m[3] + m[0][m[1] + m[2] :])
    return mostly(st.one_of(build, signed), st.one_of(attacks, wrapping, mutated), 2)


def junk_pairs() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """Parameters that are broken, huge, raw, or repeat the real ones."""
    values = st.one_of(
        TEXT.map(urlencoded),
        BROKEN_ESCAPES.map(str.encode),
        RAW_BYTES.map(lambda b: b.replace(b"&", b"")),
        HUGE.map(str.encode),
        st.sampled_from([quote(c.SIG_RSA_SHA256, safe=""), "AAAA", ""]).map(str.encode),
    )
    return st.lists(st.tuples(PARAM_NAMES, values), max_size=4)


def query_string(
    service: SamlService, kind: str, binding: str = "redirect"
) -> st.SearchStrategy[bytes]:
    """A query string (or urlencoded form): the binding's message and RelayState, signed over
    the query or not, with junk parameters around it; else nothing like that at all."""
    message = st.tuples(xml_message(service, kind), RELAY_STATE)
    if binding == "redirect":
        plain = message.map(lambda m: redirect_query(m[0], m[1]).encode())
        signed = message.map(lambda m: redirect_query(m[0], m[1], "sp").encode())
        valid = st.one_of(plain, signed)
    else:
        valid = message.map(
            lambda m: urlencode(
                {"SAMLRequest": base64.b64encode(m[0]), **({"RelayState": m[1]} if m[1] else {})}
            ).encode()
        )
    with_junk = st.tuples(valid, junk_pairs(), st.booleans()).map(
        lambda q: b"&".join(
            [n + b"=" + v for n, v in q[1]][: 0 if q[2] else None]
            + [q[0]]
            + ([n + b"=" + v for n, v in q[1]] if q[2] else [])
        )
    )
    hostile = st.one_of(
        junk_pairs().map(lambda ps: b"&".join(n + b"=" + v for n, v in ps)),
        RAW_BYTES,
        TEXT.map(str.encode),
    )
    return mostly(mostly(valid, with_junk, 1), hostile)


def host_header(target: Target) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """Mostly the right Host, else a hostile, long or repeated one, or a forwarded one."""
    hostile = st.sampled_from(
        [
            b"evil.example",
            b"evil.example:443",
            target.host + b"@evil.example",
            b"",
            b"[::1",
            b"\xff\xfe",
            b"a" * 5000,
            b"localhost, evil.example",
        ]
    )
    return mostly(
        st.just([(b"Host", target.host)]),
        st.one_of(
            hostile.map(lambda h: [(b"Host", h)]),
            hostile.map(lambda h: [(b"Host", target.host), (b"X-Forwarded-Host", h)]),
            st.lists(hostile, min_size=2, max_size=3).map(lambda hs: [(b"Host", h) for h in hs]),
        ),
    )


def cookie_header(sid: str) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """No cookie, a signed-in session, or garbage sessions and CSRF cookies, names repeated."""
    values = st.one_of(
        st.just(sid.encode()),
        st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters=";"),
            max_size=60,
        ).map(lambda t: t.encode("latin-1")),
        st.integers(129, 8000).map(lambda n: b"x" * n),
    )
    garbage = st.lists(
        st.tuples(st.sampled_from([b"idp_session", b"idp_csrf", b"other", b""]), values),
        max_size=4,
    ).map(lambda ps: [(b"Cookie", b"; ".join(n + b"=" + v for n, v in ps))])
    session = st.just([(b"Cookie", b"idp_session=" + sid.encode())])
    return st.one_of(st.just([]), session, garbage)


def headers(target: Target, sid: str | None = None) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """A Host header and a Cookie header (the SSO session unless told another)."""
    return st.tuples(host_header(target), cookie_header(sid or target.sid)).map(
        lambda t: t[0] + t[1]
    )


FORM = b"application/x-www-form-urlencoded"
OTHER_TYPES = st.sampled_from(
    [
        FORM + b"; charset=utf-7",
        b"multipart/form-data",
        b"multipart/form-data; boundary=XyZ",
        b"text/plain",
        b"application/json",
        None,
    ]
)
MULTIPART = st.lists(st.tuples(TEXT, TEXT), max_size=4).map(
    lambda fields: (
        b"".join(
            b'--XyZ\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
            % (n.encode(), v.encode())
            for n, v in fields
        )
        + b"--XyZ--\r\n"
    )
)


def form_body(service: SamlService, kind: str) -> st.SearchStrategy[tuple[bytes | None, bytes]]:
    """A content type and a body: mostly the binding's form, else another type, multipart,
    garbage, or more than the 1 MiB limit."""
    hostile = st.one_of(
        st.tuples(
            OTHER_TYPES, st.one_of(query_string(service, kind, "post"), st.binary(max_size=300))
        ),
        st.tuples(st.just(b"multipart/form-data; boundary=XyZ"), MULTIPART),
        st.tuples(
            st.just(FORM),
            st.integers(1024 * 1024 - 50, 1024 * 1024 + 100).map(
                lambda n: b"RelayState=" + b"x" * n
            ),
        ),
    )
    return mostly(st.tuples(st.just(FORM), query_string(service, kind, "post")), hostile)


def with_type(content_type: bytes | None) -> list[tuple[bytes, bytes]]:
    return [] if content_type is None else [(b"Content-Type", content_type)]


def path_segment(real: str) -> st.SearchStrategy[bytes]:
    """The real slug mostly, else something hostile."""
    hostile = st.one_of(
        TEXT.map(lambda t: quote(t, safe="").encode()),
        st.sampled_from([b"%00", b"..", b"%2e%2e", b"%ff", b"a" * 300, b"%2F"]),
    )
    return mostly(st.just(real.encode()), hostile, 6)


def saml_path(service: SamlService, route: str) -> st.SearchStrategy[bytes]:
    return st.tuples(path_segment(service.org), path_segment(service.svc)).map(
        lambda p: b"/saml/%s/%s/%s" % (p[0], p[1], route.encode())
    )


def a_service(target: Target) -> st.SearchStrategy[SamlService]:
    """Mostly the service that takes unsigned requests, else the one that wants them signed."""
    return mostly(st.just(target.service), st.just(target.strict), 2)


# The fuzzers ----------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_sso_by_redirect(target: Target, data: st.DataObject) -> None:
    service = data.draw(a_service(target))
    query = data.draw(query_string(service, "authn"))
    path = data.draw(saml_path(service, "sso"))
    answer = target.send(b"GET", path + b"?" + query, data.draw(headers(target)))
    target.check("sso", answer)


@FUZZ
@given(data=st.data())
def test_fuzz_sso_by_post(target: Target, data: st.DataObject) -> None:
    service = data.draw(a_service(target))
    content_type, body = data.draw(form_body(service, "authn"))
    path = data.draw(saml_path(service, "sso"))
    answer = target.send(b"POST", path, data.draw(headers(target)) + with_type(content_type), body)
    target.check("sso", answer)


@FUZZ
@given(data=st.data())
def test_fuzz_slo(target: Target, data: st.DataObject) -> None:
    service = data.draw(a_service(target))
    path = data.draw(saml_path(service, "slo"))
    if data.draw(st.booleans(), label="by POST"):
        content_type, body = data.draw(form_body(service, "logout"))
        answer = target.send(
            b"POST",
            path,
            data.draw(headers(target, target.other_sid)) + with_type(content_type),
            body,
        )
    else:
        query = data.draw(query_string(service, "logout"))
        answer = target.send(
            b"GET", path + b"?" + query, data.draw(headers(target, target.other_sid))
        )
    target.check("slo", answer)


@FUZZ
@given(data=st.data())
def test_fuzz_init_and_resume(target: Target, data: st.DataObject) -> None:
    service = data.draw(a_service(target))
    route = data.draw(st.sampled_from(["init", "resume"]))
    relay = data.draw(RELAY_STATE)
    query = urlencode({"RelayState": relay} if relay else {}).encode()
    query = data.draw(mostly(st.just(query), query_string(service, "authn")))
    path = data.draw(saml_path(service, route))
    answer = target.send(b"GET", path + b"?" + query, data.draw(headers(target)))
    target.check(route, answer)


LOGIN_VALUES = st.one_of(
    TEXT.map(urlencoded), BROKEN_ESCAPES.map(str.encode), RAW_BYTES, HUGE.map(str.encode)
)


def login_fields(target: Target) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """Mostly the form's fields (the right token, the member's organization and email, a
    password that is right or not) with junk around them; else any fields at all."""
    org, email, password = target.member.org, target.member.email, target.member.password
    form = st.tuples(
        st.just((b"csrf_token", target.csrf[1].encode())),
        st.tuples(st.just(b"org"), mostly(st.just(urlencoded(org)), LOGIN_VALUES)),
        st.tuples(st.just(b"email"), mostly(st.just(urlencoded(email)), LOGIN_VALUES)),
        st.tuples(st.just(b"password"), mostly(st.just(urlencoded(password)), LOGIN_VALUES, 1)),
    ).map(list)
    names = st.sampled_from([b"org", b"email", b"password", b"csrf_token", b"pending", b"x"])
    junk = st.lists(st.tuples(names, LOGIN_VALUES), max_size=4)
    return mostly(st.tuples(form, junk).map(lambda f: f[0] + f[1]), junk)


@FUZZ
@given(data=st.data())
def test_fuzz_login_and_logout(target: Target, data: st.DataObject) -> None:
    method, path = data.draw(
        st.sampled_from([(b"GET", b"/login"), (b"POST", b"/login"), (b"POST", b"/logout")])
    )
    encoded = b"&".join(n + b"=" + v for n, v in data.draw(login_fields(target)))
    csrf_cookie = b"idp_csrf=%s; idp_session=%s" % (
        target.csrf[0].encode(),
        target.other_sid.encode(),
    )
    cookie = data.draw(mostly(st.just([(b"Cookie", csrf_cookie)]), cookie_header(target.other_sid)))
    sent = data.draw(host_header(target)) + cookie
    if method == b"GET":
        answer = target.send(method, path + b"?" + encoded, sent)
    else:
        content_type = data.draw(mostly(st.just(FORM), OTHER_TYPES))
        answer = target.send(method, path, sent + with_type(content_type), encoded)
    target.check("login", answer)


@FUZZ
@given(data=st.data())
def test_fuzz_methods_and_paths(target: Target, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(["sso", "slo", "init", "resume", "metadata"]))
    method = data.draw(st.sampled_from([b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"GET"]))
    path = data.draw(saml_path(data.draw(a_service(target)), route))
    answer = target.send(method, path, data.draw(headers(target)))
    if method in (b"HEAD", b"OPTIONS") and answer.status in (200, 303):
        return  # no body to look at (HEAD) or the allowed methods (OPTIONS)
    if route == "metadata" and answer.status == 200:
        assert answer.headers["Content-Type"].startswith("application/samlmetadata+xml")
        return
    target.check(route if route != "metadata" else "login", answer)


# Seeds, one by one -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["authn", "logout"])
def test_every_wrapped_signed_request_is_refused_over_http(target: Target, kind: str) -> None:
    """Each wrapping move on a request the SP really signed: 400 by HTTP-POST (the signature is
    checked) and by HTTP-Redirect to the service that wants signed requests (the enveloped
    signature does not count there); never a Response, whatever the browser's session."""
    moves = AUTHN_MOVES if kind == "authn" else LOGOUT_MOVES
    route = "sso" if kind == "authn" else "slo"
    cookie = [(b"Cookie", b"idp_session=" + target.sid.encode())]
    form = [(b"Content-Type", b"application/x-www-form-urlencoded")]

    def signed_and_wrapped(service: SamlService, name: str) -> tuple[bytes, bytes]:
        fresh = authn_request(service) if kind == "authn" else logout_request(service)
        path = urlsplit(getattr(service, f"{route}_url")).path.encode()
        return path, wrapped(sign_xml(fresh), [moves[name]])

    for name in moves:
        for service in (target.service, target.strict):
            path, xml = signed_and_wrapped(service, name)
            body = urlencode({"SAMLRequest": base64.b64encode(xml)}).encode()
            by_post = target.send(b"POST", path, cookie + form, body)
            assert by_post.status == 400, (name, by_post.body[:300])
            target.check(route, by_post)
        path, xml = signed_and_wrapped(target.strict, name)
        query = urlencode({"SAMLRequest": b64_deflate(xml)}).encode()
        by_redirect = target.send(b"GET", path + b"?" + query, cookie)
        assert by_redirect.status == 400, (name, by_redirect.body[:300])
        target.check(route, by_redirect)


def test_what_the_fuzzers_found_stays_fixed(target: Target) -> None:
    """A Host header that cannot be routed (an IDNA label over 63 characters) broke the error
    page itself (500); NUL in the login email broke the user lookup on PostgreSQL."""
    long_label = [(b"Host", b"a" * 64 + b".example")]
    for path in (b"/login", urlsplit(target.service.sso_url).path.encode()):
        answer = target.send(b"GET", path, long_label)
        assert answer.status == 400
        target.check("login", answer)
    api = target.send(b"GET", b"/api/openapi.json", long_label)
    assert api.status == 400 and api.headers["Content-Type"] == "application/json"

    cookie, token = target.csrf
    fields = {
        "csrf_token": token,
        "org": target.member.org,
        "email": "a\x00b@example.test",
        "password": "password",
    }
    answer = target.send(
        b"POST",
        b"/login",
        [(b"Cookie", b"idp_csrf=" + cookie.encode()), (b"Content-Type", FORM)],
        urlencode(fields).encode(),
    )
    assert answer.status == 401 and b'name="password"' in answer.body
    target.check("login", answer)


def test_the_fuzzers_reached_every_kind_of_answer(server: Server) -> None:
    """Not only refusals: the fuzzed requests also reached the valid flows; and nothing the
    server logged was an unexpected exception."""
    log = server.log()
    assert '"level": "error"' not in log, [line for line in log.splitlines() if "error" in line][:3]
    seen = set(OUTCOMES)
    expected: list[tuple[str, str]] = [
        ("sso", "posted to the SP"),
        ("sso", "redirect"),
        ("sso", "refused"),
        ("slo", "redirect"),
        ("slo", "refused"),
        ("init", "posted to the SP"),
        ("init", "refused"),
        ("resume", "refused"),
        ("login", "page"),
        ("login", "refused"),
    ]
    missing = [outcome for outcome in expected if outcome not in seen]
    assert not missing, (missing, OUTCOMES)
