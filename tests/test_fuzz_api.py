"""The admin API fuzzed with schemathesis against the OpenAPI document of a running server
(built in-process for collection, and checked first to be the one /api/openapi.json serves:
schemathesis's fixture-based loader does not run on pytest 9).

Bounded for CI: a fixed number of examples per operation and phase, and a time budget for the
whole run. Every answer must be free of 5xx and conform to the document (status code, content
type, response schema); valid requests must be accepted (the custom string formats get
strategies whose values really pass the product's checks) and invalid ones refused. Path
parameters and body ids mostly name resources that exist, so the fuzzer reaches past the
404s; slugs and emails collide across examples, and 409 is a documented answer.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from conftest import (
    OWNER_PASSWORD,
    Account,
    Server,
    flush_redis,
    free_port,
    server_env,
    start_server,
    stop_server,
    unique_slug,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from saml_core_helpers import key_pair
from schemathesis.core.parameters import ParameterLocation

import idp.api  # noqa: F401  (importing the API registers every operation)
from idp.api.openapi import document
from idp.auth import PERMISSIONS

EXAMPLES = 15  # per operation and phase
RUN_BUDGET_S = 300  # the whole run; CI must stay well under ten minutes
OWNER_EMAIL = "owner@acme.test"
# Operations whose success needs what no fuzzer can guess (the owner's password).
NO_SUCCESS_EXPECTED = {"POST /api/auth/login"}

# Strategies for the document's custom string formats: every value passes the product's check.

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
DOMAIN = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "test", "example"]),
)
PATH = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,3}", fullmatch=True)
QUERY = st.one_of(st.just(""), st.from_regex(r"\?[a-z]{1,6}=[A-Za-z0-9]{0,8}", fullmatch=True))
PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
LOOPBACK = st.sampled_from(["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "[::1]"])
ENDPOINT_URL = st.one_of(
    st.builds(lambda h, p, path, q: f"https://{h}{p}{path}{q}", DOMAIN, PORT, PATH, QUERY),
    st.builds(lambda h, p, path, q: f"http://{h}{p}{path}{q}", LOOPBACK, PORT, PATH, QUERY),
)
APP_SCHEME = st.sampled_from(["com.example.app", "myapp"])  # mobile and CLI callbacks
ABSOLUTE_URI = st.one_of(
    ENDPOINT_URL,
    st.builds(lambda h, path: f"http://{h}{path}", DOMAIN, PATH),
    st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}", APP_SCHEME, LABEL, PATH),
    st.builds(lambda scheme, path: f"{scheme}:/{path.lstrip('/')}", APP_SCHEME, PATH),
)
EMAIL = st.one_of(
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}", fullmatch=True),
        DOMAIN,
    ),
    st.just(OWNER_EMAIL),  # an account of the fuzzed organization: conflicts
)
PEM_CERTIFICATE = st.sampled_from(
    [
        key_pair("sp")[1].decode(),
        key_pair("sp-other")[1].decode(),
        key_pair("sp-ec", "ec")[1].decode(),
    ]
)

RSA_PEM_CERTIFICATE = st.sampled_from(
    [key_pair("sp")[1].decode(), key_pair("sp-other")[1].decode()]
)

for _name, _strategy in (
    ("absolute-uri", ABSOLUTE_URI),
    ("endpoint-url", ENDPOINT_URL),
    ("email", EMAIL),
    ("pem-certificate", PEM_CERTIFICATE),
    ("rsa-pem-certificate", RSA_PEM_CERTIFICATE),
):
    schemathesis.openapi.format(_name, _strategy)

PLACEHOLDER_URL = "http://placeholder.invalid"
schema = schemathesis.openapi.from_dict(
    document(PLACEHOLDER_URL),
    config=schemathesis.Config.from_dict(
        {"generation": {"max-examples": EXAMPLES}, "phases": {"stateful": {"enabled": False}}}
    ),
)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SAML_CONFIG = {
    "enabled": True,
    "entity_id": "https://sp.example.test/metadata",
    "acs_url": "https://sp.example.test/acs",
    "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "attribute_mapping": {"email": "email"},
    "sign_assertions": True,
    "sign_response": False,
}
METADATA_SOURCES = ("sp_metadata", "sp_metadata_url")


def saml_settings(body: dict[str, Any]) -> dict[str, Any]:
    """A valid SAML configuration with the generated fields over it: no SP metadata (random
    text and URLs are not metadata; metadata import has its own tests) and no preset (which
    may leave out what only the tenant knows)."""
    sent = {k: v for k, v in body.items() if k not in (*METADATA_SOURCES, "preset")}
    settings = {**SAML_CONFIG, **sent}
    if not settings.get("sp_certificate"):
        settings["want_authn_requests_signed"] = False
    if not settings.get("sp_encryption_certificate"):
        settings["encrypt_assertions"] = False
    if not settings["sign_assertions"]:
        settings["sign_response"] = True
    return settings


MOSTLY = st.sampled_from([True, True, True, True, False])  # four times out of five
STATUSES: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """This module's own server: the fuzzer's many wrong logins all come from one address."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port, IDP_LOGIN_MAX_FAILURES_PER_IP="1000000")
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


