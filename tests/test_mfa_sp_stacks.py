"""The multi-factor SSO policy (contract §7, §4) as two real SPs see it against a running server.

python3-saml (strict) and pysaml2's Saml2Client (xmlsec1 backend) send the AuthnRequests, with
or without a RequestedAuthnContext, and consume the posted Responses: each verifies the
signature with the service's certificate and reports the AuthnContextClassRef (and
AuthnInstant) it accepted, or the status of a signed error Response. The browser is
``requests``; redirects are followed by hand wherever the path itself is asserted (no
SAMLResponse before a second factor).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pyotp
import pytest
import requests
from conftest import Account, Server
from lxml import html as lxml_html
from mfa_helpers import (
    answer_factor,
    element_text,
    enrolled_account_session,
    factor_page,
    form_fields,
    goes_to_factor,
    is_signed_in_page,
    recovery_codes,
    sign_in_with_code,
    sign_in_with_password,
    totp_code,
)
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.response import StatusNoAuthnContext, StatusNoPassive
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml_core_helpers import query_params
from sso_helpers import (
    Browser,
    SamlService,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    onelogin_response,
    posted_message,
    pysaml2_accepts,
    saml_service,
)
from sso_v2_helpers import (
    MFA,
    NO_AUTHN_CONTEXT,
    NO_PASSIVE,
    NS,
    PPT,
    RESPONDER,
    Person,
    create_org,
    create_person,
    has_assertion,
    pysaml2_client,
    sign_in_at_idp,
    signed_error_status,
)

SMARTCARD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Smartcard"
STACKS = ["python3-saml", "pysaml2"]
SKEW_S = 5  # "within a few seconds of now"
STATUS_ERRORS: dict[str, type[Exception]] = {
    NO_AUTHN_CONTEXT: StatusNoAuthnContext,
    NO_PASSIVE: StatusNoPassive,
}


# The SP stacks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What an SP accepted: the asserted class, the AuthnInstant (epoch seconds), the NameID."""

    class_ref: str
    instant: float
    name_id: str


def epoch(instant: str) -> float:
    """An xs:dateTime (UTC, "Z") as epoch seconds."""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


@dataclass
class Sp:
    """One third-party SP stack in front of one service: it sends AuthnRequests through a
    browser and consumes what the IdP posts back."""

    stack: str
    service: SamlService
    client: Saml2Client | None = None  # pysaml2's; None for python3-saml

    def ask(
        self,
        browser: Browser,
        refs: list[str] | None = None,
        comparison: str | None = None,
        passive: bool = False,
        follow: bool = True,
    ) -> tuple[str, requests.Response]:
        """Send an AuthnRequest (python3-saml: HTTP-Redirect; pysaml2: HTTP-POST) asking for
        ``refs`` with ``comparison`` (None: no RequestedAuthnContext / no Comparison); its ID
        and the IdP's answer (redirects followed when ``follow``)."""
        if self.client is None:
            # python3-saml asks for exact PPT unless told otherwise: False sends no context
            security: dict[str, object] = {"requestedAuthnContext": refs or False}
            if comparison is not None:
                security["requestedAuthnContextComparison"] = comparison
            auth = onelogin_auth(self.service, **security)
            url = auth.login(is_passive=passive)
            return auth.get_last_request_id(), browser.get(url, allow_redirects=follow)
        extra: dict[str, object] = {}
        if refs:
            extra["requested_authn_context"] = RequestedAuthnContext(
                authn_context_class_ref=[AuthnContextClassRef(text=ref) for ref in refs],
                comparison=comparison,
            )
        if passive:
            extra["is_passive"] = "true"
        request_id, request = self.client.create_authn_request(self.service.sso_url, **extra)
        form = {"SAMLRequest": base64.b64encode(str(request).encode()).decode()}
        return request_id, browser.post(self.service.sso_url, form, allow_redirects=follow)

    def accepts(self, page: requests.Response, request_id: str) -> Seen:
        """The posted Response, verified and accepted by the stack; what it reports."""
        assert page.status_code == 200 and has_assertion(page), (page.status_code, page.text[:1000])
        message = posted_message(page.text)
        assert message.action == self.service.config["acs_url"]
        if self.client is None:
            response = onelogin_accepts(self.service, message, request_id)
            instants = response.get_xml_document().xpath(
                "//saml:Assertion/saml:AuthnStatement/@AuthnInstant", namespaces=NS
            )
            classes = response.get_authn_contexts()
            assert len(classes) == 1 and len(instants) == 1, (classes, instants)
            return Seen(classes[0], epoch(instants[0]), response.get_nameid())
        parsed = pysaml2_accepts(self.client, message, request_id)
        info = parsed.authn_info()
        assert len(info) == 1, info
        class_ref, _, instant = info[0]
        return Seen(class_ref, epoch(instant), parsed.name_id.text)

    def refuses(self, page: requests.Response, request_id: str, second_level: str) -> None:
        """The IdP answered at once (no login or factor page) with a signed error Response to
        the ACS, status Responder/``second_level``, which the stack reports as such."""
        assert page.status_code == 200 and not page.history, (
            page.status_code,
            [r.headers.get("Location") for r in page.history],
        )
        assert not is_login_page(page) and 'name="code"' not in page.text
        message = posted_message(page.text)
        assert message.action == self.service.config["acs_url"]
        # the enveloped signature checked with python3-saml's xmlsec and the service's cert
        assert signed_error_status(self.service, message) == [RESPONDER, second_level]
        if self.client is None:
            response, request = onelogin_response(self.service, message)
            assert not response.is_valid(request, request_id=request_id)
            assert str(response.get_error()).startswith(
                "The status code of the Response was not Success, was Responder"
            ), response.get_error()
            assert response.get_in_response_to() == request_id
            status = OneLogin_Saml2_Utils.get_status(response.document)
            assert status["code"] == RESPONDER
            return
        with pytest.raises(STATUS_ERRORS[second_level]):
            self.client.parse_authn_request_response(
                message.value, BINDING_HTTP_POST, outstanding={request_id: "/"}
            )


