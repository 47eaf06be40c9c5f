"""Upstream OpenID Connect sign-in per organization (CONTRACT §9), against a real OpenID
Provider: the npm package oidc-provider (OpenID Certified) run by tests/oidc_op/server.mjs,
PKCE required, client_secret_basic, and a browser that signs in there without a UI.

Each test states the rule it exists for; each would fail if the IdP skipped that rule. The
provider changes an ID token only through its own test controls (one claim changed and
re-signed with its current key, the same token signed by a key it never published, or a
genuine token of another flow or client), so that exactly one thing is wrong; an unchanged
re-signed token passing is the control.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from conftest import Account, Server, add_user, unique_slug
from oidc_helpers import (
    OpAccount,
    OpClient,
    OpenIdProvider,
    Upstream,
    at_provider,
    back_at_idp,
    callback_url,
    jwt_claims,
    jwt_header,
    provider_forms,
    put_provider,
    query_of,
    sign_in_upstream,
    start_provider,
    stop_provider,
    to_provider,
)
from onelogin.saml2.response import OneLogin_Saml2_Response
from sso_helpers import (
    Browser,
    SamlService,
    assert_refused,
    is_login_page,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    saml_service,
)
from sso_v2_helpers import MFA, PPT, UNSPECIFIED, Person, attribute, create_org, create_person

from idp.saml import constants as c

IDP_CLIENT = "saml-idp"
OTHER_CLIENT = "other-app"
DOMAIN = "corp.test"
MAPPING = {"id": "id", "email": "email", "groups": "groups", "role": "role"}


# Fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def op(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    """One OpenID Provider for the module: the IdP's client (redirect URI: the IdP's callback)
    and another application's client."""
    clients = [
        OpClient(IDP_CLIENT, unique_slug("secret-idp"), [callback_url(server)]),
        OpClient(OTHER_CLIENT, unique_slug("secret-other"), ["http://127.0.0.1:9/other/cb"]),
    ]
    provider = start_provider(tmp_path_factory.mktemp("op"), clients)
    yield provider
    stop_provider(provider)


@pytest.fixture(autouse=True)
def no_leftover_changes(request: pytest.FixtureRequest) -> Iterator[None]:
    """A change to the next ID token that a failed test left unused is dropped after it."""
    yield
    if "op" in request.fixturenames:
        request.getfixturevalue("op").clear_changes()


@dataclass
class Tenant:
    """An organization with a SAML service and an upstream provider (the module's OP)."""

    server: Server
    owner: Account
    op: OpenIdProvider
    org: str
    service: SamlService
    slug: str
    config: dict[str, Any]

    @property
    def client(self) -> OpClient:
        return self.op.clients[IDP_CLIENT]

    def person(self, email: str, groups: list[str] | None = None) -> Person:
        return create_person(self.server, self.owner.token, self.org, email, groups=groups)

    def configure(self, **fields: Any) -> dict[str, Any]:
        body = {**self.config, **fields}
        answer = put_provider(
            self.server, self.owner.token, self.org, self.op, self.client, self.slug, **body
        )
        self.config = body
        return answer

    def users(self) -> list[dict[str, Any]]:
        listed = self.server.api("GET", f"/organizations/{self.org}/users", self.owner.token)
        assert listed.status_code == 200, listed.text
        users: list[dict[str, Any]] = listed.json()["users"]
        return users

    def sso_login_page(
        self, browser: Browser, force: bool = False
    ) -> tuple[requests.Response, str | None]:
        """An SP-initiated SSO by python3-saml (asking for no particular class) that lands on
        the login page; the page and the AuthnRequest's ID."""
        auth = onelogin_auth(self.service, requestedAuthnContext=False)
        page = browser.get(auth.login(force_authn=force))
        assert is_login_page(page), (page.status_code, page.text[:1000])
        return page, auth.get_last_request_id()

    def sso(
        self, account: OpAccount, browser: Browser | None = None, force: bool = False
    ) -> OneLogin_Saml2_Response:
        """SSO through the upstream provider as ``account``; the Response a strict python3-saml
        SP accepted."""
        browser = browser or Browser(self.server)
        page, request_id = self.sso_login_page(browser, force)
        answer = sign_in_upstream(browser, page, self.slug, account)
        assert "SAMLResponse" in answer.text, (answer.status_code, answer.text[:2000])
        return onelogin_accepts(self.service, posted_message(answer.text), request_id)

    def refused(self, account: OpAccount, status: int, *phrases: str) -> Browser:
        """SSO through the upstream provider as ``account`` ends on an error page, with no
        sign-in at the IdP; the browser."""
        browser = Browser(self.server)
        page, _ = self.sso_login_page(browser)
        answer = sign_in_upstream(browser, page, self.slug, account)
        assert_refused(answer, status, *phrases)
        assert_not_signed_in(self, browser)
        return browser


