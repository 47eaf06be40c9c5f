"""Browser-like SSO flows through a running server, verified by python3-saml and pysaml2.

HTTP-Redirect and HTTP-POST AuthnRequests, every signing combination, RelayState, a second
SP reusing the session, ForceAuthn, IsPassive, NameIDPolicy, IdP-initiated SSO, certificate
rotation, accounts of the service's organization only, and the analytics the Responses feed.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Server, add_user, unique_slug
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2.response import StatusInvalidNameidPolicy, StatusNoPassive
from saml2.sigver import SignatureError
from sso_helpers import (
    Browser,
    PostedMessage,
    SamlService,
    authn_request,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    onelogin_rejects,
    posted_message,
    pysaml2_accepts,
    pysaml2_post_form,
    pysaml2_redirect,
    pysaml2_sp,
    redirect_url,
    request_id_of,
    saml_service,
    signature_placement,
)

from idp.saml import constants as c

SIGN_FLAGS = [(True, False), (False, True), (True, True)]
FLAG_IDS = ["assertion", "response", "both"]
SALESFORCE_RELAY_STATE = (
    "https://acme--sandbox.sandbox.my.salesforce.com/services/oauth2/authorize"
    "?response_type=code&client_id=3MVG9A2kN3Bn17hs&redirect_uri=https%3A%2F%2Fapp.test%2Fcb"
    '&state=a+b%20c&display=page&x="<é&>"'
)


@pytest.fixture
def member(server: Server, owner: Account, org: str) -> Account:
    """An account of the test's fresh organization, signed in to SSO through the login page
    (the module's owner is an operator, who has no account there)."""
    return add_user(server, owner.token, org)


def both_accept(
    service: SamlService, message: PostedMessage, request_id: str | None, tmp_path: Path
) -> None:
    """Both third-party SP stacks verify and accept the posted Response."""
    assert message.action == service.config["acs_url"]
    onelogin_accepts(service, message, request_id)
    pysaml2_accepts(pysaml2_sp(service, tmp_path), message, request_id)


def signed_in(server: Server, service: SamlService, account: Account) -> Browser:
    """A browser with an IdP session of ``account`` (made through an IdP-initiated SSO)."""
    browser = Browser(server)
    page = browser.sso(f"{service.base}/init", account.email, account.password)
    posted_message(page.text)
    return browser


def first(root: Any, name: str) -> Any:
    """The first SAML assertion element called ``name`` in a message."""
    found = root.find(f".//{{{c.SAML_NS}}}{name}")
    assert found is not None, name
    return found


def status_of(message: PostedMessage) -> tuple[str, str]:
    """The top-level and second-level status codes of a Response."""
    codes = message.xml.findall(f".//{{{c.SAMLP_NS}}}StatusCode")
    return codes[0].get("Value"), codes[1].get("Value") if len(codes) > 1 else ""


# Bindings and signatures -------------------------------------------------------------


@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_redirect_binding_accepted_by_both_sps(
    server: Server,
    owner: Account,
    org: str,
    sign_assertions: bool,
    sign_response: bool,
    tmp_path: Path,
) -> None:
    service = saml_service(
        server,
        owner.token,
        owner.org,
        sign_assertions=sign_assertions,
        sign_response=sign_response,
    )
    browser = Browser(server)
    auth = onelogin_auth(service)
    page = browser.sso(auth.login(return_to="/after"), owner.email, owner.password)
    message = posted_message(page.text)
    assert signature_placement(message) == (sign_response, sign_assertions)
    assert message.relay_state == "/after"
    both_accept(service, message, auth.get_last_request_id(), tmp_path)

    client = pysaml2_sp(service, tmp_path)
    request_id, url = pysaml2_redirect(client, service, relay_state="state-2")
    message = posted_message(browser.sso(url).text)
    assert message.relay_state == "state-2"
    both_accept(service, message, request_id, tmp_path)


@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_post_binding_accepted_by_both_sps(
    server: Server,
    owner: Account,
    org: str,
    sign_assertions: bool,
    sign_response: bool,
    tmp_path: Path,
) -> None:
    service = saml_service(
        server,
        owner.token,
        owner.org,
        sign_assertions=sign_assertions,
        sign_response=sign_response,
    )
    browser = Browser(server)
    settings = OneLogin_Saml2_Settings(service.onelogin_settings())
    request = OneLogin_Saml2_Authn_Request(settings)
    form = {"SAMLRequest": request.get_request(deflate=False), "RelayState": "one"}
    page = browser.sso_post(service.sso_url, form, owner.email, owner.password)
    message = posted_message(page.text)
    assert signature_placement(message) == (sign_response, sign_assertions)
    assert message.relay_state == "one"
    both_accept(service, message, request.get_id(), tmp_path)

    client = pysaml2_sp(service, tmp_path)
    request_id, form = pysaml2_post_form(client, service, relay_state="two")
    message = posted_message(browser.sso_post(service.sso_url, form).text)
    assert message.relay_state == "two"
    both_accept(service, message, request_id, tmp_path)


def test_unsigned_configuration_is_refused_by_the_api(
    server: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org)
    unsigned = {**service.config, "sign_assertions": False, "sign_response": False}
    response = service.api("PUT", "/saml", json=unsigned)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["details"]
    assert service.api("GET", "/saml").json()["sign_assertions"] is True


def test_response_carries_what_the_contract_lists(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org, sign_response=True)
    browser = signed_in(server, service, member)
    ids: set[str] = set()
    for _ in range(3):
        auth = onelogin_auth(service)
        message = posted_message(browser.get(auth.login()).text)
        onelogin_accepts(service, message, auth.get_last_request_id())
        root = message.xml
        assertion = root.find(f"{{{c.SAML_NS}}}Assertion")
        assert assertion is not None
        ids |= {root.get("ID"), assertion.get("ID")}

        issued = datetime.fromisoformat(root.get("IssueInstant"))
        conditions = first(root, "Conditions")
        confirmation = first(root, "SubjectConfirmationData")
        assert root.get("Destination") == service.config["acs_url"]
        assert root.get("InResponseTo") == auth.get_last_request_id()
        assert first(root, "Issuer").text == service.entity_id
        assert first(root, "SubjectConfirmation").get("Method") == c.CONFIRMATION_BEARER
        assert confirmation.get("Recipient") == service.config["acs_url"]
        assert confirmation.get("InResponseTo") == auth.get_last_request_id()
        assert first(root, "Audience").text == service.config["entity_id"]
        assert first(root, "AuthnContextClassRef").text == c.AUTHN_PASSWORD_PROTECTED
        assert first(root, "AuthnStatement").get("SessionIndex")
        not_before = datetime.fromisoformat(conditions.get("NotBefore"))
        assert timedelta(0) <= issued - not_before <= timedelta(seconds=60)
        for expiring in (conditions, confirmation):
            lifetime = datetime.fromisoformat(expiring.get("NotOnOrAfter")) - issued
            assert abs(lifetime - timedelta(minutes=5)) <= timedelta(seconds=1)
    assert len(ids) == 6


# RelayState ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relay_state",
    [SALESFORCE_RELAY_STATE, "€" * 341 + "x"],
    ids=["salesforce", "1024-bytes"],
)
def test_relay_state_passes_unchanged(
    server: Server, owner: Account, org: str, member: Account, relay_state: str, tmp_path: Path
) -> None:
    assert len(relay_state.encode()) > 80
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    auth = onelogin_auth(service)
    message = posted_message(browser.sso(auth.login(return_to=relay_state)).text)
    assert message.relay_state == relay_state
    onelogin_accepts(service, message, auth.get_last_request_id())

    client = pysaml2_sp(service, tmp_path)
    request_id, form = pysaml2_post_form(client, service, relay_state=relay_state)
    message = posted_message(browser.sso_post(service.sso_url, form).text)
    assert message.relay_state == relay_state
    pysaml2_accepts(client, message, request_id)

    page = browser.get(f"{service.base}/init", params={"RelayState": relay_state})
    assert posted_message(page.text).relay_state == relay_state


