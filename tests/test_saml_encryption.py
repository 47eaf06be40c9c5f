"""Encrypted assertions (CONTRACT §8) decrypted and accepted by python3-saml and pysaml2.

No server: the SAML core builds the Response; python3-saml (strict, ``wantAssertionsEncrypted``)
decrypts with python-xmlsec, pysaml2 with the ``xmlsec1`` 1.2 program. The SP's encryption key
pair is the test SP's key pair ``sp``.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from lxml import etree
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.response import StatusInvalidAuthnResponseStatement
from saml_core_helpers import (
    ACS_URL,
    IDP,
    SECRET,
    SIGN_FLAGS,
    USER,
    idp_cert,
    idp_key,
    key_pair,
    now,
    onelogin_request_data,
    onelogin_settings,
    pysaml2_client,
    sp_cert,
    sp_config,
)

from idp.saml import NameId, SpConfig, make_name_id, sso_response
from idp.saml import constants as c
from idp.saml.config import AES128_GCM, AES256_GCM
from idp.saml.encryption import (
    DIGEST_SHA1,
    RSA_OAEP_MGF1P,
    XENC_NS,
    encrypt_assertion,
    encryption_keys,
)
from idp.saml.signing import verify_enveloped

REQUEST_ID = "_request-encrypted-1"
SESSION_INDEX = "_session-index-encrypted"
FLAG_IDS = ["assertion", "response", "both"]
CONTENT = [AES256_GCM, AES128_GCM]
CONTENT_IDS = ["aes256-gcm", "aes128-gcm"]
ATTRIBUTES = {
    "email": ["ada@example.com"],
    "urn:oid:2.5.4.42": ["Ada"],
    "groups": ["admins", "engineering"],
    "urn:example:features": ["export", "sso"],
    "plan": ["pro"],
    "displayName": ["Ada Lovelace"],
}
XENC = f"{{{XENC_NS}}}"
DS = f"{{{c.DS_NS}}}"
ALLOWED_ALGORITHMS = {
    AES256_GCM,
    AES128_GCM,
    RSA_OAEP_MGF1P,
    DIGEST_SHA1,  # OAEP's digest, as xmlsec writes it; never a signature digest
    c.SIG_RSA_SHA256,
    c.DIGEST_SHA256,
    c.TRANSFORM_ENVELOPED,
    c.TRANSFORM_EXC_C14N,
}
REFUSED_FRAGMENTS = ("cbc", "tripledes", "des-", "rsa-1_5", 'xmlenc11#rsa-oaep"')
BASE64_VALUES = (
    f"{XENC}CipherValue",
    f"{DS}X509Certificate",
    f"{DS}SignatureValue",
    f"{DS}DigestValue",
)


def encrypted_sp(**changes: Any) -> SpConfig:
    return sp_config(encrypt_assertions=True, encryption_certificate=sp_cert(), **changes)


def build(sp: SpConfig, in_response_to: str | None = REQUEST_ID) -> tuple[str, NameId]:
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
        key=idp_key(),
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


def xml_of(saml_response: str) -> bytes:
    return base64.b64decode(saml_response)


def onelogin_response(
    sp: SpConfig, saml_response: str, decryption_key: str = "sp"
) -> OneLogin_Saml2_Response:
    settings = onelogin_settings(sp, wantAssertionsEncrypted=True)
    private_pem, certificate_pem = key_pair(decryption_key)
    settings["sp"]["privateKey"] = private_pem.decode()
    settings["sp"]["x509cert"] = certificate_pem.decode()
    return OneLogin_Saml2_Response(
        OneLogin_Saml2_Settings(settings, sp_validation_only=True), saml_response
    )


def decrypt(saml_response: str, decryption_key: str = "sp") -> etree._Element:
    """The decrypted Assertion, by python-xmlsec with the key pair ``decryption_key``."""
    root = etree.fromstring(xml_of(saml_response))
    data = root.find(f"{{{c.SAML_NS}}}EncryptedAssertion/{XENC}EncryptedData")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(key_pair(decryption_key)[0], xmlsec.KeyFormat.PEM))
    assertion: etree._Element = xmlsec.EncryptionContext(manager).decrypt(data)
    return assertion


# The SP stacks decrypt and accept ---------------------------------------------------


@pytest.mark.parametrize("content", CONTENT, ids=CONTENT_IDS)
@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_python3_saml_decrypts_and_accepts(
    sign_assertions: bool, sign_response: bool, content: str
) -> None:
    sp = encrypted_sp(
        sign_assertions=sign_assertions, sign_response=sign_response, content_encryption=content
    )
    saml_response, name_id = build(sp)

    response = onelogin_response(sp, saml_response)

    assert response.encrypted
    assert response.is_valid(onelogin_request_data(ACS_URL), REQUEST_ID), response.get_error()
    assert response.get_nameid() == name_id.value
    assert response.get_session_index() == SESSION_INDEX
    assert response.get_attributes() == ATTRIBUTES


def test_python3_saml_accepts_an_unsolicited_encrypted_response() -> None:
    sp = encrypted_sp(sign_assertions=True, sign_response=True)
    saml_response, name_id = build(sp, in_response_to=None)

    response = onelogin_response(sp, saml_response)

    assert response.is_valid(onelogin_request_data(ACS_URL)), response.get_error()
    assert response.get_nameid() == name_id.value


@pytest.mark.parametrize("content", CONTENT, ids=CONTENT_IDS)
@pytest.mark.parametrize(("sign_assertions", "sign_response"), SIGN_FLAGS, ids=FLAG_IDS)
def test_pysaml2_decrypts_and_accepts(
    sign_assertions: bool, sign_response: bool, content: str, tmp_path: Path
) -> None:
    sp = encrypted_sp(
        sign_assertions=sign_assertions, sign_response=sign_response, content_encryption=content
    )
    client = pysaml2_client(sp, tmp_path, decryption_key="sp")
    saml_response, name_id = build(sp)

    response = client.parse_authn_request_response(
        saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
    )

    assert response.name_id.text == name_id.value
    assert response.session_info()["session_index"] == SESSION_INDEX
    assert response.ava["email"] == ["ada@example.com"]
    assert response.ava["groups"] == ["admins", "engineering"]
    assert response.ava["urn:example:features"] == ["export", "sso"]


def test_the_decrypted_assertion_carries_a_valid_signature() -> None:
    """Signed, then encrypted: the plaintext is the signed assertion, verifiable on its own."""
    saml_response, name_id = build(encrypted_sp(sign_assertions=True, sign_response=False))

    assertion = decrypt(saml_response)

    assert assertion.tag == f"{{{c.SAML_NS}}}Assertion"
    assert assertion.getparent().tag == f"{{{c.SAML_NS}}}EncryptedAssertion"
    assert assertion.find(f"{DS}Signature") is not None
    assert OneLogin_Saml2_Utils.validate_sign(
        etree.tostring(assertion), idp_cert(), xpath="/saml:Assertion/ds:Signature"
    )
    verify_enveloped(assertion, idp_cert())
    assert assertion.findtext(f"{{{c.SAML_NS}}}Subject/{{{c.SAML_NS}}}NameID") == name_id.value


# What is written ------------------------------------------------------------------------


@pytest.mark.parametrize("content", CONTENT, ids=CONTENT_IDS)
def test_algorithms_are_aes_gcm_and_rsa_oaep_mgf1p_only(content: str) -> None:
    sp = encrypted_sp(sign_assertions=True, sign_response=True, content_encryption=content)
    xml = xml_of(build(sp)[0])
    root = etree.fromstring(xml)

    assert root.find(f"{{{c.SAML_NS}}}Assertion") is None
    assert not list(root.iter(f"{{{c.SAML_NS}}}Assertion"))
    assert [child.tag.split("}")[1] for child in root] == [
        "Issuer",
        "Signature",
        "Status",
        "EncryptedAssertion",
    ]
    (data,) = root.findall(f"{{{c.SAML_NS}}}EncryptedAssertion/{XENC}EncryptedData")
    assert data.get("Type") == "http://www.w3.org/2001/04/xmlenc#Element"
    assert data.find(f"{XENC}EncryptionMethod").get("Algorithm") == content
    (encrypted_key,) = data.findall(f"{DS}KeyInfo/{XENC}EncryptedKey")
    method = encrypted_key.find(f"{XENC}EncryptionMethod")
    assert method.get("Algorithm") == RSA_OAEP_MGF1P
    assert [d.get("Algorithm") for d in method.findall(f"{DS}DigestMethod")] == [DIGEST_SHA1]
    certificate = encrypted_key.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    assert "".join(certificate.split()) == "".join(sp_cert().splitlines()[1:-1])
    # The RSA-2048 encrypted session key, and the ciphertext: 12-byte IV + data + 16-byte tag.
    key_value = encrypted_key.findtext(f"{XENC}CipherData/{XENC}CipherValue")
    assert len(base64.b64decode(key_value)) == 256
    assert len(base64.b64decode(data.findtext(f"{XENC}CipherData/{XENC}CipherValue"))) > 28
    assert {e.get("Algorithm") for e in root.iter() if e.get("Algorithm")} <= ALLOWED_ALGORITHMS
    for element in root.iter(*BASE64_VALUES):
        element.text = ""  # random base64 text could hold any short fragment
    for element in root.iter():
        for name in ("ID", "InResponseTo", "URI", "SessionIndex"):  # random hex could too
            if name in element.attrib:
                element.set(name, "")
    markup = etree.tostring(root).decode().lower()
    for fragment in REFUSED_FRAGMENTS:
        assert fragment not in markup


def test_plaintext_appears_nowhere_in_the_encrypted_response() -> None:
    sp = encrypted_sp(sign_assertions=True, sign_response=True, name_id_format=c.NAMEID_PERSISTENT)
    saml_response, name_id = build(sp)
    xml = xml_of(saml_response)

    hidden = [
        name_id.value,
        USER.id,
        "ada@example.com",
        "Ada Lovelace",
        "engineering",
        "admins",
        "export",
        SESSION_INDEX,
        "urn:oid:2.5.4.42",
        "displayName",
        c.AUTHN_PASSWORD_PROTECTED,
        sp.entity_id,  # the Audience: only inside the assertion
    ]
    for secret in hidden:
        assert secret.encode() not in xml, secret
        assert secret not in saml_response, secret
    assert b"AttributeStatement" not in xml
    assert b"NameID" not in xml
    assert name_id.value in etree.tostring(decrypt(saml_response)).decode()


def test_every_response_has_its_own_session_key() -> None:
    assertion = etree.fromstring(f'<saml:Assertion xmlns:saml="{c.SAML_NS}" ID="_a"/>')

    first = encrypt_assertion(assertion, sp_cert(), AES256_GCM)
    second = encrypt_assertion(assertion, sp_cert(), AES256_GCM)

    values = [[v.text for v in e.iter(f"{XENC}CipherValue")] for e in (first, second)]
    assert values[0][0] != values[1][0] and values[0][1] != values[1][1]
    assert assertion.getparent() is None  # the caller's element is left alone


# Only the SP's key decrypts ------------------------------------------------------------


def test_another_key_does_not_decrypt(tmp_path: Path) -> None:
    """Encrypted for SP ``sp``: neither stack holding another SP's key reads it."""
    sp = encrypted_sp(sign_assertions=True, sign_response=False)
    saml_response, _ = build(sp)

    with pytest.raises(xmlsec.Error):
        decrypt(saml_response, decryption_key="sp-other")
    with pytest.raises(xmlsec.Error):
        onelogin_response(sp, saml_response, decryption_key="sp-other")
    client = pysaml2_client(sp, tmp_path, decryption_key="sp-other")
    assert_nothing_asserted(client, saml_response)
    # For the other SP's certificate, the other SP's key decrypts.
    other = sp_config(
        encrypt_assertions=True, encryption_certificate=key_pair("sp-other")[1].decode()
    )
    assert decrypt(build(other)[0], decryption_key="sp-other").get("ID")


