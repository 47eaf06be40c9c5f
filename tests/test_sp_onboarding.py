"""SP onboarding over HTTP (CONTRACT §8): SP metadata as pysaml2 and python3-saml write it,
sign-in at each of the SP's ACS URLs, a metadata URL refreshed in the background, encrypted
assertions, and the presets for well-known SPs (by the API and by ``idp provision``).

One server for the module, started with ``IDP_METADATA_REFRESH=2`` so that a metadata URL is
read again every couple of seconds. The SP stacks are real: pysaml2 (xmlsec1) configured as
the SP that published the metadata, and python3-saml in strict mode; the browser never posts
to an ACS, the stacks validate what the IdP's answer page would post.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from admin_helpers import client, new_service
from conftest import (
    Account,
    Server,
    flush_redis,
    free_port,
    server_env,
    start_server,
    stop_server,
    unique_slug,
)
from lxml import etree
from metrics_helpers import scrape, value
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_BASIC, NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS
from saml2.saml import NAMEID_FORMAT_PERSISTENT as PERSISTENT
from saml_core_helpers import query_params
from sp_metadata_helpers import (
    GCM128,
    GCM256,
    OAEP,
    ONELOGIN_SP,
    PYSAML2_ENDPOINTS,
    PYSAML2_ENTITY_ID,
    MetadataHost,
    metadata_host,
    onelogin_metadata,
    pem,
    pysaml2_config,
    with_encryption_methods,
)
from sso_helpers import (
    Browser,
    PostedMessage,
    SamlService,
    assert_refused,
    authn_request,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    pysaml2_accepts,
    redirect_url,
    request_id_of,
)
from sso_v2_helpers import Person, create_org, create_person

from idp.domain.presets import PRESETS

EMAIL = NAMEID_FORMAT_EMAILADDRESS
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
XENC = "http://www.w3.org/2001/04/xmlenc#"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"saml": SAML, "samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "xenc": XENC, "ds": DS}
EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples" / "services"
REFRESH_WAIT_S = 20

# What SP metadata never gives: sent beside it.
NOT_IN_METADATA = {
    "enabled": True,
    "attribute_mapping": {"email": "email", "groups": "groups"},
    "sign_assertions": True,
    "sign_response": True,
}
# pysaml2's metadata: an artifact ACS (index 0, not HTTP-POST), three HTTP-POST ones, the one
# with index 7 the default; SLO by SOAP, Redirect and POST; a signing and an encryption key.
ACS_POST = "https://sp.example.org/acs/post"
ACS_ALT = "https://sp.example.org/acs/alt"
ACS_EU = "https://sp.example.org/acs/eu"
ACS_ARTIFACT = "https://sp.example.org/acs/artifact"
ENDPOINTS = {
    **PYSAML2_ENDPOINTS,
    "assertion_consumer_service": [
        *PYSAML2_ENDPOINTS["assertion_consumer_service"],
        (ACS_EU, BINDING_HTTP_POST, 3),
    ],
}
POST_ACS = [
    {"url": ACS_POST, "index": 1, "is_default": False},
    {"url": ACS_ALT, "index": 7, "is_default": True},
    {"url": ACS_EU, "index": 3, "is_default": False},
]


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """This module's server reads metadata URLs again about every 2 seconds."""
    flush_redis(redis_url)
    port = free_port()
    env = server_env(database_url, redis_url, port, IDP_METADATA_REFRESH="2")
    running = start_server(env, port, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def host() -> Iterator[MetadataHost]:
    """The SPs' web server, publishing their metadata on 127.0.0.1."""
    with metadata_host() as running:
        yield running


@pytest.fixture
def person(server: Server, owner: Account, org: str) -> Person:
    """An account of the test's organization."""
    return create_person(server, owner.token, org)


# Helpers -------------------------------------------------------------------------------------


def saml_path(org: str, svc: str) -> str:
    return f"/organizations/{org}/services/{svc}/saml"


def put_saml(server: Server, token: str, org: str, svc: str, body: dict[str, Any]) -> Any:
    """PUT …/saml; the raw answer."""
    return server.api("PUT", saml_path(org, svc), token, json=body)


def get_saml(server: Server, token: str, org: str, svc: str) -> dict[str, Any]:
    response = server.api("GET", saml_path(org, svc), token)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


def refused_with(response: requests.Response, *fields: str) -> dict[str, str]:
    """Assert a 400 whose details name ``fields`` (at least); returns the details."""
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == "invalid_request", body
    details: dict[str, str] = body.get("details") or {}
    assert set(fields) <= set(details), body
    return details


def onboard(server: Server, token: str, org: str, body: dict[str, Any]) -> SamlService:
    """A new service configured with ``body`` and given a signing certificate; its
    ``config`` is what GET …/saml echoes."""
    svc = new_service(client(server, token), org)["slug"]
    configured = put_saml(server, token, org, svc, body)
    assert configured.status_code == 200, configured.text
    certificate = server.api("POST", f"{saml_path(org, svc)}/certificate", token)
    assert certificate.status_code == 201, certificate.text
    config = get_saml(server, token, org, svc)
    return SamlService(server, token, org, svc, config, certificate.json()["public_key"])


def at_acs(service: SamlService, url: str) -> SamlService:
    """The service as python3-saml sees it when the SP's ACS is ``url``."""
    return replace(service, config={**service.config, "acs_url": url})


def pysaml2_metadata(
    directory: Path, endpoints: dict[str, Any] = ENDPOINTS, **options: Any
) -> bytes:
    """What pysaml2 publishes for an SP with ``endpoints`` (keys in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    xml: bytes = create_metadata_string(
        None, config=pysaml2_config(directory, endpoints, **options)
    )
    return xml


def pysaml2_sp(
    service: SamlService, directory: Path, endpoints: dict[str, Any] = ENDPOINTS
) -> Saml2Client:
    """The pysaml2 SP that published ``endpoints``' metadata, now trusting the service's IdP."""
    directory.mkdir(parents=True, exist_ok=True)
    # pysaml2 takes its return addresses from the tuple form of endpoints only
    acs = [
        (e["location"], e["binding"], e["index"]) if isinstance(e, dict) else e
        for e in endpoints["assertion_consumer_service"]
    ]
    config = pysaml2_config(
        directory,
        {**endpoints, "assertion_consumer_service": acs},
        idp_metadata=service.metadata(),
        want_response_signed=service.config["sign_response"],
        want_assertions_signed=service.config["sign_assertions"],
        want_assertions_or_response_signed=True,
    )
    return Saml2Client(config=config)


def by_index(client_: Saml2Client, service: SamlService, index: int | str) -> tuple[str, str]:
    """A signed pysaml2 AuthnRequest by HTTP-Redirect naming AssertionConsumerServiceIndex
    ``index``: its ID and URL."""
    request_id, info = client_.prepare_for_authenticate(
        entityid=service.entity_id,
        binding=BINDING_HTTP_REDIRECT,
        assertion_consumer_service_index=str(index),
        sign=True,
    )
    url = dict(info["headers"])["Location"]
    sent = request_xml(url)
    assert sent.get("AssertionConsumerServiceIndex") == str(index)
    assert sent.get("AssertionConsumerServiceURL") is None
    return request_id, url


def request_xml(url: str) -> etree._Element:
    """The AuthnRequest an HTTP-Redirect URL carries."""
    raw = base64.b64decode(query_params(url)["SAMLRequest"])
    return etree.fromstring(zlib.decompress(raw, -15))


def destinations(message: PostedMessage) -> tuple[str, list[str]]:
    """The Response's Destination and every SubjectConfirmationData/@Recipient (read after a
    stack verified the signature)."""
    root = message.xml
    recipients = root.xpath("//saml:SubjectConfirmationData/@Recipient", namespaces=NS)
    return root.get("Destination"), [str(r) for r in recipients]


def assert_posted_to(message: PostedMessage, acs: str) -> None:
    """The answer page posts to ``acs`` and the Response names it as Destination and
    Recipient."""
    assert message.action == acs
    destination, recipients = destinations(message)
    assert destination == acs
    assert recipients == [acs]


def wait_config(
    service: SamlService, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll GET …/saml until ``done`` holds (at most REFRESH_WAIT_S)."""
    deadline = time.monotonic() + REFRESH_WAIT_S
    while True:
        config = get_saml(service.server, service.token, service.org, service.svc)
        if done(config):
            return config
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {REFRESH_WAIT_S} s: {what}; last config {config}")
        time.sleep(0.25)


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of an echoed configuration, without where they came from and when."""
    sources = ("metadata_refreshed_at", "metadata_error", "has_certificate")
    return {k: v for k, v in config.items() if k not in sources}


# 1. Importing metadata ----------------------------------------------------------------------


def test_pysaml2_metadata_is_imported_and_echoed(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    xml = pysaml2_metadata(tmp_path).decode()
    svc = new_service(client(server, owner), org)["slug"]

    # Metadata alone gives no sign flags, enablement or attribute names.
    alone = put_saml(server, owner.token, org, svc, {"sp_metadata": xml})
    refused_with(alone, "enabled", "attribute_mapping", "sign_assertions", "sign_response")

    done = put_saml(server, owner.token, org, svc, {"sp_metadata": xml, **NOT_IN_METADATA})
    assert done.status_code == 200, done.text
    config = get_saml(server, owner.token, org, svc)
    assert config["entity_id"] == PYSAML2_ENTITY_ID
    assert config["acs_url"] == ACS_ALT  # isDefault="true"
    assert config["acs_urls"] == POST_ACS  # HTTP-POST only: not the artifact ACS
    assert config["slo_url"] == "https://sp.example.org/slo"  # the HTTP-Redirect one
    assert config["sp_certificate"] == pem("sp")
    assert config["sp_encryption_certificate"] == pem("sp-enc")
    assert config["want_authn_requests_signed"] is True  # AuthnRequestsSigned="true"
    assert config["name_id_format"] == PERSISTENT  # the first one supported (not kerberos)
    assert config["encrypt_assertions"] is False
    assert config["attribute_mapping"] == NOT_IN_METADATA["attribute_mapping"]
    assert (config["preset"], config["sp_metadata_url"]) == (None, None)
    assert (config["metadata_refreshed_at"], config["metadata_error"]) == (None, None)
    assert "sp_metadata" not in config

    # Fields sent explicitly win over the metadata, null included.
    explicit = {
        "sp_metadata": xml,
        **NOT_IN_METADATA,
        "acs_url": ACS_POST,
        "name_id_format": EMAIL,
        "slo_url": None,
    }
    assert put_saml(server, owner.token, org, svc, explicit).status_code == 200
    config = get_saml(server, owner.token, org, svc)
    assert config["acs_url"] == ACS_POST
    assert config["name_id_format"] == EMAIL
    assert config["slo_url"] is None
    assert config["acs_urls"] == POST_ACS
    assert config["entity_id"] == PYSAML2_ENTITY_ID


def test_python3_saml_builder_metadata_is_imported(
    server: Server, owner: Account, org: str, person: Person
) -> None:
    xml = onelogin_metadata(ONELOGIN_SP, pem("sp"), authnsign=True)
    service = onboard(server, owner.token, org, {"sp_metadata": xml, **NOT_IN_METADATA})
    config = service.config
    assert config["entity_id"] == ONELOGIN_SP["entityId"]
    assert config["acs_url"] == "https://app.example.net/acs"
    assert config["acs_urls"] == [
        {"url": "https://app.example.net/acs", "index": 1, "is_default": True}
    ]
    assert config["slo_url"] == "https://app.example.net/sls"
    assert config["sp_certificate"] == config["sp_encryption_certificate"] == pem("sp")
    assert config["want_authn_requests_signed"] is True
    assert config["name_id_format"] == EMAIL

    # The SP signs its requests (as its metadata says) and accepts the answer.
    auth = onelogin_auth(service, authnRequestsSigned=True)
    page = Browser(server).sso(auth.login(), person.email, person.password)
    message = posted_message(page.text)
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_nameid() == person.email
    assert_posted_to(message, "https://app.example.net/acs")

    # Unsigned, it is refused: AuthnRequestsSigned came from the metadata.
    assert_refused(Browser(server).get(onelogin_auth(service).login()), 400)


def test_metadata_wins_over_a_preset_and_fills_what_it_needs(
    server: Server, owner: Account, org: str
) -> None:
    """Metadata and a preset together need no other field: the preset gives the flags and
    attribute names, the metadata the endpoints and its NameID format."""
    preset = PRESETS["github-enterprise-cloud"]
    xml = onelogin_metadata(ONELOGIN_SP, pem("sp"))
    service = onboard(server, owner.token, org, {"preset": preset.name, "sp_metadata": xml})
    config = service.config
    assert config["preset"] == preset.name
    assert config["entity_id"] == ONELOGIN_SP["entityId"]
    assert config["acs_url"] == "https://app.example.net/acs"
    assert config["name_id_format"] == EMAIL  # the metadata's, over the preset's persistent
    assert preset.fields["name_id_format"] == PERSISTENT
    assert config["attribute_mapping"] == dict(preset.fields["attribute_mapping"])
    assert (config["sign_assertions"], config["sign_response"]) == (True, True)


# 2. Each ACS ----------------------------------------------------------------------------------


def test_sign_in_through_each_acs_by_index_and_by_url(
    server: Server, owner: Account, org: str, person: Person, tmp_path: Path
) -> None:
    xml = pysaml2_metadata(tmp_path / "md")
    service = onboard(server, owner.token, org, {"sp_metadata": xml.decode(), **NOT_IN_METADATA})
    sp = pysaml2_sp(service, tmp_path / "sp")
    browser = Browser(server)
    signed_in = False

    for acs in POST_ACS:
        # pysaml2 names the ACS by its index
        request_id, url = by_index(sp, service, acs["index"])
        page = browser.get(url)
        if not signed_in:
            page = browser.login(page, person.email, person.password)
            signed_in = True
        message = posted_message(page.text)
        response = pysaml2_accepts(sp, message, request_id)
        assert response.ava["email"] == [person.email]
        assert_posted_to(message, acs["url"])

        # python3-saml names it by its URL
        there = at_acs(service, acs["url"])
        auth = onelogin_auth(there, authnRequestsSigned=True)
        url = auth.login()
        assert request_xml(url).get("AssertionConsumerServiceURL") == acs["url"]
        message = posted_message(browser.get(url).text)
        onelogin_accepts(there, message, auth.get_last_request_id())
        assert_posted_to(message, acs["url"])


def test_an_unknown_acs_is_refused_with_no_response_anywhere(
    server: Server, owner: Account, org: str, person: Person, tmp_path: Path
) -> None:
    xml = pysaml2_metadata(tmp_path / "md")
    service = onboard(server, owner.token, org, {"sp_metadata": xml.decode(), **NOT_IN_METADATA})
    sp = pysaml2_sp(service, tmp_path / "sp")
    signed_in = Browser(server)
    request_id, url = by_index(sp, service, 1)
    pysaml2_accepts(
        sp, posted_message(signed_in.sso(url, person.email, person.password).text), request_id
    )

    for browser in (Browser(server), signed_in):  # before and after signing in
        # index 0 is the artifact ACS: not an HTTP-POST one, so not usable
        for index in (0, 2, 99):
            assert_refused(browser.get(by_index(sp, service, index)[1]), 400)
        for acs in (ACS_ARTIFACT, "https://sp.example.org/acs/other", ACS_POST + "/"):
            auth = onelogin_auth(at_acs(service, acs), authnRequestsSigned=True)
            assert_refused(browser.get(auth.login()), 400)
        # a URL and an index of two different ACSs
        both = authn_request(
            service, AssertionConsumerServiceURL=ACS_POST, AssertionConsumerServiceIndex="7"
        )
        assert_refused(browser.get(redirect_url(service, both, signer="sp")), 400)


def test_a_request_naming_no_acs_is_answered_at_the_default_one(
    server: Server, owner: Account, org: str, person: Person, tmp_path: Path
) -> None:
    xml = pysaml2_metadata(tmp_path / "md")
    service = onboard(server, owner.token, org, {"sp_metadata": xml.decode(), **NOT_IN_METADATA})
    xml_request = authn_request(service, AssertionConsumerServiceURL=None, ProtocolBinding=None)
    assert b"AssertionConsumerService" not in xml_request

    page = Browser(server).sso(
        redirect_url(service, xml_request, signer="sp"), person.email, person.password
    )

    message = posted_message(page.text)
    onelogin_accepts(at_acs(service, ACS_ALT), message, request_id_of(xml_request))
    assert_posted_to(message, ACS_ALT)
    sp = pysaml2_sp(service, tmp_path / "sp")
    assert pysaml2_accepts(sp, message, request_id_of(xml_request)).ava["email"] == [person.email]


# 3. A metadata URL -------------------------------------------------------------------------------


def loopback_alias() -> str | None:
    """A host name of this machine that resolves to a loopback address but is not
    "localhost" (a URL naming it is no loopback URL to the IdP), if there is one."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return None
    return name if address.startswith("127.") and name.lower() != "localhost" else None


