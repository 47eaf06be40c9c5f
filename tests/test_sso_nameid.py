"""NameIDs and attributes through a running server, as python3-saml and pysaml2 read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Account, Server, add_user
from sso_helpers import (
    Browser,
    PostedMessage,
    SamlService,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
    pysaml2_accepts,
    pysaml2_redirect,
    pysaml2_sp,
    saml_service,
)

from idp.saml import constants as c

MAPPING = {
    "id": "uid",
    "email": "email",
    "name": "displayName",
    "given_name": "urn:example:givenName",
    "family_name": "sn",
    "role": "role",
    "groups": "urn:example:groups",
    "plan": "plan",
    "features": "urn:example:features",
}
PROFILE = {
    "name": "Ada Lovelace",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "groups": ["admins", "engineering"],
}


def user_id(server: Server, token: str, org: str, email: str) -> str:
    """A member's user id, from the organization's user list."""
    users = server.api("GET", f"/organizations/{org}/users", token).json()["users"]
    found: str = next(user["id"] for user in users if user["email"] == email)
    return found


def sign_in(
    service: SamlService, account: Account, tmp_path: Path, browser: Browser | None = None
) -> tuple[str, str, PostedMessage]:
    """SP-initiated SSO with pysaml2, verified by both SPs: NameID value, format, message."""
    client = pysaml2_sp(service, tmp_path)
    request_id, url = pysaml2_redirect(client, service)
    browser = browser or Browser(service.server)
    message = posted_message(browser.sso(url, account.email, account.password).text)
    response = pysaml2_accepts(client, message, request_id)
    onelogin = onelogin_accepts(service, message, request_id)
    assert onelogin.get_nameid() == response.name_id.text
    assert onelogin.get_nameid_format() == response.name_id.format
    return response.name_id.text, response.name_id.format, message


@pytest.mark.parametrize(
    "name_id_format",
    [c.NAMEID_EMAIL, c.NAMEID_UNSPECIFIED, c.NAMEID_PERSISTENT, c.NAMEID_TRANSIENT],
    ids=["email", "unspecified", "persistent", "transient"],
)
def test_name_id_format_is_honoured(
    server: Server, owner: Account, org: str, name_id_format: str, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, name_id_format=name_id_format)
    member = add_user(server, owner.token, org)
    value, format_, _ = sign_in(service, member, tmp_path)
    assert format_ == name_id_format
    uid = user_id(server, owner.token, org, member.email)
    if name_id_format == c.NAMEID_EMAIL:
        assert value == member.email
    elif name_id_format == c.NAMEID_UNSPECIFIED:
        assert value == uid
    else:
        assert member.email.split("@")[0] not in value and uid not in value
        assert len(value) >= 32


def test_persistent_name_id_is_stable_per_sp_and_differs_across_sps(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    first = saml_service(server, owner.token, org, name_id_format=c.NAMEID_PERSISTENT)
    second = saml_service(server, owner.token, org, name_id_format=c.NAMEID_PERSISTENT)
    member = add_user(server, owner.token, org)
    other = add_user(server, owner.token, org)

    value, _, message = sign_in(first, member, tmp_path)
    assert sign_in(first, member, tmp_path)[0] == value
    assert sign_in(second, member, tmp_path)[0] != value
    assert sign_in(first, other, tmp_path)[0] != value
    name_id = message.xml.find(f".//{{{c.SAML_NS}}}NameID")
    assert name_id is not None
    assert name_id.get("SPNameQualifier") == first.config["entity_id"]
    assert name_id.get("NameQualifier") == first.entity_id


def test_transient_name_id_is_fresh_per_session(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, name_id_format=c.NAMEID_TRANSIENT)
    member = add_user(server, owner.token, org)
    browser = Browser(server)
    value = sign_in(service, member, tmp_path, browser)[0]
    assert sign_in(service, member, tmp_path, browser)[0] == value
    assert sign_in(service, member, tmp_path)[0] != value


# Attributes ------------------------------------------------------------------------------


def subscribed_member(service: SamlService, owner: Account, features: list[str]) -> Account:
    """A member with a full profile and an active subscription to a plan of the service."""
    member = add_user(service.server, owner.token, service.org, role="admin", **PROFILE)
    plan = service.api(
        "POST",
        "/plans",
        json={"name": "pro", "price_cents": 1500, "currency": "usd", "features": features},
    )
    assert plan.status_code == 201, plan.text
    subscription = service.api(
        "POST", "/subscriptions", json={"email": member.email, "plan_id": plan.json()["plan"]["id"]}
    )
    assert subscription.status_code == 201, subscription.text
    return member


def attribute_formats(message: PostedMessage) -> dict[str, str]:
    """Each asserted attribute's NameFormat, by name."""
    return {
        attribute.get("Name"): attribute.get("NameFormat")
        for attribute in message.xml.iter(f"{{{c.SAML_NS}}}Attribute")
    }


def test_every_mapped_field_is_asserted(
    server: Server, owner: Account, org: str, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, org, attribute_mapping=MAPPING)
    member = subscribed_member(service, owner, ["export", "sso"])
    uid = user_id(server, owner.token, org, member.email)
    expected = {
        "uid": [uid],
        "email": [member.email],
        "displayName": ["Ada Lovelace"],
        "urn:example:givenName": ["Ada"],
        "sn": ["Lovelace"],
        "role": ["admin"],
        "urn:example:groups": ["admins", "engineering"],
        "plan": ["pro"],
        "urn:example:features": ["export", "sso"],
    }
    client = pysaml2_sp(service, tmp_path)
    request_id, url = pysaml2_redirect(client, service)
    message = posted_message(Browser(server).sso(url, member.email, member.password).text)

    assert pysaml2_accepts(client, message, request_id).ava == expected
    assert onelogin_accepts(service, message, request_id).get_attributes() == expected
    assert attribute_formats(message) == {
        name: c.ATTRNAME_URI if ":" in name else c.ATTRNAME_BASIC for name in expected
    }


def test_without_subscription_plan_and_features_are_left_out(
    server: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org, attribute_mapping=MAPPING)
    member = add_user(server, owner.token, org, groups=[])
    auth = onelogin_auth(service)
    page = Browser(server).sso(auth.login(), member.email, member.password)
    attributes = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    assert set(attributes.get_attributes()) == {"uid", "email", "role"}


def test_cancelled_subscription_leaves_the_next_response(
    server: Server, owner: Account, org: str
) -> None:
    service = saml_service(server, owner.token, org, attribute_mapping=MAPPING)
    member = subscribed_member(service, owner, ["export"])
    browser = Browser(server)

    def attributes() -> dict[str, Any]:
        auth = onelogin_auth(service)
        page = browser.sso(auth.login(), member.email, member.password)
        response = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
        found: dict[str, Any] = response.get_attributes()
        return found

    assert attributes()["plan"] == ["pro"]
    subscriptions = service.api("GET", "/subscriptions").json()["subscriptions"]
    cancelled = service.api("DELETE", f"/subscriptions/{subscriptions[0]['id']}")
    assert cancelled.status_code == 204, cancelled.text
    assert "plan" not in attributes() and "urn:example:features" not in attributes()
