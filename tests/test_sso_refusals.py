"""Every AuthnRequest refusal of CONTRACT §4 over HTTP: an HTML error page with its status,
never a redirect and never a SAMLResponse, even for a browser that has a live IdP session."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import pytest
import requests
from conftest import Account, Server
from saml2 import BINDING_HTTP_REDIRECT
from saml_core_helpers import b64_deflate, key_pair
from sso_helpers import (
    Browser,
    SamlService,
    assert_refused,
    authn_request,
    instant,
    onelogin_accepts,
    onelogin_auth,
    post_form,
    posted_message,
    pysaml2_accepts,
    pysaml2_post_form,
    pysaml2_sp,
    redirect_url,
    request_id_of,
    saml_service,
)

from idp.saml import constants as c

BINDINGS = ["redirect", "post"]
DTD_MESSAGE = "DTD or entity declaration"
PASSWD_LINE = "root:x:0:0"


@pytest.fixture(scope="module")
def service(server: Server, owner: Account) -> SamlService:
    """The module's service; its SP never signs its requests."""
    return saml_service(server, owner.token, owner.org)


@pytest.fixture(scope="module")
def browser(server: Server, owner: Account, service: SamlService) -> Browser:
    """A browser with a live IdP session: an accepted request would be answered at once."""
    signed_in = Browser(server)
    page = signed_in.sso(f"{service.base}/init", owner.email, owner.password)
    posted_message(page.text)
    return signed_in


def send(
    browser: Browser,
    service: SamlService,
    xml: bytes,
    binding: str,
    relay_state: str | None = None,
    signer: str | None = None,
) -> requests.Response:
    """Send an AuthnRequest by one binding, following no redirect."""
    if binding == "redirect":
        url = redirect_url(service, xml, relay_state, signer)
        return browser.get(url, allow_redirects=False)
    return browser.post(service.sso_url, post_form(xml, relay_state, signer), allow_redirects=False)


def accepted(browser: Browser, service: SamlService, page: requests.Response, xml: bytes) -> None:
    """The request was answered with a Response python3-saml accepts."""
    assert page.status_code == 200, page.text[:2000]
    onelogin_accepts(service, posted_message(page.text), request_id_of(xml))


# Where the request goes -------------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("unknown", ["org", "service"])
def test_unknown_organization_or_service_is_404(
    browser: Browser, service: SamlService, unknown: str, binding: str
) -> None:
    xml = authn_request(service)
    org, svc = ("no-such-org", service.svc) if unknown == "org" else (service.org, "no-such-svc")
    url = f"{service.server.url}/saml/{org}/{svc}/sso"
    if binding == "redirect":
        page = browser.get(url, params={"SAMLRequest": b64_deflate(xml)}, allow_redirects=False)
    else:
        page = browser.post(url, post_form(xml), allow_redirects=False)
    assert_refused(page, 404, "There is no service")


@pytest.mark.parametrize("binding", BINDINGS)
def test_disabled_saml_is_403(
    browser: Browser, server: Server, owner: Account, binding: str
) -> None:
    disabled = saml_service(server, owner.token, owner.org)
    disabled.configure(enabled=False)
    page = send(browser, disabled, authn_request(disabled), binding)
    assert_refused(page, 403, "not enabled")


@pytest.mark.parametrize("endpoint", ["init", "slo"])
def test_other_endpoints_of_unknown_or_disabled_services_are_refused(
    browser: Browser, server: Server, owner: Account, service: SamlService, endpoint: str
) -> None:
    unknown = browser.get(f"{server.url}/saml/{service.org}/no-such-svc/{endpoint}")
    assert_refused(unknown, 404, "There is no service")
    disabled = saml_service(server, owner.token, owner.org)
    disabled.configure(enabled=False)
    assert_refused(browser.get(f"{disabled.base}/{endpoint}"), 403, "not enabled")


# Encoding and XML ---------------------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
def test_undecodable_request_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    if binding == "redirect":
        page = browser.get(f"{service.sso_url}?SAMLRequest=%25%25not*base64", allow_redirects=False)
    else:
        page = browser.post(service.sso_url, {"SAMLRequest": "%%not*base64"}, allow_redirects=False)
    assert_refused(page, 400, "not valid base64")


def test_uninflatable_request_is_400(browser: Browser, service: SamlService) -> None:
    raw = base64.b64encode(b"\xff\x00 certainly not deflate " * 4).decode()
    page = browser.get(service.sso_url, params={"SAMLRequest": raw}, allow_redirects=False)
    assert_refused(page, 400, "does not inflate")