@dataclass
class Stage:
    """One organization with a plain SAML service and one with ``require_mfa: true``."""

    server: Server
    token: str
    org: str
    plain: SamlService
    strict: SamlService
    directory: Path
    clients: dict[str, Saml2Client] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def sp(self, stack: str, service: SamlService) -> Sp:
        """The ``stack`` SP of ``service`` (one pysaml2 client per service, made once)."""
        if stack == "python3-saml":
            return Sp(stack, service)
        if service.svc not in self.clients:
            self.clients[service.svc] = pysaml2_client(service, self.directory / service.svc)
        return Sp(stack, service, self.clients[service.svc])

    def person(self) -> Person:
        """A new account of the organization, without a factor."""
        return create_person(self.server, self.token, self.org)

    def browser(self) -> Browser:
        """A new browser: no cookies."""
        return Browser(self.server)

    def password_session(self, person: Person) -> Browser:
        """A browser signed in with the password only (the account must have no factor yet)."""
        browser = self.browser()
        sign_in_at_idp(browser, person)
        return browser

    def enrol(self, person: Person) -> tuple[Browser, pyotp.TOTP, list[str]]:
        """Enrol TOTP in a browser of its own (signed in, then multi-factor by enrolling)."""
        session, totp, codes = enrolled_account_session(
            self.url, self.org, person.email, person.password
        )
        assert len(codes) == 10, codes
        return Browser(self.server, session), totp, codes

    def mfa_session(self, person: Person, totp: pyotp.TOTP) -> Browser:
        """A browser signed in with the password and a TOTP code at /login?org=…"""
        browser = self.browser()
        done = sign_in_with_code(
            self.url, browser.session, self.org, person.email, person.password, totp_code(totp)
        )
        assert is_signed_in_page(done), (done.status_code, done.text[:1000])
        assert browser.sid
        return browser


@pytest.fixture(scope="module")
def stage(server: Server, owner: Account, tmp_path_factory: pytest.TempPathFactory) -> Stage:
    org = create_org(server, owner.token, "mfa-sp")
    plain = saml_service(server, owner.token, org)
    strict = saml_service(server, owner.token, org, require_mfa=True)
    echoed = strict.api("GET", "/saml")
    assert echoed.status_code == 200 and echoed.json()["require_mfa"] is True, echoed.text
    assert plain.api("GET", "/saml").json()["require_mfa"] is False
    return Stage(server, owner.token, org, plain, strict, tmp_path_factory.mktemp("pysaml2"))


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# Browser steps -----------------------------------------------------------------------------------


def location(response: requests.Response) -> str:
    """The absolute target of a redirect."""
    assert response.status_code in (302, 303), (response.status_code, response.text[:1000])
    return urljoin(response.url, response.headers["Location"])


def path_of(url: str) -> str:
    return urlsplit(url).path