@dataclass
class World:
    """Resources the fuzzer's ids mostly point at; restored after the fuzzer uses them up."""

    server: Server
    owner: Account  # the module's operator
    org: str
    outsiders: str  # another organization, whose accounts' emails ``org`` may take too
    deadline: float
    ids: dict[str, str] = field(default_factory=dict)
    key: str = ""
    dirty: bool = True

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An admin call as the owner that must succeed."""
        response = self.server.api(method, path, self.owner.token, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def exists(self, path: str) -> bool:
        return self.server.api("GET", path, self.owner.token).ok

    def ensure(self) -> None:
        """After a deletion, a subscription or a new account: the organization with an owner
        account (email OWNER_EMAIL), the main service with SAML and a certificate, a plan with
        an account's subscription, a plan without any, an API key with every permission and
        one to be fuzzed, an account without a subscription, and an email that has an account
        in another organization but none here yet."""
        if not self.dirty:
            return
        if not self.exists(f"/organizations/{self.org}"):  # the operator deleted it
            self.call("POST", "/organizations", json={"slug": self.org, "name": self.org})
            self.ids = {}
        if not self.ids:
            founder = {"email": OWNER_EMAIL, "role": "owner", "password": OWNER_PASSWORD}
            self.call("POST", f"/organizations/{self.org}/users", json=founder)
        base = f"/organizations/{self.org}/services"
        if not self.ids or not self.exists(f"{base}/{self.ids['svc']}"):
            self._new_service(base)
        here = f"{base}/{self.ids['svc']}"
        if not self.exists(f"{here}/saml/certificate"):
            self.call("PUT", f"{here}/saml", json=SAML_CONFIG)
            self.call("POST", f"{here}/saml/certificate")
        self.ids["certificate_id"] = self.call("GET", f"{here}/saml/certificate")["id"]
        plans = self.call("GET", f"{here}/plans")
        if not any(p["plan"]["id"] == self.ids["plan_id"] for p in plans):
            self.ids["plan_id"] = self._plan(here)
        if not self.exists(f"{here}/api-keys/{self.ids['key_id']}"):
            target = {"name": "target", "permissions": ["read:service"]}
            self.ids["key_id"] = self.call("POST", f"{here}/api-keys", json=target)["id"]
        if not self.ids["user_id"]:
            member = self._user(self.org)
            self.ids["user_id"], self.ids["member_email"] = member["id"], member["email"]
        if not self.ids["outsider_email"]:
            self.ids["outsider_email"] = self._user(self.outsiders)["email"]
        self.dirty = False

    def _new_service(self, base: str) -> None:
        for service in self.call("GET", base)["services"]:  # room under the service limit
            self.call("DELETE", f"{base}/{service['slug']}")
        svc = unique_slug("main")
        body = {"slug": svc, "name": "Main", "service_type": "web", "redirect_uris": []}
        self.call("POST", base, json=body)
        here = f"{base}/{svc}"
        subscription = {"email": self._user(self.org)["email"], "plan_id": self._plan(here)}
        subscription_id = self.call("POST", f"{here}/subscriptions", json=subscription)["id"]
        every = {"name": "fuzz", "permissions": list(PERMISSIONS)}
        self.key = self.call("POST", f"{here}/api-keys", json=every)["key"]
        self.ids = dict.fromkeys(("plan_id", "key_id", "user_id", "member_email"), "")
        self.ids |= {"org": self.org, "svc": svc, "subscription_id": subscription_id}
        self.ids.setdefault("outsider_email", "")

    def _plan(self, here: str) -> str:
        body = {"name": unique_slug("plan"), "price_cents": 100, "currency": "usd", "features": []}
        plan_id: str = self.call("POST", f"{here}/plans", json=body)["plan"]["id"]
        return plan_id

    def _user(self, org: str) -> dict[str, str]:
        body = {"email": f"{unique_slug('user')}@fuzz.example.test"}
        user: dict[str, str] = self.call("POST", f"/organizations/{org}/users", json=body)
        return user

    def aim(self, case: schemathesis.Case, data: st.DataObject) -> None:
        """In valid requests, point most path parameters and body ids at existing resources,
        and the emails of new accounts and subscriptions at emails that can take them (new
        containers, so that schemathesis judges a changed request again)."""
        meta = case.meta
        if meta is not None and meta.is_negative_at(ParameterLocation.PATH):
            return  # leave schemathesis's invalid requests as it made them
        path = {
            name: self.ids[name] if name in self.ids and data.draw(MOSTLY, label=name) else value
            for name, value in (case.path_parameters or {}).items()
        }
        if path != case.path_parameters:
            case.path_parameters = path
        if not isinstance(case.body, dict) or (
            meta is not None and meta.is_negative_at(ParameterLocation.BODY)
        ):
            return
        known = {"plan_id": self.ids["plan_id"], "user_id": self.ids["user_id"]}
        if case.method == "POST" and case.operation.path.endswith("/users"):
            known["email"] = self.ids["outsider_email"]  # a new account, not a conflict
        elif case.operation.path.endswith("/subscriptions"):
            known["email"] = self.ids["member_email"]
        body = {
            name: known[name]
            if name in known and isinstance(value, str) and data.draw(MOSTLY, label=name)
            else value
            for name, value in case.body.items()
        }
        if case.method == "PUT" and case.operation.path.endswith("/saml"):
            body = saml_settings(body)
        if body != case.body:
            case.body = body

    def used(self, case: schemathesis.Case, status: int) -> None:
        """Note what a successful request used up, for ``ensure`` to restore."""
        if status >= 300:
            return
        path = case.operation.path
        if path.endswith("/users/{user_id}") and case.method in ("PATCH", "DELETE"):
            self.ids["user_id"] = ""  # deleted, or changed (email, disabled): make another
            self.dirty = True
        elif case.method == "DELETE" or path.endswith("/saml/certificate"):
            self.dirty = True  # gone, or a new certificate retired the known one
        elif case.method == "POST" and path.endswith("/subscriptions"):
            self.ids["user_id"] = ""  # subscribed now
            self.dirty = True
        elif case.method == "POST" and path.endswith("/users"):
            self.ids["outsider_email"] = ""  # has an account here now
            self.dirty = True


@pytest.fixture(scope="module")
def world(server: Server, owner: Account) -> World:
    slugs = unique_slug("fuzz"), unique_slug("outsiders")
    for slug in slugs:
        body = {"slug": slug, "name": slug}
        assert server.api("POST", "/organizations", owner.token, json=body).status_code == 201
    return World(server, owner, *slugs, time.monotonic() + RUN_BUDGET_S)


def test_the_fuzzed_document_is_the_one_the_server_serves(server: Server) -> None:
    served = requests.get(f"{server.url}/api/openapi.json", timeout=10).json()
    assert served == json.loads(json.dumps(document(server.url)))


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/organizations/{org}/services/{svc}/api-keys?limt=5", None, 400, "limt"),
        ("GET", "/organizations/{org}/audit-events?var=1&offset=2", None, 400, "var"),
        ("POST", "/organizations", {"slug": "nul-name", "name": "a\u0000b"}, 400, "name"),
        ("POST", "/organizations", {"slug": "ctl-name", "name": "\u000e"}, 400, "name"),
        ("POST", "/organizations/{org}/users", {"email": "a\u0000b@x.test"}, 400, "email"),
        ("POST", "/auth/login", {"email": "a\u0000b@x.test", "password": "x"}, 401, None),
    ],
    ids=[
        "misspelt-limit",
        "unknown-parameter",
        "nul-in-name",
        "control-character-in-name",
        "nul-in-email",
        "nul-in-login-email",
    ],
)
def test_what_the_fuzzer_found_stays_fixed(
    world: World,
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    field: str | None,
) -> None:
    """Found by this fuzzer: unknown query parameters were ignored; NUL in a name or an email
    was documented as valid, but PostgreSQL cannot store or compare it (400 for a login)."""
    world.ensure()
    response = world.server.api(method, path.format(**world.ids), world.owner.token, json=body)
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["error"] == "invalid_request"
        assert field in response.json()["details"]


def _fuzz(case: schemathesis.Case, world: World, data: st.DataObject, run: str) -> None:
    if time.monotonic() > world.deadline:
        return  # budget spent: the coverage test below names what was not reached
    world.ensure()
    world.aim(case, data)
    credential = world.owner.token if run == "owner" else world.key
    if case.operation.path == "/api/auth/logout":  # it would revoke the run's credential
        credential = world.server.login(world.owner.email, OWNER_PASSWORD)
    kwargs: dict[str, Any] = {
        "base_url": world.server.url,
        "headers": {"Authorization": f"Bearer {credential}"},
    }
    response = case.call(**kwargs)
    STATUSES[run][f"{case.method} {case.operation.path}"].add(response.status_code)
    world.used(case, response.status_code)
    case.validate_response(response, headers=kwargs["headers"], transport_kwargs=kwargs)


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ
def test_admin_api_with_a_bearer_token(
    case: schemathesis.Case, data: st.DataObject, world: World
) -> None:
    """As the operator (owner rights in every organization): every operation, as
    documented."""
    _fuzz(case, world, data, "owner")


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ
def test_admin_api_with_an_api_key(
    case: schemathesis.Case, data: st.DataObject, world: World
) -> None:
    """As an API key with every permission: inside its service, as documented; else 403."""
    _fuzz(case, world, data, "key")


def test_every_operation_was_reached_and_succeeded() -> None:
    """The positive cases were really valid: every operation answered a success at least once."""
    operations = {
        f"{method.upper()} {path}"
        for path, methods in document(PLACEHOLDER_URL)["paths"].items()
        for method in methods
    }
    owner = STATUSES["owner"]
    assert set(owner) == operations, "not fuzzed within the budget: " + ", ".join(
        sorted(operations - set(owner))
    )
    failing = {
        name: sorted(statuses)
        for name, statuses in owner.items()
        if name not in NO_SUCCESS_EXPECTED and not any(200 <= s < 300 for s in statuses)
    }
    assert not failing, failing
    assert set(STATUSES["key"]) == operations
    key_successes = [name for name, statuses in STATUSES["key"].items() if 200 in statuses]
    assert "GET /api/organizations/{org}/services/{svc}" in key_successes