def test_a_changed_ciphertext_is_refused(tmp_path: Path) -> None:
    """Only the assertion is signed: the GCM tag is what catches a change to the ciphertext."""
    sp = encrypted_sp(sign_assertions=True, sign_response=False)
    root = etree.fromstring(xml_of(build(sp)[0]))
    value = root.find(f".//{XENC}EncryptedData/{XENC}CipherData/{XENC}CipherValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[20] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    forged = base64.b64encode(etree.tostring(root)).decode()

    with pytest.raises(xmlsec.Error):
        onelogin_response(sp, forged)
    assert_nothing_asserted(pysaml2_client(sp, tmp_path, decryption_key="sp"), forged)


def assert_nothing_asserted(client: Saml2Client, saml_response: str) -> None:
    """pysaml2 skips an EncryptedAssertion no key of its decrypts: no subject, no attributes."""
    response = client.parse_authn_request_response(
        saml_response, BINDING_HTTP_POST, outstanding={REQUEST_ID: "/"}
    )
    assert response.assertion is None
    assert response.name_id is None
    assert response.ava == {}
    with pytest.raises(StatusInvalidAuthnResponseStatement):
        response.session_info()


# The recipient key -----------------------------------------------------------------------


def test_the_recipient_key_is_loaded_once_per_certificate() -> None:
    assert encryption_keys(sp_cert()) is encryption_keys(sp_cert())
    assert encryption_keys(sp_cert()) is not encryption_keys(key_pair("sp-other")[1].decode())


@pytest.mark.parametrize(
    "certificate",
    ["not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_an_unreadable_certificate_is_refused(certificate: str) -> None:
    assertion = etree.fromstring(f'<saml:Assertion xmlns:saml="{c.SAML_NS}" ID="_a"/>')
    with pytest.raises(ValueError, match="cannot be read"):
        encrypt_assertion(assertion, certificate, AES256_GCM)


def test_a_non_rsa_certificate_is_refused() -> None:
    """RSA-OAEP key transport needs an RSA key; an EC certificate cannot receive one."""
    assertion = etree.fromstring(f'<saml:Assertion xmlns:saml="{c.SAML_NS}" ID="_a"/>')
    with pytest.raises(ValueError, match="RSA"):
        encrypt_assertion(assertion, key_pair("sp-ec", "ec")[1].decode(), AES256_GCM)


def test_only_aes_gcm_content_encryption() -> None:
    assertion = etree.fromstring(f'<saml:Assertion xmlns:saml="{c.SAML_NS}" ID="_a"/>')
    with pytest.raises(ValueError, match="unsupported"):
        encrypt_assertion(assertion, sp_cert(), "http://www.w3.org/2001/04/xmlenc#aes256-cbc")
    with pytest.raises(ValueError, match="needs an encryption certificate"):
        sp_config(encrypt_assertions=True)