def walk(browser: Browser, response: requests.Response) -> list[requests.Response]:
    """Follow redirects by hand from ``response``: every answer on the way, the last one
    not a redirect."""
    hops = [response]
    while hops[-1].status_code in (301, 302, 303, 307, 308):
        assert len(hops) < 10, [h.url for h in hops]
        hops.append(browser.get(location(hops[-1]), allow_redirects=False))
    return hops


def assert_no_response_on(hops: list[requests.Response]) -> None:
    """Nothing on the way posts a SAML Response (or holds one in a redirect)."""
    for hop in hops:
        assert not has_assertion(hop), (hop.url, hop.text[:1000])
        assert "SAMLResponse" not in hop.headers.get("Location", ""), hop.headers


def wrong_code(totp: pyotp.TOTP) -> str:
    """A six-digit code no step of the current window has."""
    now = time.time()
    valid = {totp.at(now + offset) for offset in (-30, 0, 30)}
    return next(
        code for n in range(1, 10) if (code := f"{(int(totp.now()) + n) % 10**6:06d}") not in valid
    )


def continue_target(page: requests.Response) -> Callable[[Browser], requests.Response]:
    """The page's "Continue" control (a link, or a form with a Continue button), as the step
    a browser takes when it is clicked; asserts it leads to the SSO resume step."""
    tree = lxml_html.fromstring(page.text)
    links = [
        a.get("href")
        for a in tree.xpath("//a[@href]")
        if a.text_content().strip().lower().startswith("continue")
    ]
    if links:
        assert len(links) == 1, links
        target = urljoin(page.url, links[0])
        assert path_of(target).endswith("/resume"), target
        return lambda browser: browser.get(target)
    for form in tree.forms:
        buttons = form.xpath(".//button|.//input[@type='submit']")
        labels = [(b.text_content() or b.get("value") or "").strip().lower() for b in buttons]
        if any(label.startswith("continue") for label in labels):
            target = urljoin(page.url, form.get("action") or page.url)
            fields = {i.get("name"): i.get("value") or "" for i in form.inputs if i.get("name")}
            if (form.get("method") or "get").lower() == "post":
                return lambda browser: browser.post(target, fields)
            return lambda browser: browser.get(target, params=fields)
    raise AssertionError(f"no Continue link or form: {page.text[:2000]}")


# 1. Password only --------------------------------------------------------------------------------


def test_a_password_sign_in_asserts_password_protected_transport(stage: Stage, stack: str) -> None:
    person = stage.person()
    sp = stage.sp(stack, stage.plain)
    browser = stage.browser()

    request_id, page = sp.ask(browser)
    assert is_login_page(page) and not has_assertion(page)
    started = time.time()
    signed = sign_in_with_password(stage.url, browser.session, None, *credentials(person), page)
    assert signed.status_code == 303 and not goes_to_factor(signed), signed.headers
    seen = sp.accepts(browser.get(location(signed)), request_id)
    assert seen.class_ref == PPT
    assert seen.name_id == person.email
    assert math.floor(started) <= seen.instant <= time.time()

    request_id, page = sp.ask(browser)  # the same sign-in, asked again: still a password
    assert sp.accepts(page, request_id).class_ref == PPT


def credentials(person: Person) -> tuple[str, str]:
    return person.email, person.password


# 2. Password and code ----------------------------------------------------------------------------


def test_a_password_and_code_sign_in_asserts_mfa_at_the_instant_of_the_code(
    stage: Stage, stack: str
) -> None:
    person = stage.person()
    _, totp, _ = stage.enrol(person)
    sp = stage.sp(stack, stage.plain)
    browser = stage.browser()

    request_id, page = sp.ask(browser)
    assert is_login_page(page)
    first = sign_in_with_password(stage.url, browser.session, None, *credentials(person), page)
    assert goes_to_factor(first), (first.status_code, first.headers)
    assert not has_assertion(first) and browser.sid is None  # no sign-in before the code
    password_done = time.time()
    time.sleep(1.05 - password_done % 1)  # the code step falls in a later second
    code_sent = time.time()
    done = answer_factor(stage.url, browser.session, totp_code(totp))
    assert done.status_code == 303 and path_of(location(done)).endswith("/resume"), done.headers
    assert not has_assertion(done) and browser.sid

    seen = sp.accepts(browser.get(location(done)), request_id)
    assert seen.class_ref == MFA
    assert seen.name_id == person.email
    # the instant of the code step, not of the password step (even at 1 s resolution)
    assert password_done < seen.instant, (password_done, seen.instant)
    assert math.floor(code_sent) <= seen.instant <= time.time()
    assert abs(time.time() - seen.instant) < SKEW_S