def test_unusable_metadata_urls_are_refused_at_configure_time(
    server: Server, owner: Account, org: str, host: MetadataHost, tmp_path: Path
) -> None:
    svc = new_service(client(server, owner), org)["slug"]
    good = host.publish("/configure/good", pysaml2_metadata(tmp_path))
    dtd = b'<!DOCTYPE md [<!ENTITY sp "sp">]>' + pysaml2_metadata(tmp_path).split(b"?>", 1)[-1]
    unusable = {
        "unreachable": f"http://127.0.0.1:{free_port()}/metadata",
        "404": host.url("/configure/missing"),
        "500": host.publish("/configure/500", b"oops", status=500),
        "html": host.publish("/configure/html", b"<html><body>Hi</body></html>", 200, "text/html"),
        "not xml": host.publish("/configure/text", b"entityID=https://sp", 200, "text/plain"),
        "dtd": host.publish("/configure/dtd", dtd),
    }
    reasons = {}
    for what, url in unusable.items():
        answer = put_saml(
            server, owner.token, org, svc, {"sp_metadata_url": url, **NOT_IN_METADATA}
        )
        details = refused_with(answer, "sp_metadata_url")
        assert set(details) == {"sp_metadata_url"}, (what, details)
        reasons[what] = details["sp_metadata_url"]
    assert "404" in reasons["404"] and "500" in reasons["500"], reasons
    assert "DTD" in reasons["dtd"], reasons
    assert server.api("GET", saml_path(org, svc), owner.token).status_code == 404

    # http to a host that is not loopback by name: refused before anything is fetched
    alias = loopback_alias()
    remote = good.replace("127.0.0.1", alias) if alias else "http://sp.example.org/md"
    before = host.hits("/configure/good")
    answer = put_saml(server, owner.token, org, svc, {"sp_metadata_url": remote, **NOT_IN_METADATA})
    assert "https" in refused_with(answer, "sp_metadata_url")["sp_metadata_url"]
    assert host.hits("/configure/good") == before

    answer = put_saml(server, owner.token, org, svc, {"sp_metadata_url": good, **NOT_IN_METADATA})
    assert answer.status_code == 200, answer.text
    assert host.hits("/configure/good") == before + 1
    config = get_saml(server, owner.token, org, svc)
    assert config["sp_metadata_url"] == good and config["acs_urls"] == POST_ACS