def test_truncated_deflate_is_400(browser: Browser, service: SamlService) -> None:
    deflater = zlib.compressobj(wbits=-15)
    data = deflater.compress(authn_request(service)) + deflater.flush()
    raw = base64.b64encode(data[: len(data) // 2]).decode()
    page = browser.get(service.sso_url, params={"SAMLRequest": raw}, allow_redirects=False)
    assert_refused(page, 400, "truncated")


@pytest.mark.parametrize("binding", BINDINGS)
def test_unparsable_request_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    page = send(browser, service, b"<samlp:AuthnRequest this is not xml", binding)
    assert_refused(page, 400, "not well-formed XML")


def test_message_that_is_not_an_authn_request_is_400(
    browser: Browser, service: SamlService
) -> None:
    xml = authn_request(service).replace(b"AuthnRequest", b"LogoutRequest")
    assert_refused(send(browser, service, xml, "redirect"), 400, "not a SAML 2.0 AuthnRequest")


@pytest.mark.parametrize("binding", BINDINGS)
def test_dtd_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    doctype = "<!DOCTYPE samlp:AuthnRequest [<!ELEMENT samlp:AuthnRequest ANY>]>"
    page = send(browser, service, authn_request(service, doctype=doctype), binding)
    assert_refused(page, 400, DTD_MESSAGE)


@pytest.mark.parametrize("binding", BINDINGS)
def test_billion_laughs_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    doctype = f"<!DOCTYPE samlp:AuthnRequest [{''.join(entities)}]>"
    xml = authn_request(service, doctype=doctype, issuer="&lol9;")
    page = send(browser, service, xml, binding)
    assert_refused(page, 400, DTD_MESSAGE)
    assert "lollol" not in page.text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize("binding", BINDINGS)
def test_xxe_is_400(browser: Browser, service: SamlService, binding: str, encoding: str) -> None:
    doctype = '<!DOCTYPE samlp:AuthnRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    xml = authn_request(service, doctype=doctype, issuer="&xxe;")
    if encoding == "utf-16":
        xml = f'<?xml version="1.0" encoding="UTF-16"?>{xml.decode()}'.encode("utf-16")
    page = send(browser, service, xml, binding)
    assert_refused(page, 400, DTD_MESSAGE)
    assert PASSWD_LINE not in page.text


# The request's claims -----------------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
def test_issuer_mismatch_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    xml = authn_request(service, issuer="https://evil.example/metadata")
    page = send(browser, service, xml, binding)
    assert_refused(page, 400, "'https://evil.example/metadata'", service.config["entity_id"])


@pytest.mark.parametrize("binding", BINDINGS)
def test_foreign_acs_url_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    foreign = "https://attacker.example/acs"
    xml = authn_request(service, AssertionConsumerServiceURL=foreign)
    page = send(browser, service, xml, binding)
    assert_refused(page, 400, "not the ACS URL configured")


@pytest.mark.parametrize(
    "protocol_binding",
    [BINDING_HTTP_REDIRECT, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"],
    ids=["redirect", "artifact"],
)
def test_other_protocol_binding_is_400(
    browser: Browser, service: SamlService, protocol_binding: str
) -> None:
    xml = authn_request(service, ProtocolBinding=protocol_binding)
    page = send(browser, service, xml, "redirect")
    assert_refused(page, 400, "only with the HTTP-POST binding")


@pytest.mark.parametrize(
    "dropped",
    [("ProtocolBinding",), ("ProtocolBinding", "AssertionConsumerServiceURL", "Destination")],
    ids=["no-binding", "mellon-minimal"],
)
def test_absent_protocol_binding_is_accepted(
    browser: Browser, service: SamlService, dropped: tuple[str, ...]
) -> None:
    xml = authn_request(service, **dict.fromkeys(dropped))
    accepted(browser, service, send(browser, service, xml, "redirect"), xml)


@pytest.mark.parametrize("binding", BINDINGS)
def test_wrong_destination_is_400(browser: Browser, service: SamlService, binding: str) -> None:
    xml = authn_request(service, Destination=f"{service.server.url}/saml/acme/other/sso")
    page = send(browser, service, xml, binding)
    assert_refused(page, 400, "not to this IdP endpoint")


@pytest.mark.parametrize(("offset", "when"), [(-240, "before"), (240, "after")])
def test_issue_instant_outside_clock_skew_is_400(
    browser: Browser, service: SamlService, offset: int, when: str
) -> None:
    xml = authn_request(service, IssueInstant=instant(offset))
    page = send(browser, service, xml, "redirect")
    assert_refused(page, 400, f"more than 180 s {when} the IdP's clock")


def test_issue_instant_within_clock_skew_is_accepted(
    browser: Browser, service: SamlService
) -> None:
    xml = authn_request(service, IssueInstant=instant(-120))
    accepted(browser, service, send(browser, service, xml, "redirect"), xml)


@pytest.mark.parametrize("second", BINDINGS)
def test_replayed_request_id_is_400(browser: Browser, service: SamlService, second: str) -> None:
    xml = authn_request(service)
    accepted(browser, service, send(browser, service, xml, "redirect"), xml)
    page = send(browser, service, xml, second)
    assert_refused(page, 400, "already used")


def test_replay_is_refused_for_another_browser_too(
    browser: Browser, server: Server, owner: Account, service: SamlService
) -> None:
    xml = authn_request(service)
    accepted(browser, service, send(browser, service, xml, "post"), xml)
    other = Browser(server)
    assert_refused(send(other, service, xml, "redirect"), 400, "already used")


@pytest.mark.parametrize("binding", BINDINGS)
def test_relay_state_over_1024_bytes_is_400(
    browser: Browser, service: SamlService, binding: str
) -> None:
    page = send(browser, service, authn_request(service), binding, relay_state="r" * 1025)
    assert_refused(page, 400, "1025 bytes")


def test_relay_state_over_1024_bytes_is_400_at_init(browser: Browser, service: SamlService) -> None:
    page = browser.get(
        f"{service.base}/init", params={"RelayState": "é" * 513}, allow_redirects=False
    )
    assert_refused(page, 400, "1026 bytes")


# Signed requests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wants_signed(server: Server, owner: Account) -> SamlService:
    """A service that accepts only requests signed with the SP key pair "sp"."""
    return saml_service(
        server,
        owner.token,
        owner.org,
        sp_certificate=key_pair("sp")[1].decode(),
        want_authn_requests_signed=True,
    )


@pytest.fixture(scope="module")
def verifies(server: Server, owner: Account) -> SamlService:
    """A service that knows the SP certificate but also takes unsigned requests."""
    return saml_service(server, owner.token, owner.org, sp_certificate=key_pair("sp")[1].decode())


@pytest.mark.parametrize("binding", BINDINGS)
def test_unsigned_request_is_400_when_signatures_are_wanted(
    browser: Browser, wants_signed: SamlService, binding: str
) -> None:
    page = send(browser, wants_signed, authn_request(wants_signed), binding)
    assert_refused(page, 400, "accepts only signed requests")


def test_sp_signed_requests_are_accepted_when_wanted(
    browser: Browser, wants_signed: SamlService, tmp_path: Path
) -> None:
    auth = onelogin_auth(wants_signed, authnRequestsSigned=True)
    page = browser.get(auth.login(), allow_redirects=False)
    onelogin_accepts(wants_signed, posted_message(page.text), auth.get_last_request_id())

    client = pysaml2_sp(wants_signed, tmp_path, sign_requests=True)
    request_id, form = pysaml2_post_form(client, wants_signed, sign=True)
    page = browser.post(wants_signed.sso_url, form, allow_redirects=False)
    pysaml2_accepts(client, posted_message(page.text), request_id)


def test_signed_redirect_with_the_longest_relay_state_is_accepted(
    browser: Browser, wants_signed: SamlService
) -> None:
    relay_state = "/" * 1024  # 3072 characters once URL-encoded, then the query signature
    auth = onelogin_auth(wants_signed, authnRequestsSigned=True)
    page = browser.get(auth.login(return_to=relay_state), allow_redirects=False)
    assert page.status_code == 200, page.text[:500]
    message = posted_message(page.text)
    assert message.relay_state == relay_state
    onelogin_accepts(wants_signed, message, auth.get_last_request_id())


@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("wanted", [True, False], ids=["wanted", "optional"])
def test_signature_by_another_key_is_400(
    browser: Browser,
    wants_signed: SamlService,
    verifies: SamlService,
    binding: str,
    wanted: bool,
) -> None:
    service = wants_signed if wanted else verifies
    page = send(browser, service, authn_request(service), binding, signer="sp-other")
    assert_refused(page, 400, "does not verify against the SP certificate")


def test_tampered_redirect_query_is_400(browser: Browser, verifies: SamlService) -> None:
    url = redirect_url(verifies, authn_request(verifies), relay_state="good", signer="sp")
    page = browser.get(url.replace("RelayState=good", "RelayState=evil"), allow_redirects=False)
    assert_refused(page, 400, "does not verify against the SP certificate")


def test_tampered_post_request_is_400(browser: Browser, verifies: SamlService) -> None:
    form = post_form(authn_request(verifies), signer="sp")
    xml = base64.b64decode(form["SAMLRequest"]).replace(b'AllowCreate="true"', b'AllowCreate="1"')
    form["SAMLRequest"] = base64.b64encode(xml).decode()
    page = browser.post(verifies.sso_url, form, allow_redirects=False)
    assert_refused(page, 400, "does not verify against the SP certificate")


@pytest.mark.parametrize("binding", BINDINGS)
def test_signature_is_ignored_without_sp_certificate(
    browser: Browser, service: SamlService, binding: str
) -> None:
    xml = authn_request(service)
    accepted(browser, service, send(browser, service, xml, binding, signer="sp-other"), xml)


def test_properly_signed_request_is_accepted_with_sp_certificate(
    browser: Browser, verifies: SamlService
) -> None:
    for binding in BINDINGS:
        xml = authn_request(verifies)
        accepted(browser, verifies, send(browser, verifies, xml, binding, signer="sp"), xml)
    xml = authn_request(verifies)
    accepted(browser, verifies, send(browser, verifies, xml, "redirect"), xml)


def test_boolean_attribute_with_another_spelling_is_400(
    browser: Browser, service: SamlService
) -> None:
    page = send(browser, service, authn_request(service, ForceAuthn="yes"), "redirect")
    assert_refused(page, 400, "is not a boolean")
    assert page.headers["Cache-Control"] == "no-store"
    assert c.SAMLP_NS not in page.text