# 3. Step-up --------------------------------------------------------------------------------------

STEP_UP = {  # why the SP needs MFA: (service, requested classes, Comparison)
    "exact-mfa": ("plain", [MFA], "exact"),
    "minimum-mfa": ("plain", [MFA], "minimum"),
    "require-mfa": ("strict", None, None),
}


@pytest.mark.parametrize("why", list(STEP_UP))
def test_a_password_only_session_steps_up_with_a_code(stage: Stage, stack: str, why: str) -> None:
    person = stage.person()
    before = stage.password_session(person)  # a password sign-in while it had no factor
    _, totp, _ = stage.enrol(person)  # then a factor, enrolled in another browser
    plain = stage.sp(stack, stage.plain)
    where, refs, comparison = STEP_UP[why]
    sp = stage.sp(stack, stage.strict if where == "strict" else stage.plain)

    # having a factor does not make the old sign-in multi-factor: a plain ask gets PPT
    request_id, page = plain.ask(before)
    assert plain.accepts(page, request_id).class_ref == PPT

    request_id, answer = sp.ask(before, refs, comparison, follow=False)
    assert answer.status_code == 303, (answer.status_code, answer.text[:1000])
    assert path_of(location(answer)) == "/login/factor"
    assert_no_response_on([answer])
    page = factor_page(stage.url, before.session)
    assert 'name="password"' not in page.text  # the code only: the password was given
    refused = answer_factor(stage.url, before.session, wrong_code(totp))
    assert refused.status_code == 401 and not has_assertion(refused)

    code_sent = time.time()
    done = answer_factor(stage.url, before.session, totp_code(totp))
    assert done.status_code == 303, (done.status_code, done.text[:1000])
    assert path_of(location(done)) == f"/saml/{sp.service.org}/{sp.service.svc}/resume"
    seen = sp.accepts(before.get(location(done)), request_id)
    assert seen.class_ref == MFA
    assert seen.name_id == person.email
    assert math.floor(code_sent) <= seen.instant <= time.time()  # the step-up's instant

    # the sign-in is multi-factor now: no more step-up, MFA even where nothing is asked
    request_id, page = sp.ask(before, refs, comparison, follow=False)
    assert sp.accepts(page, request_id).class_ref == MFA
    request_id, page = plain.ask(before)
    assert plain.accepts(page, request_id).class_ref == MFA


# 4. IsPassive ------------------------------------------------------------------------------------

PASSIVE = {  # (service, requested classes)
    "requested": ("plain", [MFA]),
    "required": ("strict", None),
}


@pytest.mark.parametrize("why", list(PASSIVE))
def test_a_passive_mfa_ask_of_a_password_only_session_gets_no_authn_context(
    stage: Stage, stack: str, why: str
) -> None:
    where, refs = PASSIVE[why]
    sp = stage.sp(stack, stage.strict if where == "strict" else stage.plain)
    plain = stage.sp(stack, stage.plain)

    without_factor = stage.password_session(stage.person())  # nothing to step up with
    request_id, page = sp.ask(without_factor, refs, passive=True)
    sp.refuses(page, request_id, NO_AUTHN_CONTEXT)

    person = stage.person()
    with_factor = stage.password_session(person)
    stage.enrol(person)
    request_id, page = sp.ask(with_factor, refs, passive=True)
    sp.refuses(page, request_id, NO_AUTHN_CONTEXT)

    # the refusal ended nothing: the password-only sign-ins still answer a plain passive ask
    for browser in (without_factor, with_factor):
        request_id, page = plain.ask(browser, passive=True)
        assert plain.accepts(page, request_id).class_ref == PPT


def test_a_passive_mfa_ask_without_a_session_gets_no_passive(stage: Stage, stack: str) -> None:
    for service, refs in ((stage.plain, [MFA]), (stage.strict, None)):
        sp = stage.sp(stack, service)
        request_id, page = sp.ask(stage.browser(), refs, passive=True)
        sp.refuses(page, request_id, NO_PASSIVE)


# 5. The class an MFA session asserts -------------------------------------------------------------

MFA_SESSION_TABLE = [  # (Comparison, requested classes) -> asserted class
    (None, None, MFA),
    ("exact", [PPT], PPT),
    ("minimum", [PPT], MFA),
    ("exact", [MFA], MFA),
    ("minimum", [MFA], MFA),
]


