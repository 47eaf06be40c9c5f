"""The SSO happy path end to end: SP-initiated over HTTP-Redirect, accepted by python3-saml."""

from __future__ import annotations

from conftest import Account, Server
from sso_helpers import Browser, onelogin_accepts, onelogin_auth, posted_message, saml_service


def test_sp_initiated_login_then_session_reuse(server: Server, owner: Account) -> None:
    service = saml_service(server, owner.token, owner.org)
    auth = onelogin_auth(service)
    browser = Browser(server)
    url = auth.login(return_to="https://app.test/after")
    page = browser.sso(url, owner.email, owner.password)
    message = posted_message(page.text)
    assert message.action == service.config["acs_url"]
    assert message.relay_state == "https://app.test/after"
    response = onelogin_accepts(service, message, auth.get_last_request_id())
    assert response.get_nameid() == owner.email
    again = browser.sso(auth.login())
    onelogin_accepts(service, posted_message(again.text), auth.get_last_request_id())
    stats = server.api(
        "GET", f"/organizations/{owner.org}/services/{service.svc}/analytics", owner.token
    )
    assert stats.json()["logins_total"] == 2
