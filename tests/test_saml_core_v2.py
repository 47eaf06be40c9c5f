"""Service contract v2 in the SAML core: the request's Subject, the authentication context
and the LogoutResponse status. Unit level, no server."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST
from saml2.response import StatusNoAuthnContext, StatusUnknownPrincipal
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext
from saml2.sigver import SignatureError
from saml_core_helpers import (
    ACS_URL,
    IDP,
    SECRET,
    SKEW,
    SP_ENTITY_ID,
    SP_SLO_URL,
    USER,
    authn_request_xml,
    idp_cert,
    idp_key,
    now,
    onelogin_request_data,
    onelogin_settings,
    pysaml2_client,
    query_of,
    sp_config,
)

from idp.saml import (
    INVALID_NAMEID_POLICY,
    NO_AUTHN_CONTEXT,
    NO_PASSIVE,
    PASSWORD_SIGN_IN,
    SECOND_FACTOR_SIGN_IN,
    UNKNOWN_PRINCIPAL,
    AuthnRequest,
    LogoutRequest,
    NameId,
    RequestedContext,
    SamlRefusal,
    SpConfig,
    choose_class,
    decode_post,
    decode_redirect,
    error_response,
    logout_matches,
    logout_response_post,
    logout_response_redirect,
    make_name_id,
    parse_authn_request,
    read_authn,
    sso_error,
    sso_response,
    subject_matches,
)
from idp.saml import constants as c
from idp.saml.authn_context import MFA, PASSWORD, PASSWORD_PROTECTED_TRANSPORT, UNSPECIFIED

NS = {"samlp": c.SAMLP_NS, "saml": c.SAML_NS}
PPT = PASSWORD_PROTECTED_TRANSPORT
UNKNOWN_CLASS = "urn:example:ac:classes:retina"
REQUEST_ID = "_authn-request-1"
SESSION_INDEX = "_session-index-1"


def read(extra: str = "", **attributes: str) -> AuthnRequest:
    """An AuthnRequest with ``extra`` elements after its Issuer, read without judging it."""
    xml = authn_request_xml(extra=extra, **attributes)
    return read_authn(decode_post({"SAMLRequest": base64.b64encode(xml).decode()})).request


def refusal(extra: str) -> SamlRefusal:
    with pytest.raises(SamlRefusal) as refused:
        read(extra)
    return refused.value


def subject(name_id: str) -> str:
    return f"<saml:Subject>{name_id}</saml:Subject>"


def context(*class_refs: str, comparison: str | None = None, decl_refs: str = "") -> str:
    attribute = "" if comparison is None else f' Comparison="{comparison}"'
    refs = "".join(
        f"<saml:AuthnContextClassRef>{ref}</saml:AuthnContextClassRef>" for ref in class_refs
    )
    return (
        f"<samlp:RequestedAuthnContext{attribute}>{refs}{decl_refs}</samlp:RequestedAuthnContext>"
    )


def issued_name_id(sp: SpConfig) -> NameId:
    return make_name_id(
        sp.name_id_format,
        user_id=USER.id,
        email=USER.email,
        sp_entity_id=sp.entity_id,
        idp_entity_id=IDP.entity_id,
        secret=SECRET,
    )


# Subject ------------------------------------------------------------------------------------


def test_subject_name_id_is_read_with_its_format_and_qualifiers() -> None:
    request = read(
        subject(
            f'<saml:NameID Format="{c.NAMEID_PERSISTENT}" NameQualifier="{IDP.entity_id}" '
            f'SPNameQualifier="{SP_ENTITY_ID}"> opaque-1\n</saml:NameID>'
            f'<saml:SubjectConfirmation Method="{c.CONFIRMATION_BEARER}"/>'
        )
    )
    assert request.subject == NameId("opaque-1", c.NAMEID_PERSISTENT, IDP.entity_id, SP_ENTITY_ID)


def test_subject_without_format_is_unspecified_and_absent_subject_is_none() -> None:
    request = read(subject("<saml:NameID>ada@example.com</saml:NameID>"))
    assert request.subject == NameId("ada@example.com", c.NAMEID_UNSPECIFIED)
    assert read().subject is None


def test_python3_saml_subject_and_requested_context_are_read() -> None:
    sp = sp_config()
    settings = OneLogin_Saml2_Settings(
        onelogin_settings(
            sp, requestedAuthnContext=[PASSWORD], requestedAuthnContextComparison="minimum"
        ),
        sp_validation_only=True,
    )
    xml = OneLogin_Saml2_Authn_Request(settings, name_id_value_req="Ada@Example.com").get_xml()
    xml = xml.encode()
    request = read_authn(decode_post({"SAMLRequest": base64.b64encode(xml).decode()})).request

    assert request.subject is not None
    assert request.subject.value == "Ada@Example.com"
    assert subject_matches(request.subject, issued_name_id(sp), USER.email)
    assert request.requested_context == RequestedContext("minimum", (PASSWORD,))
    assert choose_class(request.requested_context, PASSWORD_SIGN_IN) == PPT


@pytest.mark.parametrize(
    "extra",
    [
        subject("<saml:NameID>a</saml:NameID>") + subject("<saml:NameID>b</saml:NameID>"),
        subject("<saml:NameID>a</saml:NameID><saml:NameID>b</saml:NameID>"),
    ],
    ids=["two-subjects", "two-nameids"],
)
def test_more_than_one_subject_or_name_id_is_refused(extra: str) -> None:
    refused = refusal(extra)
    assert refused.reason == "malformed"
    assert "more than one" in refused.message


@pytest.mark.parametrize(
    "inner",
    [
        "<saml:EncryptedID><xenc:EncryptedData xmlns:xenc='http://www.w3.org/2001/04/xmlenc#'/>"
        "</saml:EncryptedID>",
        '<saml:BaseID xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="x"/>',
        f'<saml:SubjectConfirmation Method="{c.CONFIRMATION_BEARER}"/>',
    ],
    ids=["encrypted-id", "base-id", "confirmation-only"],
)
def test_subject_without_a_plain_name_id_is_refused(inner: str) -> None:
    refused = refusal(subject(inner))
    assert refused.reason == "malformed"
    assert "Subject has no plain NameID" in refused.message


def test_subject_name_id_holding_markup_is_refused() -> None:
    assert refusal(subject("<saml:NameID>ada<!---->@example.com</saml:NameID>")).reason == (
        "malformed"
    )


EMAIL_ISSUED = NameId(USER.email, c.NAMEID_EMAIL)
PERSISTENT_ISSUED = NameId("opaque-1", c.NAMEID_PERSISTENT, IDP.entity_id, SP_ENTITY_ID)


@pytest.mark.parametrize(
    ("requested", "issued", "expected"),
    [
        (NameId(USER.email, c.NAMEID_EMAIL), EMAIL_ISSUED, True),
        (NameId(" ADA@example.COM ", c.NAMEID_EMAIL), EMAIL_ISSUED, True),
        (NameId("Ada@Example.com", c.NAMEID_UNSPECIFIED), PERSISTENT_ISSUED, True),
        (NameId("opaque-1", c.NAMEID_PERSISTENT), PERSISTENT_ISSUED, True),
        (NameId("opaque-1", c.NAMEID_UNSPECIFIED), PERSISTENT_ISSUED, True),
        (NameId("OPAQUE-1", c.NAMEID_PERSISTENT), PERSISTENT_ISSUED, False),
        (NameId(USER.email, c.NAMEID_PERSISTENT), PERSISTENT_ISSUED, False),
        (NameId(USER.email, c.NAMEID_TRANSIENT), PERSISTENT_ISSUED, False),
        (NameId("eve@example.com", c.NAMEID_EMAIL), EMAIL_ISSUED, False),
        (NameId(USER.id, c.NAMEID_UNSPECIFIED), NameId(USER.id, c.NAMEID_UNSPECIFIED), True),
        (NameId("ädä@example.com", c.NAMEID_EMAIL), EMAIL_ISSUED, False),
        (NameId("", c.NAMEID_EMAIL), NameId("", c.NAMEID_EMAIL), False),
    ],
)
def test_subject_matches(requested: NameId, issued: NameId, expected: bool) -> None:
    assert subject_matches(requested, issued, USER.email) is expected


# RequestedAuthnContext -----------------------------------------------------------------------


def test_requested_context_is_absent_by_default_and_exact_without_comparison() -> None:
    assert read().requested_context is None
    assert read(context(MFA, PPT)).requested_context == RequestedContext("exact", (MFA, PPT))


@pytest.mark.parametrize("comparison", ["exact", "minimum", "better", "maximum"])
def test_each_comparison_is_read(comparison: str) -> None:
    request = read(context(PASSWORD, UNKNOWN_CLASS, comparison=comparison))
    assert request.requested_context == RequestedContext(comparison, (PASSWORD, UNKNOWN_CLASS))


@pytest.mark.parametrize("comparison", ["Exact", "at-least", " minimum", ""])
def test_unknown_comparison_is_refused(comparison: str) -> None:
    refused = refusal(context(PPT, comparison=comparison))
    assert refused.reason == "malformed"
    assert "Comparison" in refused.message


def test_decl_ref_only_gives_no_class_and_empty_or_repeated_contexts_are_refused() -> None:
    decl = "<saml:AuthnContextDeclRef>urn:example:decl</saml:AuthnContextDeclRef>"
    requested = read(context(decl_refs=decl)).requested_context
    assert requested == RequestedContext("exact", ())
    assert choose_class(requested, SECOND_FACTOR_SIGN_IN) is None
    assert refusal(context()).reason == "malformed"
    assert "more than one" in refusal(context(PPT) + context(PPT)).message


@pytest.mark.parametrize(
    ("comparison", "class_refs", "achieved", "expected"),
    [
        # no RequestedAuthnContext: the strongest achieved class
        (None, (), PASSWORD_SIGN_IN, PPT),
        (None, (), SECOND_FACTOR_SIGN_IN, MFA),
        (None, (), (UNKNOWN_CLASS, PPT), PPT),
        (None, (), (), None),
        # exact: the first requested class (request order) that is achieved
        ("exact", (PPT,), PASSWORD_SIGN_IN, PPT),
        ("exact", (MFA,), PASSWORD_SIGN_IN, None),
        ("exact", (PASSWORD,), PASSWORD_SIGN_IN, PASSWORD),
        ("exact", (UNSPECIFIED,), PASSWORD_SIGN_IN, UNSPECIFIED),
        ("exact", (MFA, PPT), PASSWORD_SIGN_IN, PPT),
        ("exact", (MFA, PPT), SECOND_FACTOR_SIGN_IN, MFA),
        ("exact", (PPT, MFA), SECOND_FACTOR_SIGN_IN, PPT),
        ("exact", (PPT,), SECOND_FACTOR_SIGN_IN, PPT),
        ("exact", (PASSWORD,), (PPT,), None),
        ("exact", (UNKNOWN_CLASS,), (UNKNOWN_CLASS, PPT), None),
        ("exact", (), PASSWORD_SIGN_IN, None),
        # minimum: the strongest achieved class at least as strong as the weakest requested
        ("minimum", (PASSWORD,), PASSWORD_SIGN_IN, PPT),
        ("minimum", (PPT,), PASSWORD_SIGN_IN, PPT),
        ("minimum", (MFA,), PASSWORD_SIGN_IN, None),
        ("minimum", (MFA, PASSWORD), PASSWORD_SIGN_IN, PPT),
        ("minimum", (PPT,), SECOND_FACTOR_SIGN_IN, MFA),
        ("minimum", (UNSPECIFIED,), PASSWORD_SIGN_IN, PPT),
        ("minimum", (UNKNOWN_CLASS,), PASSWORD_SIGN_IN, None),
        ("minimum", (UNKNOWN_CLASS, PPT), PASSWORD_SIGN_IN, PPT),
        # better: stronger than the weakest requested
        ("better", (PASSWORD,), PASSWORD_SIGN_IN, PPT),
        ("better", (PPT,), PASSWORD_SIGN_IN, None),
        ("better", (PPT,), SECOND_FACTOR_SIGN_IN, MFA),
        ("better", (MFA,), SECOND_FACTOR_SIGN_IN, None),
        # maximum: the strongest achieved class no stronger than the strongest requested
        ("maximum", (PPT,), SECOND_FACTOR_SIGN_IN, PPT),
        ("maximum", (PASSWORD,), PASSWORD_SIGN_IN, PASSWORD),
        ("maximum", (UNSPECIFIED,), PASSWORD_SIGN_IN, UNSPECIFIED),
        ("maximum", (PASSWORD, MFA), PASSWORD_SIGN_IN, PPT),
        ("maximum", (PASSWORD,), (PPT,), None),
        ("maximum", (UNKNOWN_CLASS,), PASSWORD_SIGN_IN, None),
    ],
)
def test_choose_class(
    comparison: str | None, class_refs: tuple[str, ...], achieved: tuple[str, ...], expected: str
) -> None:
    requested = None if comparison is None else RequestedContext(comparison, class_refs)
    assert choose_class(requested, achieved) == expected


def test_choose_class_rejects_a_comparison_the_reader_never_makes() -> None:
    with pytest.raises(ValueError, match="Comparison"):
        choose_class(RequestedContext("at-least", (PPT,)), PASSWORD_SIGN_IN)


# sso_error ---------------------------------------------------------------------------------


def judged(extra: str = "", **attributes: str) -> AuthnRequest:
    xml = authn_request_xml(extra=extra, **attributes)
    return parse_authn_request(
        decode_post({"SAMLRequest": base64.b64encode(xml).decode()}),
        sp_config(),
        IDP,
        now=now(),
        clock_skew=SKEW,
    )


def test_sso_error_answers_no_authn_context_for_a_class_no_sign_in_reaches() -> None:
    sp = sp_config()
    for extra in (context(MFA), context(MFA, comparison="minimum"), context(UNKNOWN_CLASS)):
        request = judged(extra)
        assert sso_error(request, sp, has_session=True, achievable=PASSWORD_SIGN_IN) is (
            NO_AUTHN_CONTEXT
        )
        assert sso_error(request, sp, has_session=True, achievable=SECOND_FACTOR_SIGN_IN) is (
            None if UNKNOWN_CLASS not in extra else NO_AUTHN_CONTEXT
        )
    for extra in ("", context(PPT), context(PASSWORD), context(PASSWORD, comparison="minimum")):
        assert sso_error(judged(extra), sp, has_session=True, achievable=PASSWORD_SIGN_IN) is None
    assert NO_AUTHN_CONTEXT.top == c.STATUS_RESPONDER
    assert NO_AUTHN_CONTEXT.code == "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"


def test_sso_error_order_is_name_id_policy_then_authn_context_then_passive() -> None:
    sp = sp_config()
    both = replace(judged(context(MFA), IsPassive="true"), name_id_format=c.NAMEID_PERSISTENT)
    assert sso_error(both, sp, has_session=False, achievable=PASSWORD_SIGN_IN) is (
        INVALID_NAMEID_POLICY
    )
    passive = judged(context(MFA), IsPassive="true")
    assert sso_error(passive, sp, has_session=False, achievable=PASSWORD_SIGN_IN) is (
        NO_AUTHN_CONTEXT
    )
    fits = judged(context(PPT, comparison="minimum"), IsPassive="true")
    assert sso_error(fits, sp, has_session=False, achievable=PASSWORD_SIGN_IN) is NO_PASSIVE


def test_pysaml2_reads_our_no_authn_context_answer(tmp_path: Path) -> None:
    sp = sp_config()
    client = pysaml2_client(sp, tmp_path)
    request_id, xml = client.create_authn_request(
        IDP.sso_url,
        requested_authn_context=RequestedAuthnContext(
            authn_context_class_ref=[AuthnContextClassRef(text=MFA)], comparison="minimum"
        ),
    )
    request = parse_authn_request(
        decode_post({"SAMLRequest": base64.b64encode(str(xml).encode()).decode()}),
        sp,
        IDP,
        now=now(),
        clock_skew=SKEW,
    )
    assert request.requested_context == RequestedContext("minimum", (MFA,))
    error = sso_error(request, sp, has_session=True, achievable=PASSWORD_SIGN_IN)
    assert error is NO_AUTHN_CONTEXT

    answer = error_response(
        error, sp=sp, idp=IDP, key=idp_key(), in_response_to=request_id, now=now()
    )
    assert OneLogin_Saml2_Utils.validate_sign(base64.b64decode(answer), idp_cert())
    with pytest.raises(StatusNoAuthnContext):
        client.parse_authn_request_response(
            answer, BINDING_HTTP_POST, outstanding={request_id: "/"}
        )


# The Response's AuthnContextClassRef ---------------------------------------------------------


def build(sp: SpConfig, authn_context_class: str) -> str:
    issued = now()
    return sso_response(
        sp=sp,
        idp=IDP,
        key=idp_key(),
        user=USER,
        name_id=issued_name_id(sp),
        session_index=SESSION_INDEX,
        authn_instant=issued - timedelta(minutes=5),
        session_not_on_or_after=issued + timedelta(hours=8),
        in_response_to=REQUEST_ID,
        now=issued,
        assertion_ttl=300,
        authn_context_class=authn_context_class,
    )


@pytest.mark.parametrize("authn_class", [PASSWORD, PPT, MFA])
def test_response_asserts_the_given_class_and_verifies(authn_class: str, tmp_path: Path) -> None:
    sp = sp_config(sign_assertions=True, sign_response=True)
    saml_response = build(sp, authn_class)
    root = etree.fromstring(base64.b64decode(saml_response))
    refs = root.xpath(
        "//saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef", namespaces=NS
    )
    assert [ref.text for ref in refs] == [authn_class]

    settings = OneLogin_Saml2_Settings(onelogin_settings(sp), sp_validation_only=True)
    response = OneLogin_Saml2_Response(settings, saml_response)
    assert response.is_valid(onelogin_request_data(ACS_URL), REQUEST_ID), response.get_error()
    assert response.get_authn_contexts() == [authn_class]

    parsed = pysaml2_client(sp, tmp_path).parse_authn_request_response(
        saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
    )
    assert [info[0] for info in parsed.authn_info()] == [authn_class]


# LogoutResponse status and logout_matches -----------------------------------------------------


def logout_request(name_id: str = USER.email, *session_indexes: str) -> LogoutRequest:
    return LogoutRequest(
        id="_logout-request-1",
        issuer=SP_ENTITY_ID,
        issue_instant=now(),
        destination=IDP.slo_url,
        not_on_or_after=None,
        name_id=NameId(name_id, c.NAMEID_EMAIL),
        session_indexes=session_indexes,
    )


def status_codes(root: etree._Element) -> list[str]:
    return [
        code.get("Value") for code in root.xpath("samlp:Status//samlp:StatusCode", namespaces=NS)
    ]


def test_unknown_principal_is_requester_unknown_principal() -> None:
    assert UNKNOWN_PRINCIPAL.top == "urn:oasis:names:tc:SAML:2.0:status:Requester"
    assert UNKNOWN_PRINCIPAL.code == "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"


def test_redirect_logout_response_carries_unknown_principal_and_verifies() -> None:
    sp = sp_config()
    logout = logout_request(USER.email, SESSION_INDEX)
    url = logout_response_redirect(
        logout, sp=sp, idp=IDP, key=idp_key(), relay_state="r", now=now(), status=UNKNOWN_PRINCIPAL
    )
    root = etree.fromstring(decode_redirect(query_of(url), param="SAMLResponse").xml)
    assert status_codes(root) == [UNKNOWN_PRINCIPAL.top, UNKNOWN_PRINCIPAL.code]
    assert root.findtext("samlp:Status/samlp:StatusMessage", namespaces=NS) == (
        UNKNOWN_PRINCIPAL.message
    )

    settings = onelogin_settings(sp, wantMessagesSigned=True)
    sp_side = OneLogin_Saml2_Auth(onelogin_request_data(SP_SLO_URL, query_of(url)), settings)
    sp_side.process_slo(request_id=logout.id, delete_session_cb=lambda: None)
    assert sp_side.get_errors() == ["logout_not_success"], sp_side.get_last_error_reason()

    forged = url.replace("RelayState=r", "RelayState=s")
    sp_side = OneLogin_Saml2_Auth(onelogin_request_data(SP_SLO_URL, query_of(forged)), settings)
    sp_side.process_slo(request_id=logout.id, delete_session_cb=lambda: None)
    assert "invalid_logout_response_signature" in sp_side.get_errors()


def test_post_logout_response_carries_unknown_principal_and_verifies(tmp_path: Path) -> None:
    sp = sp_config()
    answer = logout_response_post(
        logout_request(), sp=sp, idp=IDP, key=idp_key(), now=now(), status=UNKNOWN_PRINCIPAL
    )
    xml = base64.b64decode(answer)
    assert status_codes(etree.fromstring(xml)) == [UNKNOWN_PRINCIPAL.top, UNKNOWN_PRINCIPAL.code]
    signature = "/samlp:LogoutResponse/ds:Signature"
    assert OneLogin_Saml2_Utils.validate_sign(xml, idp_cert(), xpath=signature)
    client = pysaml2_client(sp, tmp_path)
    assert client.sec.correctly_signed_logout_response(xml, must=True)
    with pytest.raises(StatusUnknownPrincipal):
        client.parse_logout_request_response(answer, BINDING_HTTP_POST)
    forged = xml.replace(b"status:UnknownPrincipal", b"status:RequestDenied")
    assert not OneLogin_Saml2_Utils.validate_sign(forged, idp_cert(), xpath=signature)
    with pytest.raises(SignatureError):
        client.sec.correctly_signed_logout_response(forged, must=True)


def test_logout_responses_are_success_without_a_status() -> None:
    sp = sp_config()
    posted = base64.b64decode(
        logout_response_post(logout_request(), sp=sp, idp=IDP, key=idp_key(), now=now())
    )
    assert status_codes(etree.fromstring(posted)) == [c.STATUS_SUCCESS]
    url = logout_response_redirect(
        logout_request(), sp=sp, idp=IDP, key=idp_key(), relay_state=None, now=now(), status=None
    )
    root = etree.fromstring(decode_redirect(query_of(url), param="SAMLResponse").xml)
    assert status_codes(root) == [c.STATUS_SUCCESS]


@pytest.mark.parametrize(
    ("name_id", "session_indexes", "expected"),
    [
        (USER.email, (), True),
        (USER.email, (SESSION_INDEX,), True),
        (USER.email, (SESSION_INDEX, SESSION_INDEX), True),
        (USER.email, ("_other",), False),
        (USER.email, (SESSION_INDEX, "_other"), False),
        ("ADA@example.com", (SESSION_INDEX,), False),
        ("eve@example.com", (), False),
        ("ädä@example.com", ("_séssion",), False),
    ],
)
def test_logout_matches(name_id: str, session_indexes: tuple[str, ...], expected: bool) -> None:
    request = logout_request(name_id, *session_indexes)
    assert logout_matches(request, USER.email, SESSION_INDEX) is expected