def assert_not_signed_in(tenant: Tenant, browser: Browser) -> None:
    """The browser holds no sign-in: its next SSO request gets the login page."""
    assert browser.sid is None
    page = browser.get(onelogin_auth(tenant.service, requestedAuthnContext=False).login())
    assert is_login_page(page) and "SAMLResponse" not in page.text


def make_tenant(server: Server, owner: Account, op: OpenIdProvider, **fields: Any) -> Tenant:
    """A fresh organization whose service asserts id, email, groups and role, and whose
    provider (``fields`` override: allowed_domains [corp.test], jit off) is the module's OP."""
    org = create_org(server, owner.token, "up")
    service = saml_service(
        server, owner.token, org, name_id_format=c.NAMEID_EMAIL, attribute_mapping=MAPPING
    )
    tenant = Tenant(server, owner, op, org, service, unique_slug("corp"), {})
    tenant.configure(**{"allowed_domains": [DOMAIN], "jit": False, **fields})
    return tenant


@pytest.fixture
def tenant(server: Server, owner: Account, op: OpenIdProvider) -> Tenant:
    return make_tenant(server, owner, op)


def email(domain: str = DOMAIN) -> str:
    return f"{unique_slug('person')}@{domain}"


# The whole flow ----------------------------------------------------------------------------------