def test_a_metadata_url_is_read_again_in_the_background(
    server: Server, owner: Account, org: str, person: Person, host: MetadataHost, tmp_path: Path
) -> None:
    path = f"/sp/{unique_slug('md')}"
    url = host.publish(path, pysaml2_metadata(tmp_path / "v1"))
    service = onboard(server, owner.token, org, {"sp_metadata_url": url, **NOT_IN_METADATA})
    first = service.config
    assert first["sp_metadata_url"] == url and first["metadata_error"] is None
    assert first["acs_urls"] == POST_ACS and first["metadata_refreshed_at"] is not None
    before = scrape(server)

    # The same document again: nothing changes but the time it was read.
    same = wait_config(
        service,
        lambda c: at(c["metadata_refreshed_at"]) > at(first["metadata_refreshed_at"]),
        "metadata read again",
    )
    assert settings_of(same) == settings_of(first)

    # The SP adds an ACS and moves its SLO endpoint.
    v2 = {
        "assertion_consumer_service": [
            *ENDPOINTS["assertion_consumer_service"],
            ("https://sp.example.org/acs/new", BINDING_HTTP_POST, 5),
        ],
        "single_logout_service": [("https://sp.example.org/slo/v2", BINDING_HTTP_REDIRECT)],
    }
    host.publish(path, pysaml2_metadata(tmp_path / "v2", v2))
    new_acs = {"url": "https://sp.example.org/acs/new", "index": 5, "is_default": False}
    updated = wait_config(
        service,
        lambda c: c["slo_url"] == "https://sp.example.org/slo/v2" and new_acs in c["acs_urls"],
        "the new ACS and SLO URL",
    )
    assert updated["acs_urls"] == [*POST_ACS, new_acs]
    assert at(updated["metadata_refreshed_at"]) > at(same["metadata_refreshed_at"])
    assert updated["metadata_error"] is None
    sp = pysaml2_sp(service, tmp_path / "sp", v2)
    browser = Browser(server)
    request_id, sso = by_index(sp, service, 5)
    message = posted_message(browser.sso(sso, person.email, person.password).text)
    pysaml2_accepts(sp, message, request_id)
    assert_posted_to(message, "https://sp.example.org/acs/new")

    # Broken three ways in turn: the last good configuration stays, the error is shown.
    good = settings_of(updated)
    dtd = (
        b'<!DOCTYPE md [<!ENTITY x "x">]>'
        + pysaml2_metadata(tmp_path / "v2", v2).split(b"?>", 1)[-1]
    )
    errors: list[str] = []
    for status, body in ((500, b"down"), (200, dtd), (200, b"<md:EntityDescriptor")):
        host.publish(path, body, status)
        broken = wait_config(
            service,
            lambda c: c["metadata_error"] is not None and c["metadata_error"] not in errors,
            f"metadata_error after a {status} answer {body[:30]!r}",
        )
        errors.append(broken["metadata_error"])
        assert settings_of(broken) == good
        request_id, sso = by_index(sp, service, 5)  # SSO goes on with the last good config
        pysaml2_accepts(sp, posted_message(browser.get(sso).text), request_id)
        samples = scrape(server)
        failures = value(samples, "idp_metadata_refresh_total", result="failure")
        assert failures > value(before, "idp_metadata_refresh_total", result="failure")
        assert value(samples, "idp_metadata_errors") == 1
    assert "500" in errors[0] and "DTD" in errors[1], errors
    samples = scrape(server)
    for result in ("updated", "unchanged"):
        assert value(samples, "idp_metadata_refresh_total", result=result) > value(
            before, "idp_metadata_refresh_total", result=result
        ), result

    # Fixed: the error goes, the read time moves on.
    host.publish(path, pysaml2_metadata(tmp_path / "v2", v2))
    fixed = wait_config(service, lambda c: c["metadata_error"] is None, "metadata_error cleared")
    assert settings_of(fixed) == good
    assert at(fixed["metadata_refreshed_at"]) > at(updated["metadata_refreshed_at"])
    assert value(scrape(server), "idp_metadata_errors") == 0

    # `idp refresh-metadata --all` reads it now: once it returns, the change is there.
    v3 = {**v2, "single_logout_service": [("https://sp.example.org/slo/v3", BINDING_HTTP_POST)]}
    host.publish(path, pysaml2_metadata(tmp_path / "v3", v3))
    scope = re.escape(f"{org}/{service.svc}")
    for _ in range(5):
        # it reads nothing while a server's refresher holds the lock: then it says "read 0"
        done = server.cli("refresh-metadata", "--all")
        line = re.search(rf"(?m)^{scope}: (\w+)$", done.stdout)
        if line or "read 0 SP metadata" not in done.stdout:
            break
    assert line and line.group(1) in ("updated", "unchanged"), done.stdout
    assert get_saml(server, owner.token, org, service.svc)["slo_url"] == (
        "https://sp.example.org/slo/v3"
    )