def test_relay_state_absent_is_not_invented(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    page = browser.get(redirect_url(service, authn_request(service)))
    assert posted_message(page.text).relay_state is None


# Sessions across SPs, ForceAuthn, IsPassive, NameIDPolicy ------------------------------


def test_second_sp_reuses_the_session_without_login(
    server: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    first = saml_service(server, owner.token, org)
    second = saml_service(server, owner.token, org, sign_response=True)
    browser = Browser(server)
    auth = onelogin_auth(first)
    page = browser.sso(auth.login(), member.email, member.password)
    onelogin_accepts(first, posted_message(page.text), auth.get_last_request_id())

    client = pysaml2_sp(second, tmp_path)
    request_id, url = pysaml2_redirect(client, second)
    page = browser.sso(url)
    assert not page.history and not is_login_page(page)
    message = posted_message(page.text)
    assert message.action == second.config["acs_url"]
    assert pysaml2_accepts(client, message, request_id).name_id.text == member.email
    onelogin_accepts(second, message, request_id)


def force_authn_url(service: SamlService, spelling: str) -> tuple[str, str]:
    """An AuthnRequest with ForceAuthn in one XML spelling: its ID and Redirect URL."""
    if spelling == "true":
        auth = onelogin_auth(service)
        url = auth.login(force_authn=True)
        return auth.get_last_request_id(), url
    xml = authn_request(service, ForceAuthn=spelling)
    return request_id_of(xml), redirect_url(service, xml)


@pytest.mark.parametrize("spelling", ["true", "1"])
def test_force_authn_shows_login_page_despite_session(
    server: Server, owner: Account, org: str, member: Account, spelling: str
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    before = browser.sid
    request_id, url = force_authn_url(service, spelling)
    page = browser.get(url)
    assert is_login_page(page)
    page = browser.login(page, member.email, member.password)
    response = onelogin_accepts(service, posted_message(page.text), request_id)
    assert response.get_nameid() == member.email
    assert browser.sid and browser.sid != before


@pytest.mark.parametrize("spelling", ["false", "0"])
def test_force_authn_false_reuses_the_session(
    server: Server, owner: Account, org: str, member: Account, spelling: str
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    xml = authn_request(service, ForceAuthn=spelling, IsPassive=spelling)
    message = posted_message(browser.get(redirect_url(service, xml)).text)
    onelogin_accepts(service, message, request_id_of(xml))


@pytest.mark.parametrize("spelling", ["true", "1"])
def test_is_passive_without_session_answers_no_passive(
    server: Server, owner: Account, org: str, spelling: str, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org)
    xml = authn_request(service, IsPassive=spelling)
    page = Browser(server).get(redirect_url(service, xml, relay_state="rs"))
    assert not is_login_page(page) and not page.history
    message = posted_message(page.text)
    assert message.action == service.config["acs_url"]
    assert message.relay_state == "rs"
    assert_error_response(service, message, request_id_of(xml), c.STATUS_NO_PASSIVE)
    with pytest.raises(StatusNoPassive):
        pysaml2_accepts(pysaml2_sp(service, tmp_path), message, request_id_of(xml))


def assert_error_response(
    service: SamlService, message: PostedMessage, request_id: str, code: str
) -> None:
    """A signed SAML error Response for ``request_id`` with second-level status ``code``."""
    xml = base64.b64decode(message.value)
    assert OneLogin_Saml2_Utils.validate_sign(xml, service.certificate)
    root = message.xml
    assert root.get("InResponseTo") == request_id
    assert root.get("Destination") == service.config["acs_url"]
    assert root.find(f"{{{c.SAML_NS}}}Assertion") is None
    assert status_of(message)[1] == code


def test_is_passive_with_session_answers_normally(
    server: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    auth = onelogin_auth(service)
    page = browser.get(auth.login(is_passive=True))
    both_accept(service, posted_message(page.text), auth.get_last_request_id(), tmp_path)


def test_is_passive_with_force_authn_answers_no_passive(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    xml = authn_request(service, IsPassive="true", ForceAuthn="true")
    message = posted_message(browser.get(redirect_url(service, xml)).text)
    assert_error_response(service, message, request_id_of(xml), c.STATUS_NO_PASSIVE)


def test_other_name_id_policy_answers_invalid_name_id_policy(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org)
    xml = authn_request(service, name_id_format=c.NAMEID_PERSISTENT)
    page = Browser(server).get(redirect_url(service, xml))
    assert not is_login_page(page)
    message = posted_message(page.text)
    assert_error_response(service, message, request_id_of(xml), c.STATUS_INVALID_NAMEID_POLICY)
    with pytest.raises(StatusInvalidNameidPolicy):
        pysaml2_accepts(pysaml2_sp(service, tmp_path), message, request_id_of(xml))


@pytest.mark.parametrize("policy", [c.NAMEID_UNSPECIFIED, ""], ids=["unspecified", "absent"])
def test_unspecified_or_absent_name_id_policy_gets_configured_format(
    server: Server, owner: Account, org: str, member: Account, policy: str
) -> None:
    service = saml_service(server, owner.token, org)
    browser = signed_in(server, service, member)
    xml = authn_request(service, name_id_format=policy)
    response = onelogin_accepts(
        service, posted_message(browser.get(redirect_url(service, xml)).text), request_id_of(xml)
    )
    assert response.get_nameid_format() == c.NAMEID_EMAIL


# IdP-initiated SSO -----------------------------------------------------------------------


def test_idp_initiated_sso_accepted_unsolicited_by_both_sps(
    server: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, sign_response=True)
    browser = Browser(server)
    page = browser.sso(
        f"{service.base}/init?RelayState=%2Fdashboard", member.email, member.password
    )
    message = posted_message(page.text)
    assert message.relay_state == "/dashboard"
    assert message.xml.get("InResponseTo") is None
    confirmation = message.xml.find(f".//{{{c.SAML_NS}}}SubjectConfirmationData")
    assert confirmation is not None and confirmation.get("InResponseTo") is None
    both_accept(service, message, None, tmp_path)

    again = browser.get(f"{service.base}/init")
    assert not again.history
    message = posted_message(again.text)
    assert message.relay_state is None
    both_accept(service, message, None, tmp_path)


# Certificate rotation --------------------------------------------------------------------


def test_after_rotation_responses_verify_only_with_the_new_certificate(
    server: Server, owner: Account, org: str, member: Account, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, sign_response=True)
    old_metadata = service.metadata()
    browser = signed_in(server, service, member)
    old = service.rotate()
    assert service.certificate != old
    assert "".join(service.certificate.splitlines()[1:-1]) in service.metadata()

    auth = onelogin_auth(service)
    message = posted_message(browser.sso(auth.login()).text)
    request_id = auth.get_last_request_id()
    onelogin_rejects(service, message, request_id, certificate=old)
    with pytest.raises(SignatureError):
        pysaml2_accepts(pysaml2_sp(service, tmp_path, metadata=old_metadata), message, request_id)
    onelogin_accepts(service, message, request_id)
    pysaml2_accepts(pysaml2_sp(service, tmp_path), message, request_id)


# Accounts of the service's organization only -----------------------------------------------


def outsider(server: Server, owner: Account) -> Account:
    """An account of another organization only."""
    other = unique_slug("other")
    created = server.api("POST", "/organizations", owner.token, json={"slug": other, "name": other})
    assert created.status_code == 201, created.text
    return add_user(server, owner.token, other)


def test_account_of_another_organization_is_refused_at_login(
    server: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org)
    stranger = outsider(server, owner)
    browser = Browser(server)
    page = browser.sso(onelogin_auth(service).login(), stranger.email, stranger.password)
    assert page.status_code == 401 and 'name="password"' in page.text
    assert "not right" in page.text and "SAMLResponse" not in page.text
    assert browser.sid is None

    page = browser.get(f"{service.base}/init")
    assert is_login_page(page)


def test_force_authn_as_another_organizations_account_is_refused(
    server: Server, owner: Account, org: str, member: Account
) -> None:
    service = saml_service(server, owner.token, org)
    stranger = outsider(server, owner)
    browser = signed_in(server, service, member)
    before = browser.sid
    page = browser.get(onelogin_auth(service).login(force_authn=True))
    assert is_login_page(page)
    refused = browser.login(page, stranger.email, stranger.password)
    assert refused.status_code == 401 and 'name="password"' in refused.text
    assert "SAMLResponse" not in refused.text
    assert browser.sid == before


def test_session_of_a_non_member_gets_the_login_page(
    server: Server, owner: Account, org: str
) -> None:
    stranger = outsider(server, owner)
    theirs = saml_service(server, owner.token, stranger.org)
    ours = saml_service(server, owner.token, org)
    browser = signed_in(server, theirs, stranger)
    xml = authn_request(ours, IsPassive="true")
    message = posted_message(browser.get(redirect_url(ours, xml)).text)
    assert status_of(message)[1] == c.STATUS_NO_PASSIVE
    assert is_login_page(browser.get(onelogin_auth(ours).login()))


def test_same_email_in_another_organization_signs_in_separately(
    server: Server, owner: Account, org: str
) -> None:
    """An account made in our organization with the email of a signed-in account elsewhere is
    another account: the browser's sign-in to the other organization does not reach it, and
    once it signs in too, both sign-ins live side by side in the browser."""
    stranger = outsider(server, owner)
    theirs = saml_service(server, owner.token, stranger.org)
    ours = saml_service(server, owner.token, org)
    browser = signed_in(server, theirs, stranger)
    xml = authn_request(ours, IsPassive="true")
    assert status_of(posted_message(browser.get(redirect_url(ours, xml)).text))[1] == (
        c.STATUS_NO_PASSIVE
    )
    same = add_user(server, owner.token, org, email=stranger.email, password="ours-password-1")
    xml = authn_request(ours, IsPassive="true")
    assert status_of(posted_message(browser.get(redirect_url(ours, xml)).text))[1] == (
        c.STATUS_NO_PASSIVE
    )
    page = browser.get(onelogin_auth(ours).login())
    assert is_login_page(page)
    assert browser.login(page, stranger.email, stranger.password).status_code == 401
    auth = onelogin_auth(ours)
    page = browser.sso(auth.login(), same.email, same.password)
    response = onelogin_accepts(ours, posted_message(page.text), auth.get_last_request_id())
    assert response.get_nameid() == stranger.email
    for service in (theirs, ours):
        auth = onelogin_auth(service)
        page = browser.get(auth.login(is_passive=True))
        onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())


# Analytics -------------------------------------------------------------------------------


def test_analytics_counts_successful_responses(server: Server, owner: Account, org: str) -> None:
    service = saml_service(server, owner.token, org)
    empty = service.api("GET", "/analytics").json()
    assert empty == {
        "logins_total": 0,
        "logins_24h": 0,
        "unique_users_30d": 0,
        "last_login_at": None,
    }
    member = add_user(server, owner.token, org)
    another = add_user(server, owner.token, org)
    first = Browser(server)
    first.sso(onelogin_auth(service).login(), another.email, another.password)
    first.sso(onelogin_auth(service).login())
    first.get(f"{service.base}/init")
    second = Browser(server)
    second.sso(f"{service.base}/init", member.email, member.password)
    refused = second.get(redirect_url(service, authn_request(service, name_id_format="x:y")))
    assert status_of(posted_message(refused.text))[1] == c.STATUS_INVALID_NAMEID_POLICY

    stats = service.api("GET", "/analytics").json()
    assert stats["logins_total"] == 4
    assert stats["logins_24h"] == 4
    assert stats["unique_users_30d"] == 2
    assert stats["last_login_at"] is not None