def test_an_upstream_sign_in_reaches_a_strict_sp_as_the_linked_account(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """Login page → "Continue with" → the provider (code flow, PKCE S256, state, nonce) → the
    callback → the SSO answer, which python3-saml in strict mode accepts, about the account
    the verified email in an allowed domain links to."""
    person = tenant.person(email(), groups=["engineering"])
    upstream = op.account(person.email)
    browser = Browser(tenant.server)
    page, request_id = tenant.sso_login_page(browser)
    forms = provider_forms(page.text)
    assert set(forms) == {tenant.slug}
    fields = forms[tenant.slug]
    assert fields["org"] == tenant.org and fields["pending"] and fields["csrf_token"]
    assert f"Continue with {tenant.config.get('name', 'Corp ' + tenant.slug)}" in page.text

    trip = to_provider(browser, page, tenant.slug, upstream)
    query = trip.query
    assert trip.authorize_url.startswith(op.discovery()["authorization_endpoint"] + "?")
    assert query["response_type"] == "code"
    assert query["client_id"] == IDP_CLIENT
    assert query["redirect_uri"] == callback_url(tenant.server)
    assert "openid" in query["scope"].split()
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 16 and len(query["nonce"]) >= 16
    assert "prompt" not in query
    cookie = [h for h in trip.start.raw.headers.getlist("Set-Cookie") if h.startswith("idp_oidc=")]
    assert cookie and "httponly" in cookie[0].lower(), trip.start.headers
    assert browser.sid is None  # nothing signed in before the provider answered

    answer = back_at_idp(browser, trip)
    assert [r.status_code for r in answer.history] and answer.history[0].status_code == 303
    response = onelogin_accepts(tenant.service, posted_message(answer.text), request_id)
    assert response.get_nameid() == person.email
    assert attribute(response, "id") == [person.id]
    assert attribute(response, "email") == [person.email]
    assert attribute(response, "groups") == ["engineering"]
    assert browser.sid is not None

    # the sign-in is the IdP's: the next SSO of this browser needs no provider
    again = onelogin_auth(tenant.service, requestedAuthnContext=False)
    page = browser.get(again.login())
    repeat = onelogin_accepts(
        tenant.service, posted_message(page.text), again.get_last_request_id()
    )
    assert attribute(repeat, "id") == [person.id]


def test_the_login_page_of_an_organization_signs_in_without_an_sso_request(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """/login?org=SLUG offers the provider too; the trip ends on the "You are signed in" page."""
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page = browser.get(f"{tenant.server.url}/login?org={tenant.org}")
    assert provider_forms(page.text)[tenant.slug]["org"] == tenant.org
    answer = sign_in_upstream(browser, page, tenant.slug, op.account(person.email))
    assert answer.status_code == 200 and "You are signed in" in answer.text, answer.text[:1000]
    assert browser.sid is not None
    auth = onelogin_auth(tenant.service, requestedAuthnContext=False)
    page = browser.get(auth.login())
    response = onelogin_accepts(
        tenant.service, posted_message(page.text), auth.get_last_request_id()
    )
    assert attribute(response, "id") == [person.id]


def test_a_disabled_provider_is_not_offered(tenant: Tenant) -> None:
    tenant.configure(enabled=False)
    page, _ = tenant.sso_login_page(Browser(tenant.server))
    assert provider_forms(page.text) == {}
    assert "Continue with" not in page.text


# State, PKCE, nonce ------------------------------------------------------------------------------


def test_a_callback_with_another_browsers_state_is_refused(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """The state is bound to the browser that started (its idp_oidc cookie): an attacker who
    has a victim's callback URL, or who plants their own, gets no sign-in."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    victim = Browser(tenant.server)
    page, _ = tenant.sso_login_page(victim)
    trip = to_provider(victim, page, tenant.slug, upstream)

    # a browser with no flow of its own, and one with its own flow (its own idp_oidc cookie)
    stranger = Browser(tenant.server)
    assert_refused(back_at_idp(stranger, trip), 400)
    assert stranger.sid is None
    other = Browser(tenant.server)
    other_page, _ = tenant.sso_login_page(other)
    to_provider(other, other_page, tenant.slug, upstream)
    assert_refused(back_at_idp(other, trip), 400)
    assert other.sid is None
    assert_not_signed_in(tenant, stranger)
    assert_not_signed_in(tenant, other)


def test_a_state_answers_once(tenant: Tenant, op: OpenIdProvider) -> None:
    """A state is spent by its first answer. The same authorization request sent to the
    provider again (which, holding a sign-in, answers at once with a new code for that state)
    and brought back with the browser's binding cookie is refused, as is the first callback
    URL opened again; the browser's one sign-in stays the first one."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    browser = Browser(tenant.server)
    page, request_id = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, upstream)
    binding = browser.session.cookies.get("idp_oidc")
    assert binding
    answer = back_at_idp(browser, trip)
    onelogin_accepts(tenant.service, posted_message(answer.text), request_id)
    sid = browser.sid

    again = at_provider(browser.session, trip.authorize_url, None, callback_url(tenant.server))
    assert again != trip.callback and query_of(again)["state"] == trip.query["state"]
    for callback in (again, trip.callback):
        browser.session.cookies.set("idp_oidc", binding, domain="127.0.0.1", path="/")
        assert_refused(browser.get(callback), 400)
    assert browser.sid == sid


def test_start_needs_the_login_pages_csrf_token(tenant: Tenant) -> None:
    """POST /oidc/start with a forged or missing csrf_token: a 400 page, not the provider."""
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    fields = provider_forms(page.text)[tenant.slug]
    for forged in (
        {**fields, "csrf_token": "forged"},
        {k: v for k, v in fields.items() if k != "csrf_token"},
    ):
        answer = browser.session.post(
            f"{tenant.server.url}/oidc/start", data=forged, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 400, (answer.status_code, answer.headers.get("Location"))
        assert "Location" not in answer.headers and "idp_oidc" not in browser.session.cookies


def test_a_provider_error_answer_signs_in_nobody(tenant: Tenant, op: OpenIdProvider) -> None:
    """The provider answering the callback with an error (the person declined) → a 400 page."""
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, op.account(email()))
    answer = {"error": "access_denied", "state": trip.query["state"], "iss": op.issuer}
    declined = f"{callback_url(tenant.server)}?{urlencode(answer)}"
    assert_refused(browser.get(declined), 400)
    assert_not_signed_in(tenant, browser)


def test_a_provider_answer_to_another_code_challenge_is_refused(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """PKCE: when the provider saw another code challenge than the IdP's (a tampered
    authorization request), the IdP's verifier does not redeem the code, and nothing is
    signed in."""
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    forged = "A" * 43
    trip = to_provider(
        browser, page, tenant.slug, op.account(person.email), tamper={"code_challenge": forged}
    )
    assert op.interactions()[-1]["params"]["code_challenge"] == forged
    assert "code=" in trip.callback  # the provider answered with a code, for that challenge
    assert_refused(back_at_idp(browser, trip), 400)
    assert_not_signed_in(tenant, browser)


def test_an_id_token_with_another_nonce_is_refused(tenant: Tenant, op: OpenIdProvider) -> None:
    """The nonce of the ID token must be the one the IdP sent: an authorization request whose
    nonce was changed on the way is refused."""
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    trip = to_provider(
        browser, page, tenant.slug, op.account(person.email), tamper={"nonce": "n-" * 12}
    )
    assert op.interactions()[-1]["params"]["nonce"] == "n-" * 12
    assert_refused(back_at_idp(browser, trip), 400)
    assert_not_signed_in(tenant, browser)


def replace_id_token(
    tenant: Tenant, op: OpenIdProvider, account: OpAccount, token_of: Any
) -> tuple[Browser, Upstream, requests.Response]:
    """A trip whose token response carries ``token_of(nonce the IdP sent)`` as its ID token."""
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, account)
    op.change_next_id_token(token=token_of(trip.query["nonce"]))
    return browser, trip, back_at_idp(browser, trip)


def test_an_id_token_replayed_from_another_flow_is_refused(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """A genuine ID token of the same client and person, from another flow (another nonce),
    put in place of this flow's: refused. The same swap with this flow's nonce passes, so the
    nonce is what refused it."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    client = op.clients[IDP_CLIENT]

    browser, _, answer = replace_id_token(
        tenant, op, upstream, lambda nonce: op.id_token_for(client, upstream, "another-nonce-1234")
    )
    assert_refused(answer, 400)
    assert_not_signed_in(tenant, browser)

    browser, _, answer = replace_id_token(
        tenant, op, upstream, lambda nonce: op.id_token_for(client, upstream, nonce)
    )
    assert "SAMLResponse" in answer.text, (answer.status_code, answer.text[:1000])


def test_an_id_token_issued_to_another_client_is_refused(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """aud: a genuine ID token the provider issued to another application (same person, same
    nonce) is no sign-in here."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    other = op.clients[OTHER_CLIENT]
    seen: list[str] = []

    def other_token(nonce: str) -> str:
        token = op.id_token_for(other, upstream, nonce)
        seen.append(token)
        return token

    browser, _, answer = replace_id_token(tenant, op, upstream, other_token)
    assert jwt_claims(seen[0])["aud"] == OTHER_CLIENT
    assert_refused(answer, 400)
    assert_not_signed_in(tenant, browser)


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        pytest.param({}, True, id="unchanged-control"),  # re-signed by the provider only
        pytest.param({"aud": [IDP_CLIENT, OTHER_CLIENT], "azp": IDP_CLIENT}, True, id="azp-ok"),
        pytest.param({"aud": [IDP_CLIENT, OTHER_CLIENT]}, False, id="audiences-without-azp"),
        pytest.param(
            {"aud": [IDP_CLIENT, OTHER_CLIENT], "azp": OTHER_CLIENT}, False, id="azp-other"
        ),
        pytest.param({"azp": OTHER_CLIENT}, False, id="azp-other-single-aud"),
        pytest.param({"iss": "http://127.0.0.1:9"}, False, id="other-iss"),
        pytest.param({"nonce": None}, False, id="no-nonce"),
        pytest.param({"sub": None}, False, id="no-sub"),
        pytest.param("expired", False, id="expired"),
        pytest.param("issued-in-the-future", False, id="issued-in-the-future"),
    ],
)
def test_id_token_claims_are_checked(
    tenant: Tenant, op: OpenIdProvider, claims: dict[str, Any] | str, accepted: bool
) -> None:
    """The ID token, re-signed by the provider's own key with one claim changed: exp and iat
    (beyond the 180 s clock skew), aud/azp, iss, nonce and sub are each checked."""
    now = int(time.time())
    if claims == "expired":
        claims = {"iat": now - 3600, "exp": now - 3000, "auth_time": now - 3600}
    elif claims == "issued-in-the-future":
        claims = {"iat": now + 3000, "exp": now + 3300}
    assert isinstance(claims, dict)
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page, request_id = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, op.account(person.email))
    op.change_next_id_token(claims=claims)
    answer = back_at_idp(browser, trip)
    if accepted:
        response = onelogin_accepts(tenant.service, posted_message(answer.text), request_id)
        assert attribute(response, "id") == [person.id]
    else:
        assert_refused(answer, 400)
        assert_not_signed_in(tenant, browser)