def test_an_mfa_session_asserts_mfa_unless_exactly_ppt_is_asked(stage: Stage, stack: str) -> None:
    person = stage.person()
    enrolled, totp, _ = stage.enrol(person)  # enrolling the first factor: multi-factor too
    signed_in = stage.mfa_session(person, totp)  # password and code
    plain = stage.sp(stack, stage.plain)
    strict = stage.sp(stack, stage.strict)

    for name, browser in (("password+code", signed_in), ("enrolment", enrolled)):
        for comparison, refs, expected in MFA_SESSION_TABLE:
            request_id, page = plain.ask(browser, refs, comparison)
            seen = plain.accepts(page, request_id)
            assert seen.class_ref == expected, (name, comparison, refs, seen)
        # the service requiring MFA answers at once, passive too
        for passive in (False, True):
            request_id, page = strict.ask(browser, passive=passive, follow=False)
            seen = strict.accepts(page, request_id)
            assert seen.class_ref == MFA and seen.name_id == person.email, (name, seen)


# 6. Enrolment before the first assertion ---------------------------------------------------------


def test_an_account_without_a_factor_enrols_before_any_response(stage: Stage, stack: str) -> None:
    person = stage.person()
    sp = stage.sp(stack, stage.strict)
    browser = stage.browser()

    request_id, page = sp.ask(browser)
    assert is_login_page(page) and not has_assertion(page)
    signed = sign_in_with_password(stage.url, browser.session, None, *credentials(person), page)
    assert not goes_to_factor(signed)  # the account has no factor to ask for
    hops = walk(browser, signed)
    assert_no_response_on(hops)
    assert browser.sid  # signed in (password only)

    def sent_to_enrol(hops: list[requests.Response]) -> requests.Response:
        landing = hops[-1]
        assert landing.status_code == 200, (landing.status_code, landing.text[:1000])
        assert path_of(landing.url) == "/account", [h.url for h in hops]
        query = query_params(landing.url)
        assert query["org"] == stage.org and query.get("pending"), landing.url
        assert "Set up an authenticator app" in landing.text
        return landing

    sent_to_enrol(hops)
    # asking again, or IdP-initiated, with the password-only sign-in: sent to enrol again
    init = walk(browser, browser.get(f"{sp.service.base}/init", allow_redirects=False))
    assert_no_response_on(init)
    sent_to_enrol(init)
    request_id, again = sp.ask(browser, follow=False)
    hops = walk(browser, again)
    assert again.status_code == 303 and len(hops) >= 2
    assert_no_response_on(hops)
    account = sent_to_enrol(hops)

    link = lxml_html.fromstring(account.text).xpath(
        '//a[normalize-space()="Set up an authenticator app"]/@href'
    )
    assert len(link) == 1, link
    setup = browser.get(urljoin(account.url, link[0]))
    assert setup.status_code == 200 and not has_assertion(setup), setup.text[:1000]
    secret = element_text(setup.text, "totp-secret")
    assert secret, setup.text[:2000]
    totp = pyotp.TOTP(secret.replace(" ", ""))
    fields = form_fields(setup.text, "/account/totp")
    assert fields.get("pending"), fields  # the enrolment keeps the pending request
    done = browser.post(f"{stage.url}/account/totp", {**fields, "code": totp_code(totp)})
    assert done.status_code == 200, (done.status_code, done.text[:1000])
    assert not has_assertion(done)
    assert len(recovery_codes(done.text)) == 10

    seen = sp.accepts(continue_target(done)(browser), request_id)
    assert seen.class_ref == MFA
    assert seen.name_id == person.email


# 7. A class nobody can reach ---------------------------------------------------------------------


@pytest.mark.parametrize("comparison", ["exact", "minimum"])
def test_an_unsatisfiable_class_gets_no_authn_context(
    stage: Stage, stack: str, comparison: str
) -> None:
    person = stage.person()
    enrolled, _, _ = stage.enrol(person)
    for service in (stage.plain, stage.strict):
        sp = stage.sp(stack, service)
        for browser in (stage.browser(), enrolled):  # anonymous, then multi-factor
            request_id, page = sp.ask(browser, [SMARTCARD], comparison)
            sp.refuses(page, request_id, NO_AUTHN_CONTEXT)
    request_id, page = stage.sp(stack, stage.plain).ask(enrolled)  # nothing was ended
    assert stage.sp(stack, stage.plain).accepts(page, request_id).class_ref == MFA