# 4. Encrypted assertions -----------------------------------------------------------------------


def encryption_of(message: PostedMessage) -> tuple[str, str, str]:
    """The content and key transport algorithms of the Response's EncryptedAssertion, and
    the certificate the key was encrypted for; asserts no plaintext Assertion is there."""
    root = message.xml
    assert not root.xpath("//saml:Assertion", namespaces=NS)
    (data,) = root.xpath("saml:EncryptedAssertion/xenc:EncryptedData", namespaces=NS)
    content = data.find(f"{{{XENC}}}EncryptionMethod").get("Algorithm")
    (key,) = data.xpath(".//xenc:EncryptedKey", namespaces=NS)
    transport = key.find(f"{{{XENC}}}EncryptionMethod").get("Algorithm")
    certificate = "".join(key.findtext(f".//{{{DS}}}X509Certificate").split())
    return content, transport, certificate


def b64_of(pem_text: str) -> str:
    return "".join(pem_text.strip().splitlines()[1:-1])


def test_pysaml2_decrypts_an_assertion_for_its_metadata_encryption_key(
    server: Server, owner: Account, org: str, person: Person, tmp_path: Path
) -> None:
    xml = pysaml2_metadata(tmp_path / "md").decode()
    body = {"sp_metadata": xml, **NOT_IN_METADATA, "encrypt_assertions": True}
    service = onboard(server, owner.token, org, body)
    assert service.config["encrypt_assertions"] is True
    sp = pysaml2_sp(service, tmp_path / "sp")
    request_id, url = by_index(sp, service, 3)

    message = posted_message(Browser(server).sso(url, person.email, person.password).text)

    response = pysaml2_accepts(sp, message, request_id)
    assert response.ava["email"] == [person.email]
    assert response.assertion is not None
    assert person.email.encode() not in base64.b64decode(message.value)
    # for the encryption key of the metadata, not its signing key
    assert encryption_of(message) == (GCM256, OAEP, b64_of(pem("sp-enc")))
    assert message.action == ACS_EU and message.xml.get("Destination") == ACS_EU