@pytest.mark.parametrize("signer", ["foreign-same-kid", "foreign-new-kid", "none", "hs256"])
def test_an_id_token_not_signed_by_a_published_key_is_refused(
    tenant: Tenant, op: OpenIdProvider, signer: str
) -> None:
    """The signature is checked against the provider's JWKS: a token signed by another key
    (under the provider's kid, or an unknown one), unsigned (alg none), or MACed with the
    client secret is refused, its claims all right."""
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, op.account(person.email))
    op.change_next_id_token(signer=signer)
    assert_refused(back_at_idp(browser, trip), 400)
    assert_not_signed_in(tenant, browser)


def test_a_rotated_provider_key_still_signs_in(tenant: Tenant, op: OpenIdProvider) -> None:
    """After a sign-in (the IdP holds the provider's JWKS), the provider signs with a new key
    and publishes only that one: the next sign-in reads the JWKS again and passes."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    assert attribute(tenant.sso(upstream), "id") == [person.id]

    new_kid, old_kid = op.rotate()
    assert new_kid != old_kid and op.jwks_kids() == [new_kid]
    probe = op.id_token_for(op.clients[OTHER_CLIENT], upstream, "probe-nonce-123456")
    assert probe.count(".") == 2 and jwt_header(probe)["kid"] == new_kid

    assert attribute(tenant.sso(upstream), "id") == [person.id]


# Binding -----------------------------------------------------------------------------------------


REFUSED = "administrator"


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("why", ["unverified", "foreign-domain"])
def test_an_email_the_provider_may_not_vouch_for_links_nothing(
    tenant: Tenant, op: OpenIdProvider, jit: bool, why: str
) -> None:
    """An existing account's email, but unverified upstream or outside allowed_domains: no
    link (never by email alone). With jit the email already has an account here, so no second
    account either: a 403 page that says to ask an administrator, and no sign-in."""
    tenant.configure(jit=jit)
    address = email("elsewhere.test" if why == "foreign-domain" else DOMAIN)
    person = tenant.person(address)
    before = tenant.users()
    upstream = op.account(address, email_verified=why != "unverified")
    tenant.refused(upstream, 403, REFUSED)
    assert tenant.users() == before
    # and still not linked: the same subject is refused again
    tenant.refused(upstream, 403, REFUSED)
    assert person.id in {user["id"] for user in tenant.users()}


def test_an_empty_allowed_domains_links_nobody(tenant: Tenant, op: OpenIdProvider) -> None:
    tenant.configure(allowed_domains=[])
    person = tenant.person(email())
    tenant.refused(op.account(person.email), 403, REFUSED)


def test_jit_creates_an_account_with_the_default_role(tenant: Tenant, op: OpenIdProvider) -> None:
    """A first sign-in with no account here, jit on: a new account (role default_role, no
    password), reached again by the next sign-in."""
    tenant.configure(jit=True, default_role="admin", allowed_domains=[])
    upstream = op.account(email("newcomer.test"))
    response = tenant.sso(upstream)
    assert response.get_nameid() == upstream.email
    created = [user for user in tenant.users() if user["email"] == upstream.email]
    assert len(created) == 1 and created[0]["role"] == "admin"
    assert attribute(response, "id") == [created[0]["id"]]
    assert attribute(response, "role") == ["admin"]
    again = tenant.sso(upstream)
    assert attribute(again, "id") == [created[0]["id"]]
    assert len([u for u in tenant.users() if u["email"] == upstream.email]) == 1
    # no password was set: the account cannot sign in with one
    login = requests.post(
        f"{tenant.server.url}/api/auth/login",
        json={"email": upstream.email, "password": "", "organization": tenant.org},
        timeout=10,
    )
    assert login.status_code in (400, 401)


def test_jit_off_refuses_an_unknown_person(tenant: Tenant, op: OpenIdProvider) -> None:
    before = tenant.users()
    tenant.refused(op.account(email()), 403, REFUSED)
    assert tenant.users() == before


def test_a_returning_subject_reaches_its_account_whatever_its_email_became(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """Bound by (provider, sub): when the email changes upstream, even to the email of another
    account here, the subject still reaches the account it was bound to."""
    first = tenant.person(email())
    upstream = op.account(first.email)
    assert attribute(tenant.sso(upstream), "id") == [first.id]

    second = tenant.person(email())
    changed = op.account(second.email, sub=upstream.sub)
    response = tenant.sso(changed)
    assert attribute(response, "id") == [first.id]
    assert response.get_nameid() == first.email


def test_one_upstream_identity_reaches_a_different_account_in_each_organization(
    server: Server, owner: Account, op: OpenIdProvider
) -> None:
    """Two organizations, each with its own provider configuration pointing at the same
    provider and client: the same person (same sub, same email) signs in to two different
    accounts, one per organization (linked in A, created by jit in B), in one browser."""
    a = make_tenant(server, owner, op)
    b = make_tenant(server, owner, op, jit=True, allowed_domains=[])
    address = email()
    in_a = a.person(address)
    upstream = op.account(address)
    browser = Browser(server)
    from_a = a.sso(upstream, browser)
    from_b = b.sso(upstream, browser)
    assert from_a.get_nameid() == from_b.get_nameid() == address
    id_a, id_b = attribute(from_a, "id"), attribute(from_b, "id")
    assert id_a == [in_a.id]
    assert id_b != id_a
    assert [u["id"] for u in b.users() if u["email"] == address] == id_b
    assert [u["id"] for u in a.users() if u["email"] == address] == id_a
    # and again each to its own, from a new browser
    assert attribute(b.sso(upstream), "id") == id_b
    assert attribute(a.sso(upstream), "id") == id_a


# ForceAuthn and the authentication context -------------------------------------------------------


def test_force_authn_asks_the_provider_for_a_new_sign_in(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """ForceAuthn → prompt=login upstream: the provider, which holds a sign-in of this browser,
    asks for the password again (its interaction's reason is login_prompt)."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    browser = Browser(tenant.server)
    tenant.sso(upstream, browser)  # signed in at the IdP and at the provider

    page, request_id = tenant.sso_login_page(browser, force=True)
    trip = to_provider(browser, page, tenant.slug, upstream)
    assert trip.query.get("prompt") == "login"
    last = op.interactions()[-1]
    assert last["params"].get("prompt") == "login"
    assert last["prompt"] == "login" and "login_prompt" in last["reasons"], last
    response = onelogin_accepts(
        tenant.service, posted_message(back_at_idp(browser, trip).text), request_id
    )
    assert attribute(response, "id") == [person.id]


def test_without_force_authn_the_provider_is_not_told_to_prompt(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    person = tenant.person(email())
    browser = Browser(tenant.server)
    page, _ = tenant.sso_login_page(browser)
    trip = to_provider(browser, page, tenant.slug, op.account(person.email))
    assert "prompt" not in trip.query


@pytest.mark.parametrize(
    ("amr", "acr", "expected"),
    [
        (["pwd", "otp"], None, MFA),
        (["pwd"], None, UNSPECIFIED),
        (["pwd", "pin"], None, UNSPECIFIED),  # two things known: one kind of factor
        (["mfa"], None, MFA),
        (["hwk", "fpt"], None, MFA),
        (["pwd"], PPT, PPT),
        (["pwd"], MFA, MFA),
        (["pwd", "otp"], PPT, PPT),  # a SAML class acr wins over amr
        (["pwd"], "silver", UNSPECIFIED),  # not a SAML class
        ([], None, UNSPECIFIED),
    ],
)
def test_the_upstream_acr_and_amr_give_the_authn_context_class(
    tenant: Tenant, op: OpenIdProvider, amr: list[str], acr: str | None, expected: str
) -> None:
    person = tenant.person(email())
    upstream = op.account(person.email, amr=amr, acr=acr)
    assert tenant.sso(upstream).get_authn_contexts() == [expected]


# The API -----------------------------------------------------------------------------------------


def provider_route(org: str, slug: str) -> str:
    return f"/organizations/{org}/identity-providers/{slug}"


def test_put_creates_then_replaces_and_never_returns_the_secret(
    server: Server, owner: Account, op: OpenIdProvider
) -> None:
    org = create_org(server, owner.token, "api")
    slug = unique_slug("corp")
    client = op.clients[IDP_CLIENT]
    body = {
        "name": "Corp SSO",
        "issuer": op.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "allowed_domains": [DOMAIN],
    }
    created = server.api("PUT", provider_route(org, slug), owner.token, json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer == {
        "slug": slug,
        "name": "Corp SSO",
        "issuer": op.issuer,
        "client_id": IDP_CLIENT,
        "has_client_secret": True,
        "scopes": answer["scopes"],
        "allowed_domains": [DOMAIN],
        "jit": False,
        "default_role": "member",
        "enabled": True,
        "redirect_uri": callback_url(server),
    }
    assert "openid" in answer["scopes"]
    updated = server.api("PUT", provider_route(org, slug), owner.token, json=body)
    assert updated.status_code == 200, updated.text

    # without client_secret: the stored one stays, and the provider still takes it
    kept = {k: v for k, v in body.items() if k != "client_secret"} | {"name": "Corp"}
    again = server.api("PUT", provider_route(org, slug), owner.token, json=kept)
    assert again.status_code == 200 and again.json()["has_client_secret"] is True, again.text
    one = server.api("GET", provider_route(org, slug), owner.token)
    listed = server.api("GET", f"/organizations/{org}/identity-providers", owner.token)
    assert one.status_code == 200 and listed.status_code == 200
    assert listed.json() == {"identity_providers": [one.json()]}
    for text in (created.text, updated.text, again.text, one.text, listed.text):
        assert client.client_secret not in text and '"client_secret"' not in text

    service = saml_service(
        server, owner.token, org, name_id_format=c.NAMEID_EMAIL, attribute_mapping=MAPPING
    )
    tenant = Tenant(server, owner, op, org, service, slug, kept)
    person = tenant.person(email())
    assert attribute(tenant.sso(op.account(person.email)), "id") == [person.id]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"issuer": "http://op.example.com"}, "issuer"),
        ({"issuer": "ftp://127.0.0.1/x"}, "issuer"),
        ({"default_role": "owner"}, "default_role"),
        ({"scopes": ["email"]}, "scopes"),
        ({"client_id": ""}, "client_id"),
        ({"allowed_domains": ["not a domain"]}, "allowed_domains"),
    ],
)
def test_put_validates(
    server: Server, owner: Account, op: OpenIdProvider, change: dict[str, Any], field: str
) -> None:
    org = owner.org
    body = {
        "name": "Corp",
        "issuer": op.issuer,
        "client_id": IDP_CLIENT,
        "client_secret": "s3cret",
        **change,
    }
    answer = server.api("PUT", provider_route(org, unique_slug("bad")), owner.token, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert field in answer.json().get("details", {}), answer.text


def test_https_and_loopback_issuers_are_taken(
    server: Server, owner: Account, op: OpenIdProvider
) -> None:
    for issuer in ("https://login.example.com", "http://127.0.0.1:8080", op.issuer):
        body = {"name": "Corp", "issuer": issuer, "client_id": "x", "client_secret": "y"}
        slug = unique_slug("ok")
        answer = server.api("PUT", provider_route(owner.org, slug), owner.token, json=body)
        assert answer.status_code == 201, (issuer, answer.text)


def test_delete_unlinks_and_ends_the_sign_ins_made_through_it(
    tenant: Tenant, op: OpenIdProvider
) -> None:
    """DELETE → 204: a browser signed in through the provider is sent to the login page at
    its next SSO; one signed in with a password is not; and the identity is unlinked (the same
    subject, through a provider of the same slug configured again with no allowed domain, is
    refused)."""
    person = tenant.person(email())
    upstream = op.account(person.email)
    through = Browser(tenant.server)
    tenant.sso(upstream, through)
    by_password = Browser(tenant.server)
    other = tenant.person(email())
    page, _ = tenant.sso_login_page(by_password)
    login = by_password.login(page, other.email, other.password)
    assert "SAMLResponse" in login.text, login.text[:1000]

    route = provider_route(tenant.org, tenant.slug)
    deleted = tenant.server.api("DELETE", route, tenant.owner.token)
    assert deleted.status_code == 204, deleted.text
    assert tenant.server.api("GET", route, tenant.owner.token).status_code == 404

    page = through.get(onelogin_auth(tenant.service, requestedAuthnContext=False).login())
    assert is_login_page(page) and "SAMLResponse" not in page.text
    still = by_password.get(onelogin_auth(tenant.service, requestedAuthnContext=False).login())
    assert "SAMLResponse" in still.text

    tenant.configure(allowed_domains=[])
    tenant.refused(upstream, 403, REFUSED)


def test_roles_and_organizations(
    server: Server, owner: Account, op: OpenIdProvider, tenant: Tenant
) -> None:
    """Owners and admins manage; any account of the organization reads; another
    organization's accounts see nothing (404)."""
    route = provider_route(tenant.org, tenant.slug)
    body = {"name": "Corp", "issuer": op.issuer, "client_id": IDP_CLIENT}
    member = add_user(server, owner.token, tenant.org, "member")
    admin = add_user(server, owner.token, tenant.org, "admin")
    assert server.api("GET", route, member.token).status_code == 200
    listed = server.api("GET", f"/organizations/{tenant.org}/identity-providers", member.token)
    assert listed.status_code == 200
    for method, kwargs in (("PUT", {"json": body}), ("DELETE", {})):
        refused = server.api(method, route, member.token, **kwargs)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
    assert server.api("PUT", route, admin.token, json=body).status_code == 200

    other_org = create_org(server, owner.token, "other")
    outsider = add_user(server, owner.token, other_org, "owner")
    for method, kwargs in (("GET", {}), ("PUT", {"json": body}), ("DELETE", {})):
        hidden = server.api(method, route, outsider.token, **kwargs)
        assert hidden.status_code == 404, (method, hidden.text)
    listing = server.api("GET", f"/organizations/{tenant.org}/identity-providers", outsider.token)
    assert listing.status_code == 404
    assert server.api("GET", route, admin.token).json()["name"] == "Corp"
