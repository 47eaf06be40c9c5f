"""The SAML core's building blocks: NameIDs, attributes, Response shape, keys, policy answers."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from saml_core_helpers import (
    ACS_URL,
    IDP,
    SECRET,
    SP_ENTITY_ID,
    SP_SLO_URL,
    USER,
    authn_request_xml,
    idp_key,
    key_pair,
    sp_config,
)

from idp.saml import (
    INVALID_NAMEID_POLICY,
    NO_PASSIVE,
    PASSWORD_SIGN_IN,
    REQUEST_DENIED,
    AuthnRequest,
    LogoutRequest,
    NameId,
    SigningKey,
    SpConfig,
    UserInfo,
    decode_post,
    decode_redirect,
    error_response,
    logout_response_post,
    logout_response_redirect,
    make_name_id,
    parse_authn_request,
    sso_error,
    sso_response,
)
from idp.saml import constants as c
from idp.saml.attributes import attributes

NS = {"samlp": c.SAMLP_NS, "saml": c.SAML_NS, "ds": c.DS_NS}
ISSUED = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def name_id_for(
    name_id_format: str,
    user_id: str = USER.id,
    sp_entity_id: str = SP_ENTITY_ID,
    secret: bytes = SECRET,
) -> NameId:
    return make_name_id(
        name_id_format,
        user_id=user_id,
        email=USER.email,
        sp_entity_id=sp_entity_id,
        idp_entity_id=IDP.entity_id,
        secret=secret,
    )


def response_xml(
    sp: SpConfig, in_response_to: str | None = "_req", user: UserInfo = USER
) -> etree._Element:
    encoded = sso_response(
        sp=sp,
        idp=IDP,
        key=idp_key(),
        user=user,
        name_id=name_id_for(sp.name_id_format),
        session_index="_sess",
        authn_instant=ISSUED - timedelta(minutes=10),
        session_not_on_or_after=ISSUED + timedelta(hours=8),
        in_response_to=in_response_to,
        now=ISSUED,
        assertion_ttl=300,
        authn_context_class=c.AUTHN_PASSWORD_PROTECTED,
    )
    return etree.fromstring(base64.b64decode(encoded))


def one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NS)
    assert len(found) == 1, path
    return found[0]


# NameID ----------------------------------------------------------------------------------------


def test_email_and_unspecified_name_ids() -> None:
    assert name_id_for(c.NAMEID_EMAIL) == NameId(USER.email, c.NAMEID_EMAIL)
    assert name_id_for(c.NAMEID_UNSPECIFIED) == NameId(USER.id, c.NAMEID_UNSPECIFIED)


def test_persistent_name_id_is_stable_opaque_and_pairwise() -> None:
    first = name_id_for(c.NAMEID_PERSISTENT)
    assert first == name_id_for(c.NAMEID_PERSISTENT)
    assert USER.id not in first.value and USER.email not in first.value
    assert first.name_qualifier == IDP.entity_id and first.sp_name_qualifier == SP_ENTITY_ID
    assert (
        first.value
        != name_id_for(c.NAMEID_PERSISTENT, sp_entity_id="https://other.example.com").value
    )
    assert first.value != name_id_for(c.NAMEID_PERSISTENT, user_id="someone-else").value
    assert (
        first.value
        != name_id_for(c.NAMEID_PERSISTENT, secret=b"another-secret-of-32-characters!!").value
    )


def test_transient_name_id_is_fresh_every_time() -> None:
    values = {name_id_for(c.NAMEID_TRANSIENT).value for _ in range(20)}
    assert len(values) == 20
    assert all(len(value) >= 32 for value in values)


# Attributes -------------------------------------------------------------------------------------


def test_attributes_follow_the_mapping_and_the_name_format_rule() -> None:
    found = {
        a.name: a
        for a in attributes(
            USER, {"email": "mail", "groups": "urn:oid:1.3.6.1.4.1.5923.1.1.1.7", "role": "role"}
        )
    }
    assert found["mail"].name_format == c.ATTRNAME_BASIC
    assert found["mail"].values == (USER.email,)
    assert found["urn:oid:1.3.6.1.4.1.5923.1.1.1.7"].name_format == c.ATTRNAME_URI
    assert found["urn:oid:1.3.6.1.4.1.5923.1.1.1.7"].values == ("admins", "engineering")
    assert found["role"].values == ("member",)


def test_attributes_without_a_value_are_left_out() -> None:
    bare = UserInfo(id="u1", email="u@example.com", name="", groups=(), features=("",))
    names = [
        a.name
        for a in attributes(
            bare, {"name": "cn", "groups": "g", "features": "f", "plan": "p", "id": "uid"}
        )
    ]
    assert names == ["uid"]


def test_sp_config_rejects_what_the_contract_forbids() -> None:
    with pytest.raises(ValueError, match="unknown user fields"):
        sp_config(attribute_mapping={"password": "pw"})
    with pytest.raises(ValueError, match="NameID format"):
        sp_config(name_id_format="urn:example:format")
    with pytest.raises(ValueError, match="sign_assertions"):
        sp_config(sign_assertions=False, sign_response=False)
    with pytest.raises(ValueError, match="sp_certificate"):
        sp_config(want_authn_requests_signed=True)


# The Response -----------------------------------------------------------------------------------


def test_response_carries_every_element_of_contract_section_4() -> None:
    root = response_xml(
        sp_config(sign_assertions=True, sign_response=True, name_id_format=c.NAMEID_PERSISTENT)
    )

    assert root.get("Destination") == ACS_URL
    assert root.get("InResponseTo") == "_req"
    assert root.get("IssueInstant") == "2030-01-02T03:04:05Z"
    assert one(root, "saml:Issuer").text == IDP.entity_id
    assert one(root, "samlp:Status/samlp:StatusCode").get("Value") == c.STATUS_SUCCESS
    assertion = one(root, "saml:Assertion")
    assert one(assertion, "saml:Issuer").text == IDP.entity_id
    name_id = one(assertion, "saml:Subject/saml:NameID")
    assert name_id.get("Format") == c.NAMEID_PERSISTENT
    assert name_id.get("SPNameQualifier") == SP_ENTITY_ID
    confirmation = one(assertion, "saml:Subject/saml:SubjectConfirmation")
    assert confirmation.get("Method") == c.CONFIRMATION_BEARER
    data = one(confirmation, "saml:SubjectConfirmationData")
    assert data.attrib == {
        "NotOnOrAfter": "2030-01-02T03:09:05Z",
        "Recipient": ACS_URL,
        "InResponseTo": "_req",
    }
    conditions = one(assertion, "saml:Conditions")
    assert conditions.get("NotBefore") == "2030-01-02T03:03:05Z"
    assert conditions.get("NotOnOrAfter") == "2030-01-02T03:09:05Z"
    assert one(conditions, "saml:AudienceRestriction/saml:Audience").text == SP_ENTITY_ID
    statement = one(assertion, "saml:AuthnStatement")
    assert statement.get("AuthnInstant") == "2030-01-02T02:54:05Z"
    assert statement.get("SessionIndex") == "_sess"
    assert statement.get("SessionNotOnOrAfter") == "2030-01-02T11:04:05Z"
    assert (
        one(statement, "saml:AuthnContext/saml:AuthnContextClassRef").text
        == c.AUTHN_PASSWORD_PROTECTED
    )
    groups = one(assertion, "saml:AttributeStatement/saml:Attribute[@Name='groups']")
    assert groups.get("NameFormat") == c.ATTRNAME_BASIC
    assert [v.text for v in groups] == ["admins", "engineering"]
    given = one(assertion, "saml:AttributeStatement/saml:Attribute[@Name='urn:oid:2.5.4.42']")
    assert given.get("NameFormat") == c.ATTRNAME_URI
    assert not root.xpath("//saml:Attribute[@Name='sn']", namespaces=NS)


@pytest.mark.parametrize(
    ("sign_assertions", "sign_response"), [(True, False), (False, True), (True, True)]
)
def test_signatures_sit_after_issuer_with_the_contract_algorithms(
    sign_assertions: bool, sign_response: bool
) -> None:
    root = response_xml(sp_config(sign_assertions=sign_assertions, sign_response=sign_response))
    assertion = one(root, "saml:Assertion")
    signed = [
        element for element, flag in ((assertion, sign_assertions), (root, sign_response)) if flag
    ]
    unsigned = [
        element
        for element, flag in ((assertion, sign_assertions), (root, sign_response))
        if not flag
    ]

    assert len(root.xpath("//ds:Signature", namespaces=NS)) == len(signed)
    for element in unsigned:
        assert element.find(f"{{{c.DS_NS}}}Signature") is None
    for element in signed:
        signature = element[1]
        assert signature.tag == f"{{{c.DS_NS}}}Signature"
        assert element[0].tag == f"{{{c.SAML_NS}}}Issuer"
        assert (
            one(signature, "ds:SignedInfo/ds:CanonicalizationMethod").get("Algorithm")
            == c.TRANSFORM_EXC_C14N
        )
        assert (
            one(signature, "ds:SignedInfo/ds:SignatureMethod").get("Algorithm") == c.SIG_RSA_SHA256
        )
        reference = one(signature, "ds:SignedInfo/ds:Reference")
        assert reference.get("URI") == "#" + element.get("ID")
        assert (
            one(reference, "ds:DigestMethod").get("Algorithm")
            == "http://www.w3.org/2001/04/xmlenc#sha256"
        )
        assert [
            t.get("Algorithm") for t in reference.xpath("ds:Transforms/ds:Transform", namespaces=NS)
        ] == [
            c.TRANSFORM_ENVELOPED,
            c.TRANSFORM_EXC_C14N,
        ]
        certificate = one(signature, "ds:KeyInfo/ds:X509Data/ds:X509Certificate").text
        assert "".join(certificate.split()) in "".join(key_pair("idp")[1].decode().split())
        assert one(signature, "ds:SignatureValue").text.strip()


def test_ids_are_unique_across_responses() -> None:
    sp = sp_config()
    ids = set()
    for _ in range(10):
        root = response_xml(sp)
        ids.update({root.get("ID"), one(root, "saml:Assertion").get("ID")})
    assert len(ids) == 20
    assert all(i[0] == "_" for i in ids)


def test_idp_initiated_response_has_no_in_response_to() -> None:
    root = response_xml(sp_config(sign_response=True), in_response_to=None)
    assert not root.xpath("//@InResponseTo")


def test_response_without_attributes_has_no_attribute_statement() -> None:
    root = response_xml(sp_config(attribute_mapping={}))
    assert not root.xpath("//saml:AttributeStatement", namespaces=NS)


def test_error_response_is_signed_at_response_level_without_assertion() -> None:
    encoded = error_response(
        REQUEST_DENIED, sp=sp_config(), idp=IDP, key=idp_key(), in_response_to="_r", now=ISSUED
    )
    root = etree.fromstring(base64.b64decode(encoded))
    assert root.get("Destination") == ACS_URL and root.get("InResponseTo") == "_r"
    assert root[1].tag == f"{{{c.DS_NS}}}Signature"
    code = one(root, "samlp:Status/samlp:StatusCode")
    assert code.get("Value") == c.STATUS_RESPONDER
    assert one(code, "samlp:StatusCode").get("Value") == c.STATUS_REQUEST_DENIED
    assert not root.xpath("//saml:Assertion", namespaces=NS)


# Keys -------------------------------------------------------------------------------------------


def test_signing_key_refuses_garbage_and_a_foreign_certificate() -> None:
    private_pem, certificate_pem = key_pair("idp")
    with pytest.raises(ValueError, match="cannot be loaded"):
        SigningKey.from_pem(b"not a key", certificate_pem)
    with pytest.raises(ValueError, match="does not belong"):
        SigningKey.from_pem(private_pem, key_pair("idp-rotated")[1])


# Policy answers ---------------------------------------------------------------------------------


def request(**attributes: str) -> AuthnRequest:
    xml = authn_request_xml(**attributes)
    return parse_authn_request(
        decode_post({"SAMLRequest": base64.b64encode(xml).decode()}),
        sp_config(),
        IDP,
        now=datetime.now(UTC),
        clock_skew=180,
    )


def test_name_id_policy_other_than_unspecified_or_configured_is_answered_invalid() -> None:
    parsed = request()
    sp = sp_config()
    assert sso_error(parsed, sp, has_session=True, achievable=PASSWORD_SIGN_IN) is None
    for allowed in (None, c.NAMEID_UNSPECIFIED, c.NAMEID_EMAIL):
        assert (
            sso_error(
                replace(parsed, name_id_format=allowed),
                sp,
                has_session=True,
                achievable=PASSWORD_SIGN_IN,
            )
            is None
        )
    assert (
        sso_error(
            replace(parsed, name_id_format=c.NAMEID_PERSISTENT),
            sp,
            has_session=True,
            achievable=PASSWORD_SIGN_IN,
        )
        is INVALID_NAMEID_POLICY
    )


def test_is_passive_without_a_usable_session_is_answered_no_passive() -> None:
    sp = sp_config()
    assert (
        sso_error(request(IsPassive="true"), sp, has_session=False, achievable=PASSWORD_SIGN_IN)
        is NO_PASSIVE
    )
    assert (
        sso_error(request(IsPassive="1"), sp, has_session=True, achievable=PASSWORD_SIGN_IN) is None
    )
    assert (
        sso_error(
            request(IsPassive="1", ForceAuthn="1"),
            sp,
            has_session=True,
            achievable=PASSWORD_SIGN_IN,
        )
        is NO_PASSIVE
    )
    assert (
        sso_error(request(ForceAuthn="true"), sp, has_session=False, achievable=PASSWORD_SIGN_IN)
        is None
    )


# LogoutResponse ---------------------------------------------------------------------------------


def test_logout_response_redirect_keeps_the_slo_url_query_and_signs_sha256() -> None:
    logout = LogoutRequest(
        id="_lr",
        issuer=SP_ENTITY_ID,
        issue_instant=ISSUED,
        destination=None,
        not_on_or_after=None,
        name_id=NameId("x", c.NAMEID_EMAIL),
        session_indexes=(),
    )
    sp = sp_config(slo_url=SP_SLO_URL + "?tenant=1")
    url = logout_response_redirect(
        logout, sp=sp, idp=IDP, key=idp_key(), relay_state=None, now=ISSUED
    )
    assert url.startswith(SP_SLO_URL + "?tenant=1&SAMLResponse=")
    params = parse_qs(urlsplit(url).query)
    assert params["SigAlg"] == [c.SIG_RSA_SHA256]
    assert "RelayState" not in params
    message = decode_redirect(urlsplit(url).query, param="SAMLResponse")
    root = etree.fromstring(message.xml)
    assert root.tag == f"{{{c.SAMLP_NS}}}LogoutResponse"
    assert root.get("InResponseTo") == "_lr" and root.get("Destination") == SP_SLO_URL + "?tenant=1"
    assert not root.xpath("//ds:Signature", namespaces=NS)

    posted = etree.fromstring(
        base64.b64decode(logout_response_post(logout, sp=sp, idp=IDP, key=idp_key(), now=ISSUED))
    )
    assert posted[1].tag == f"{{{c.DS_NS}}}Signature"
    with pytest.raises(ValueError, match="slo_url"):
        logout_response_post(logout, sp=sp_config(slo_url=None), idp=IDP, key=idp_key(), now=ISSUED)


def test_attribute_values_are_escaped_and_stripped_of_control_characters() -> None:
    user = replace(USER, name='Ada <b>&amp; "Lady"\x07', given_name="\x00\x1b")
    root = response_xml(sp_config(sign_response=True), user=user)
    name = one(root, "//saml:Attribute[@Name='displayName']/saml:AttributeValue")
    assert name.text == 'Ada <b>&amp; "Lady"'
    assert not root.xpath("//saml:Attribute[@Name='urn:oid:2.5.4.42']", namespaces=NS)
