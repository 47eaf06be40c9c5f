"""Our Responses and LogoutResponses consumed by python3-saml and pysaml2; their requests parsed.

No server: the SAML core is called directly, the third-party SP stacks verify signatures with
our certificate (python3-saml in strict mode, pysaml2 with its default xmlsec1 backend).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.response import StatusInvalidNameidPolicy, StatusNoPassive, StatusRequestDenied
from saml2.saml import NameID
from saml2.sigver import SignatureError
from saml_core_helpers import (
    ACS_URL,
    IDP,
    NAMEID_FORMATS,
    SECRET,
    SIGN_FLAGS,
    SKEW,
    SP_SLO_URL,
    USER,
    idp_cert,
    idp_key,
    key_pair,
    now,
    onelogin_request_data,
    onelogin_settings,
    pysaml2_client,
    query_of,
    query_params,
    sp_cert,
    sp_config,
)

from idp.saml import (
    INVALID_NAMEID_POLICY,
    NO_PASSIVE,
    REQUEST_DENIED,
    ErrorStatus,
    NameId,
    SamlRefusal,
    SigningKey,
    SpConfig,
    decode_post,
    decode_redirect,
    error_response,
    logout_response_post,
    logout_response_redirect,
    make_name_id,
    parse_authn_request,
    parse_logout_request,
    sso_response,
)
from idp.saml import constants as c

REQUEST_ID = "_request-0123456789"
SESSION_INDEX = "_session-index-1"


def build(
    sp: SpConfig, in_response_to: str | None = REQUEST_ID, key: SigningKey | None = None
) -> tuple[str, NameId]:
    """A base64 SAMLResponse for USER and the NameID it asserts."""
    issued = now()
    name_id = make_name_id(
        sp.name_id_format,
        user_id=USER.id,
        email=USER.email,
        sp_entity_id=sp.entity_id,
        idp_entity_id=IDP.entity_id,
        secret=SECRET,
    )
    saml_response = sso_response(
        sp=sp,
        idp=IDP,
        key=key or idp_key(),
        user=USER,
        name_id=name_id,
        session_index=SESSION_INDEX,
        authn_instant=issued - timedelta(minutes=5),
        session_not_on_or_after=issued + timedelta(hours=8),
        in_response_to=in_response_to,
        now=issued,
        assertion_ttl=300,
        authn_context_class=c.AUTHN_PASSWORD_PROTECTED,
    )
    return saml_response, name_id


def onelogin_response(
    sp: SpConfig, saml_response: str, idp_certificate: str | None = None
) -> OneLogin_Saml2_Response:
    settings = OneLogin_Saml2_Settings(
        onelogin_settings(sp, idp_certificate=idp_certificate), sp_validation_only=True
    )
    return OneLogin_Saml2_Response(settings, saml_response)


def tamper(saml_response: str) -> str:
    """The same Response with the asserted email changed after signing."""
    xml = base64.b64decode(saml_response).replace(b"ada@example.com", b"eve@example.com")
    return base64.b64encode(xml).decode()


FLAG_IDS = ["assertion", "response", "both"]


@pytest.mark.parametrize("name_id_format", NAMEID_FORMATS)
@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_python3_saml_accepts_our_response(
    sign_assertions: bool, sign_response: bool, name_id_format: str
) -> None:
    sp = sp_config(
        sign_assertions=sign_assertions, sign_response=sign_response, name_id_format=name_id_format
    )
    saml_response, name_id = build(sp)
    response = onelogin_response(sp, saml_response)

    assert response.is_valid(onelogin_request_data(ACS_URL), REQUEST_ID), response.get_error()
    assert response.get_nameid() == name_id.value
    assert response.get_nameid_format() == name_id_format
    assert response.get_session_index() == SESSION_INDEX
    assert response.get_attributes() == {
        "email": ["ada@example.com"],
        "urn:oid:2.5.4.42": ["Ada"],
        "groups": ["admins", "engineering"],
        "urn:example:features": ["export", "sso"],
        "plan": ["pro"],
        "displayName": ["Ada Lovelace"],
    }
    forged = onelogin_response(sp, tamper(saml_response))
    assert not forged.is_valid(onelogin_request_data(ACS_URL), REQUEST_ID)


@pytest.mark.parametrize("name_id_format", NAMEID_FORMATS)
@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_pysaml2_accepts_our_response(
    sign_assertions: bool, sign_response: bool, name_id_format: str, tmp_path: Path
) -> None:
    sp = sp_config(
        sign_assertions=sign_assertions, sign_response=sign_response, name_id_format=name_id_format
    )
    client = pysaml2_client(sp, tmp_path)
    saml_response, name_id = build(sp)

    response = client.parse_authn_request_response(
        saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
    )

    assert response.name_id.text == name_id.value
    assert response.name_id.format == name_id_format
    assert response.session_info()["session_index"] == SESSION_INDEX
    assert response.ava["groups"] == ["admins", "engineering"]
    assert response.ava["urn:example:features"] == ["export", "sso"]
    assert response.ava["email"] == ["ada@example.com"]
    with pytest.raises(SignatureError):
        client.parse_authn_request_response(
            tamper(saml_response), BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
        )


def test_idp_initiated_response_is_accepted_unsolicited(tmp_path: Path) -> None:
    sp = sp_config(sign_assertions=True, sign_response=True)
    saml_response, name_id = build(sp, in_response_to=None)

    response = onelogin_response(sp, saml_response)
    assert response.is_valid(onelogin_request_data(ACS_URL)), response.get_error()
    assert "InResponseTo" not in base64.b64decode(saml_response).decode()
    parsed = pysaml2_client(sp, tmp_path).parse_authn_request_response(
        saml_response, BINDING_HTTP_POST, outstanding={}
    )
    assert parsed.name_id.text == name_id.value


def test_response_signed_by_another_key_is_rejected(tmp_path: Path) -> None:
    """After a certificate rotation, SPs holding only the old certificate reject new responses."""
    sp = sp_config(sign_assertions=True, sign_response=True)
    rotated = SigningKey.from_pem(*key_pair("idp-rotated"))
    saml_response, _ = build(sp, key=rotated)

    assert not onelogin_response(sp, saml_response).is_valid(
        onelogin_request_data(ACS_URL), REQUEST_ID
    )
    with pytest.raises(SignatureError):
        pysaml2_client(sp, tmp_path).parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
        )
    new_certificate = key_pair("idp-rotated")[1].decode()
    accepted = onelogin_response(sp, saml_response, idp_certificate=new_certificate)
    assert accepted.is_valid(onelogin_request_data(ACS_URL), REQUEST_ID), accepted.get_error()


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (NO_PASSIVE, StatusNoPassive),
        (INVALID_NAMEID_POLICY, StatusInvalidNameidPolicy),
        (REQUEST_DENIED, StatusRequestDenied),
    ],
)
def test_error_response_is_signed_and_carries_the_status(
    error: ErrorStatus, raised: type[Exception], tmp_path: Path
) -> None:
    sp = sp_config(sign_assertions=True, sign_response=False)
    saml_response = error_response(
        error, sp=sp, idp=IDP, key=idp_key(), in_response_to=REQUEST_ID, now=now()
    )
    xml = base64.b64decode(saml_response)

    assert OneLogin_Saml2_Utils.validate_sign(xml, idp_cert())
    status = OneLogin_Saml2_Utils.get_status(etree.fromstring(xml))
    assert status == {"code": error.top, "msg": error.message}
    assert error.code.encode() in xml
    client = pysaml2_client(sp, tmp_path)
    with pytest.raises(raised):
        client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
        )
    assert not OneLogin_Saml2_Utils.validate_sign(
        xml.replace(error.message.encode(), b"Signed in."), idp_cert()
    )


# Requests signed by the SP stacks ----------------------------------------------------


def signed_sp() -> SpConfig:
    return sp_config(sp_certificate=sp_cert(), want_authn_requests_signed=True)


def test_python3_saml_redirect_request_signed_sha256_is_accepted() -> None:
    sp = signed_sp()
    auth = OneLogin_Saml2_Auth(
        onelogin_request_data(ACS_URL), onelogin_settings(sp, authnRequestsSigned=True)
    )
    url = auth.login(return_to="https://sp.example.com/after?x=1&y=2")
    assert query_params(url)["SigAlg"] == c.SIG_RSA_SHA256

    message = decode_redirect(query_of(url))
    request = parse_authn_request(message, sp, IDP, now=now(), clock_skew=SKEW)

    assert request.id == auth.get_last_request_id()
    assert request.acs_url == ACS_URL
    assert request.name_id_format == sp.name_id_format
    assert message.relay_state == "https://sp.example.com/after?x=1&y=2"


def test_python3_saml_post_request_signed_is_accepted() -> None:
    sp = signed_sp()
    sp_key, sp_certificate = key_pair("sp")
    settings = OneLogin_Saml2_Settings(onelogin_settings(sp), sp_validation_only=True)
    unsigned = OneLogin_Saml2_Authn_Request(settings).get_xml()
    signed = OneLogin_Saml2_Utils.add_sign(
        unsigned,
        sp_key.decode(),
        sp_certificate.decode(),
        sign_algorithm=c.SIG_RSA_SHA256,
        digest_algorithm="http://www.w3.org/2001/04/xmlenc#sha256",
    )

    request = parse_authn_request(
        decode_post({"SAMLRequest": base64.b64encode(signed).decode()}),
        sp,
        IDP,
        now=now(),
        clock_skew=SKEW,
    )
    assert request.issuer == sp.entity_id


@pytest.mark.parametrize("sha256", [True, False], ids=["sha256", "sha1-default"])
def test_pysaml2_redirect_request_signed_is_accepted(sha256: bool, tmp_path: Path) -> None:
    sp = signed_sp()
    client = pysaml2_client(sp, tmp_path, sha256=sha256, sign_requests=True)
    request_id, info = client.prepare_for_authenticate(
        entityid=IDP.entity_id, relay_state="state-1", binding=BINDING_HTTP_REDIRECT, sign=True
    )
    url = dict(info["headers"])["Location"]
    assert query_params(url)["SigAlg"] == (c.SIG_RSA_SHA256 if sha256 else c.SIG_RSA_SHA1)

    request = parse_authn_request(
        decode_redirect(query_of(url)), sp, IDP, now=now(), clock_skew=SKEW
    )
    assert request.id == request_id

    other = signed_sp_with_other_certificate()
    with pytest.raises(SamlRefusal) as refused:
        parse_authn_request(decode_redirect(query_of(url)), other, IDP, now=now(), clock_skew=SKEW)
    assert refused.value.reason == "signature_invalid"


@pytest.mark.parametrize("sha256", [True, False], ids=["sha256", "sha1-default"])
def test_pysaml2_post_request_signed_is_accepted(sha256: bool, tmp_path: Path) -> None:
    sp = signed_sp()
    client = pysaml2_client(sp, tmp_path, sha256=sha256, sign_requests=True)
    request_id, xml = client.create_authn_request(IDP.sso_url, sign=True)
    algorithm = c.SIG_RSA_SHA256 if sha256 else c.SIG_RSA_SHA1
    assert f'Algorithm="{algorithm}"' in str(xml)
    form = {"SAMLRequest": base64.b64encode(str(xml).encode()).decode()}

    assert (
        parse_authn_request(decode_post(form), sp, IDP, now=now(), clock_skew=SKEW).id == request_id
    )
    with pytest.raises(SamlRefusal) as refused:
        parse_authn_request(
            decode_post(form), signed_sp_with_other_certificate(), IDP, now=now(), clock_skew=SKEW
        )
    assert refused.value.reason == "signature_invalid"


def signed_sp_with_other_certificate() -> SpConfig:
    return sp_config(
        sp_certificate=key_pair("sp-other")[1].decode(), want_authn_requests_signed=True
    )


# Single Logout ------------------------------------------------------------------------


def test_python3_saml_redirect_logout_round_trip() -> None:
    sp = signed_sp()
    settings = onelogin_settings(sp, logoutRequestSigned=True, wantMessagesSigned=True)
    auth = OneLogin_Saml2_Auth(onelogin_request_data(ACS_URL), settings)
    url = auth.logout(
        return_to="https://sp.example.com/bye",
        name_id="ada@example.com",
        session_index=SESSION_INDEX,
        name_id_format=c.NAMEID_EMAIL,
    )
    message = decode_redirect(query_of(url))
    logout = parse_logout_request(message, sp, IDP, now=now(), clock_skew=SKEW)
    assert logout.name_id.value == "ada@example.com"
    assert logout.session_indexes == (SESSION_INDEX,)

    answer = logout_response_redirect(
        logout, sp=sp, idp=IDP, key=idp_key(), relay_state=message.relay_state, now=now()
    )
    assert answer.startswith(SP_SLO_URL + "?SAMLResponse=")
    assert query_params(answer)["RelayState"] == "https://sp.example.com/bye"
    sp_side = OneLogin_Saml2_Auth(onelogin_request_data(SP_SLO_URL, query_of(answer)), settings)
    sp_side.process_slo(request_id=logout.id, delete_session_cb=lambda: None)
    assert sp_side.get_errors() == [], sp_side.get_last_error_reason()

    forged = answer.replace("RelayState=https", "RelayState=http")
    sp_side = OneLogin_Saml2_Auth(onelogin_request_data(SP_SLO_URL, query_of(forged)), settings)
    sp_side.process_slo(request_id=logout.id, delete_session_cb=lambda: None)
    assert "invalid_logout_response_signature" in sp_side.get_errors()


def test_pysaml2_post_logout_round_trip(tmp_path: Path) -> None:
    sp = signed_sp()
    client = pysaml2_client(sp, tmp_path, sign_requests=True)
    name_id = NameID(format=c.NAMEID_PERSISTENT, text="opaque-1")
    request_id, request = client.create_logout_request(
        IDP.slo_url, IDP.entity_id, name_id=name_id, session_indexes=[SESSION_INDEX], sign=True
    )
    xml = str(request).encode()
    assert b"Signature" in xml

    logout = parse_logout_request(
        decode_post({"SAMLRequest": base64.b64encode(xml).decode(), "RelayState": "r"}),
        sp,
        IDP,
        now=now(),
        clock_skew=SKEW,
    )
    assert logout.id == request_id
    assert logout.name_id == NameId("opaque-1", c.NAMEID_PERSISTENT)

    answer = logout_response_post(logout, sp=sp, idp=IDP, key=idp_key(), now=now())
    answer_xml = base64.b64decode(answer)
    assert client.sec.correctly_signed_logout_response(answer_xml, must=True)
    parsed = client.parse_logout_request_response(answer, BINDING_HTTP_POST)
    assert parsed.response.in_response_to == request_id
    assert parsed.response.destination == SP_SLO_URL
    assert parsed.status_ok()
    with pytest.raises(SignatureError):
        client.sec.correctly_signed_logout_response(
            answer_xml.replace(b"status:Success", b"status:Requester"), must=True
        )