@pytest.mark.parametrize(
    ("methods", "content"),
    [((), GCM256), ((GCM128, OAEP), GCM128), ((GCM128, GCM256), GCM256)],
    ids=["none-listed", "only-aes128-gcm", "both-gcm"],
)
def test_python3_saml_decrypts_with_the_content_encryption_its_metadata_lists(
    server: Server,
    owner: Account,
    org: str,
    person: Person,
    methods: tuple[str, ...],
    content: str,
) -> None:
    xml = with_encryption_methods(onelogin_metadata(ONELOGIN_SP, pem("sp")), *methods)
    body = {"sp_metadata": xml, **NOT_IN_METADATA, "encrypt_assertions": True}
    service = onboard(server, owner.token, org, body)
    auth = onelogin_auth(service, authnRequestsSigned=True)

    page = Browser(server).sso(auth.login(), person.email, person.password)

    message = posted_message(page.text)
    response = onelogin_accepts(
        service, message, auth.get_last_request_id(), wantAssertionsEncrypted=True
    )
    assert response.encrypted
    assert response.get_nameid() == person.email
    assert encryption_of(message) == (content, OAEP, b64_of(pem("sp")))


def test_encryption_needs_an_rsa_encryption_certificate(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    svc = new_service(client(server, owner), org)["slug"]
    by_hand = {
        **NOT_IN_METADATA,
        "entity_id": "https://sp.example.org/hand",
        "acs_url": "https://sp.example.org/acs",
        "name_id_format": EMAIL,
    }
    signing_only = onelogin_metadata(ONELOGIN_SP, pem("sp"), encryption=False)
    ec_metadata = pysaml2_metadata(tmp_path, encryption=("sp-enc-ec", "ec")).decode()
    cases = [
        ({**by_hand, "encrypt_assertions": True}, "encrypt_assertions"),
        (
            {**by_hand, "encrypt_assertions": True, "sp_certificate": pem("sp")},
            "encrypt_assertions",
        ),
        (
            {"sp_metadata": signing_only, **NOT_IN_METADATA, "encrypt_assertions": True},
            "encrypt_assertions",
        ),
        (
            {
                **by_hand,
                "encrypt_assertions": True,
                "sp_encryption_certificate": pem("sp-enc-ec", "ec"),
            },
            "sp_encryption_certificate",
        ),
        (  # an EC key in metadata is not one to encrypt to: as if it had none
            {"sp_metadata": ec_metadata, **NOT_IN_METADATA, "encrypt_assertions": True},
            "encrypt_assertions",
        ),
    ]
    for body, field in cases:
        refused_with(put_saml(server, owner.token, org, svc, body), field)
    assert server.api("GET", saml_path(org, svc), owner.token).status_code == 404
    # without encryption, the SP with an EC encryption key is connected all the same
    plain = put_saml(server, owner.token, org, svc, {"sp_metadata": ec_metadata, **NOT_IN_METADATA})
    assert plain.status_code == 200, plain.text
    config = server.api("GET", saml_path(org, svc), owner.token).json()
    assert config["sp_encryption_certificate"] is None
    # the same metadata with its RSA key is fine
    rsa = {"sp_metadata": pysaml2_metadata(tmp_path).decode(), **NOT_IN_METADATA}
    answer = put_saml(server, owner.token, org, svc, {**rsa, "encrypt_assertions": True})
    assert answer.status_code == 200, answer.text


# 5. Presets ----------------------------------------------------------------------------------

AWS_ROLE = "https://aws.amazon.com/SAML/Attributes/Role"
AWS_SESSION_NAME = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
AWS_DURATION = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
ADMIN_ROLE = "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/Acme"
READ_ROLE = "arn:aws:iam::123456789012:role/ReadOnly,arn:aws:iam::123456789012:saml-provider/Acme"
AWS_VALUES = [
    {"name": AWS_ROLE, "value": ADMIN_ROLE, "groups": ["aws-admins"]},
    {"name": AWS_ROLE, "value": READ_ROLE, "groups": ["aws-admins", "eng"]},
    {"name": AWS_DURATION, "value": "28800"},
]
PROFILE = {"name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace"}


def tenant_fields(name: str) -> dict[str, str]:
    """What an admin sends beside a preset: its SP's tenant URLs when the preset has none."""
    fields = PRESETS[name].fields
    sent = {}
    if "entity_id" not in fields:
        sent["entity_id"] = f"https://{name}.tenant.example/sp"
    if "acs_url" not in fields:
        sent["acs_url"] = f"https://{name}.tenant.example/acs"
    return sent


def asserted(message: PostedMessage) -> tuple[str, dict[str, tuple[str, list[str]]]]:
    """The NameID format and each attribute (name → NameFormat, values) of a verified
    Response."""
    root = message.xml
    (name_id,) = root.xpath("//saml:Assertion/saml:Subject/saml:NameID", namespaces=NS)
    attributes = {
        attribute.get("Name"): (
            attribute.get("NameFormat"),
            [v.text for v in attribute.findall(f"{{{SAML}}}AttributeValue")],
        )
        for attribute in root.xpath("//saml:AttributeStatement/saml:Attribute", namespaces=NS)
    }
    return name_id.get("Format"), attributes


def expected_attributes(name: str, person: Person) -> dict[str, tuple[str, list[str]]]:
    """What the preset's attribute_mapping makes of the account."""
    fields = {"email": person.email, "id": person.id, **PROFILE}
    return {
        attribute: (NAME_FORMAT_URI if ":" in attribute else NAME_FORMAT_BASIC, [fields[field]])
        for field, attribute in PRESETS[name].fields["attribute_mapping"].items()
    }


def preset_sso(service: SamlService, browser: Browser, person: Person) -> PostedMessage:
    """Sign in to a preset's service as its SP would start it (AWS IAM: at the IdP, /init),
    the Response accepted by python3-saml (which expects attributes only when the service
    has some to send)."""
    config = service.config
    expects = {
        "wantAttributeStatement": bool(config["attribute_mapping"] or config["attribute_values"])
    }
    if config["preset"] == "aws-iam":
        page = browser.sso(f"{service.base}/init", person.email, person.password)
        message = posted_message(page.text)
        onelogin_accepts(service, message, None, **expects)
        return message
    auth = onelogin_auth(service)
    page = browser.sso(auth.login(), person.email, person.password)
    message = posted_message(page.text)
    onelogin_accepts(service, message, auth.get_last_request_id(), **expects)
    return message


def test_every_preset_configures_and_asserts_what_its_sp_reads(
    server: Server, owner: Account
) -> None:
    org = create_org(server, owner.token, "presets")
    admin = create_person(server, owner.token, org, groups=["aws-admins"], **PROFILE)
    eng = create_person(server, owner.token, org, groups=["eng"], **PROFILE)
    plain = create_person(server, owner.token, org, **PROFILE)
    browsers = {p.email: Browser(server) for p in (admin, eng, plain)}
    messages: dict[str, PostedMessage] = {}

    for name, preset in sorted(PRESETS.items()):
        svc = new_service(client(server, owner), org)["slug"]
        tenant = tenant_fields(name)
        if tenant:  # the preset alone lacks what its `needs` says to send
            refused_with(put_saml(server, owner.token, org, svc, {"preset": name}), *tenant)
            for field in tenant:
                assert field in preset.needs, (name, field)
        extra = {"attribute_values": AWS_VALUES} if name == "aws-iam" else {}
        body = {"preset": name, **tenant, **extra}
        assert put_saml(server, owner.token, org, svc, body).status_code == 200, name
        certificate = server.api("POST", f"{saml_path(org, svc)}/certificate", owner.token)
        config = get_saml(server, owner.token, org, svc)
        assert config["preset"] == name
        for field, wanted in {**preset.fields, **tenant}.items():
            assert config[field] == wanted, (name, field)
        service = SamlService(
            server, owner.token, org, svc, config, certificate.json()["public_key"]
        )

        message = preset_sso(service, browsers[admin.email], admin)
        messages[name] = message
        name_id_format, attributes = asserted(message)
        assert name_id_format == preset.fields["name_id_format"], name
        wanted_attributes = expected_attributes(name, admin)
        if name == "aws-iam":
            wanted_attributes[AWS_ROLE] = (NAME_FORMAT_URI, [ADMIN_ROLE, READ_ROLE])
            wanted_attributes[AWS_DURATION] = (NAME_FORMAT_URI, ["28800"])
        assert attributes == wanted_attributes, name
        name_id = message.xml.findtext(f".//{{{SAML}}}NameID")
        if name_id_format == PERSISTENT:
            assert name_id not in (admin.email, admin.id), name
        else:
            assert name_id == admin.email, name

        if name == "aws-iam":  # the Role values an account gets follow its groups
            assert message.xml.get("InResponseTo") is None  # IdP-initiated
            for who, roles in ((eng, [READ_ROLE]), (plain, None)):
                _, theirs = asserted(preset_sso(service, browsers[who.email], who))
                assert theirs.get(AWS_ROLE) == ((NAME_FORMAT_URI, roles) if roles else None)
                assert theirs[AWS_SESSION_NAME] == (NAME_FORMAT_URI, [who.email])
                assert theirs[AWS_DURATION] == (NAME_FORMAT_URI, ["28800"])

    # Concretely, as their vendors document it.
    _, aws = asserted(messages["aws-iam"])
    assert aws[AWS_SESSION_NAME] == (NAME_FORMAT_URI, [admin.email])
    assert messages["aws-iam"].action == "https://signin.aws.amazon.com/saml"
    entra_format, entra = asserted(messages["entra-id"])
    assert entra_format == PERSISTENT
    assert entra == {"IDPEmail": (NAME_FORMAT_BASIC, [admin.email])}
    audience = messages["entra-id"].xml.findtext(f".//{{{SAML}}}Audience")
    assert audience == "urn:federation:MicrosoftOnline"
    slack_format, slack = asserted(messages["slack"])
    assert slack_format == PERSISTENT
    assert slack == {
        "User.Email": (NAME_FORMAT_BASIC, [admin.email]),
        "first_name": (NAME_FORMAT_BASIC, ["Ada"]),
        "last_name": (NAME_FORMAT_BASIC, ["Lovelace"]),
    }
    _, salesforce = asserted(messages["salesforce"])
    assert salesforce["User.Email"] == (NAME_FORMAT_BASIC, [admin.email])
    _, zoom = asserted(messages["zoom"])
    assert zoom["urn:oid:0.9.2342.19200300.100.1.3"] == (NAME_FORMAT_URI, [admin.email])


def test_an_unknown_preset_is_refused(server: Server, owner: Account, org: str) -> None:
    svc = new_service(client(server, owner), org)["slug"]
    body = {"preset": "okta", "entity_id": "https://sp.example/x", "acs_url": "https://sp/acs"}
    details = refused_with(put_saml(server, owner.token, org, svc, body), "preset")
    assert "slack" in details["preset"]
    assert server.api("GET", saml_path(org, svc), owner.token).status_code == 404


def test_the_example_service_files_provision_a_fresh_organization(
    server: Server, owner: Account, tmp_path: Path
) -> None:
    org = unique_slug("examples")
    directory = tmp_path / "services"
    directory.mkdir()
    for path in sorted(EXAMPLES.glob("*.toml")):
        text = path.read_text()
        assert re.search(r'(?m)^slug = "acme"$', text), path  # the organization they name
        (directory / path.name).write_text(re.sub(r'(?m)^slug = "acme"$', f'slug = "{org}"', text))
    shutil.copy(EXAMPLES / "README.md", directory / "README.md")  # not a service file

    done = server.cli("provision", str(directory))
    assert done.returncode == 0, done.stderr

    declared = {}
    for path in sorted(directory.glob("*.toml")):
        document = tomllib.loads(path.read_text())
        assert document["organization"]["slug"] == org
        for service in document["services"]:
            declared[service["slug"]] = service["saml"]
    assert {saml["preset"] for saml in declared.values()} == set(PRESETS)
    configs = {}
    for svc, saml in declared.items():
        config = get_saml(server, owner.token, org, svc)
        configs[svc] = config
        assert config["has_certificate"] is True, svc
        for field, wanted in saml.items():
            assert config[field] == wanted, (svc, field)
        for field, wanted in PRESETS[saml["preset"]].fields.items():
            assert config[field] == saml.get(field, wanted), (svc, field)

    # The files work: an engineer gets the ReadOnly role and the engineering cost center,
    # and is kept out of Slack (staff only).
    eng = create_person(server, owner.token, org, groups=["eng"])
    browser = Browser(server)

    def service(svc: str) -> SamlService:
        certificate = server.api("GET", f"{saml_path(org, svc)}/certificate", owner.token)
        return SamlService(
            server, owner.token, org, svc, configs[svc], certificate.json()["public_key"]
        )

    _, aws = asserted(preset_sso(service("aws"), browser, eng))
    assert aws[AWS_ROLE] == (NAME_FORMAT_URI, [READ_ROLE])
    assert aws[AWS_DURATION] == (NAME_FORMAT_URI, ["28800"])
    _, portal = asserted(preset_sso(service("aws-iam-identity-center"), browser, eng))
    cost_center = "https://aws.amazon.com/SAML/Attributes/AccessControl:CostCenter"
    assert portal == {cost_center: (NAME_FORMAT_URI, ["engineering"])}
    slack = service("slack")
    page = browser.get(onelogin_auth(slack).login())
    assert page.status_code == 403 and "SAMLResponse" not in page.text
