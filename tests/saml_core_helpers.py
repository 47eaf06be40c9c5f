"""Keys, SP configurations and the two third-party SP stacks for the SAML core's unit tests."""

from __future__ import annotations

import base64
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig as Pysaml2SpConfig

from idp.saml import IdpEndpoints, SigningKey, SpConfig, UserInfo
from idp.saml import constants as c
from idp.saml.metadata import idp_metadata

SP_ENTITY_ID = "https://sp.example.com/saml/metadata"
ACS_URL = "https://sp.example.com/saml/acs"
SP_SLO_URL = "https://sp.example.com/saml/slo"
IDP = IdpEndpoints.of("https://idp.example.com", "acme", "app")
SECRET = b"0123456789abcdef0123456789abcdef-test"
SKEW = 180
ASSERTION_TTL = 300
NAMEID_FORMATS = (c.NAMEID_EMAIL, c.NAMEID_PERSISTENT, c.NAMEID_TRANSIENT, c.NAMEID_UNSPECIFIED)
SIGN_FLAGS = ((True, False), (False, True), (True, True))
MAPPING = {
    "email": "email",
    "given_name": "urn:oid:2.5.4.42",
    "family_name": "sn",
    "groups": "groups",
    "features": "urn:example:features",
    "plan": "plan",
    "name": "displayName",
}
USER = UserInfo(
    id="7f1c9a4e-0000-4000-8000-000000000001",
    email="ada@example.com",
    name="Ada Lovelace",
    given_name="Ada",
    family_name=None,
    role="member",
    groups=("admins", "engineering"),
    plan="pro",
    features=("export", "sso", ""),
)


def now() -> datetime:
    """The current time, as the SAML core takes it."""
    return datetime.now(UTC)


def key_pair(name: str, kind: str = "rsa") -> tuple[bytes, bytes]:
    """A PEM private key (PKCS#8) and a self-signed PEM certificate for ``name``."""
    return _key_pair(name, kind)


@cache
def _key_pair(name: str, kind: str) -> tuple[bytes, bytes]:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(65537, 2048)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = now() - timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, certificate.public_bytes(serialization.Encoding.PEM)


@cache
def idp_key() -> SigningKey:
    """The IdP's signing key, loaded once like idp/keys.py does."""
    return SigningKey.from_pem(*key_pair("idp"))


def idp_cert() -> str:
    return key_pair("idp")[1].decode()


def sp_cert() -> str:
    return key_pair("sp")[1].decode()


def sp_config(**changes: Any) -> SpConfig:
    """The test SP's configuration, with ``changes``."""
    base = SpConfig(
        entity_id=SP_ENTITY_ID,
        acs_url=ACS_URL,
        name_id_format=c.NAMEID_EMAIL,
        attribute_mapping=MAPPING,
        sign_assertions=True,
        sign_response=False,
        slo_url=SP_SLO_URL,
    )
    return replace(base, **changes)


def b64_deflate(xml: bytes) -> str:
    """A SAMLRequest value for the HTTP-Redirect binding."""
    deflater = zlib.compressobj(wbits=-15)
    return base64.b64encode(deflater.compress(xml) + deflater.flush()).decode()


def query_of(url: str) -> str:
    """The raw query string of a URL, as the web layer receives it."""
    return urlsplit(url).query


def query_params(url: str) -> dict[str, str]:
    """The decoded query parameters of a URL (each once)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


# python3-saml (OneLogin) --------------------------------------------------------------


def onelogin_settings(
    sp: SpConfig, *, idp_certificate: str | None = None, **security: Any
) -> dict[str, Any]:
    """A strict python3-saml settings dict for our test SP trusting our IdP certificate."""
    sp_key, sp_certificate = key_pair("sp")
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": sp.entity_id,
            "assertionConsumerService": {"url": sp.acs_url, "binding": BINDING_HTTP_POST},
            "singleLogoutService": {"url": SP_SLO_URL, "binding": BINDING_HTTP_REDIRECT},
            "NameIDFormat": sp.name_id_format,
            "x509cert": sp_certificate.decode(),
            "privateKey": sp_key.decode(),
        },
        "idp": {
            "entityId": IDP.entity_id,
            "singleSignOnService": {"url": IDP.sso_url, "binding": BINDING_HTTP_REDIRECT},
            "singleLogoutService": {"url": IDP.slo_url, "binding": BINDING_HTTP_REDIRECT},
            "x509cert": idp_certificate or idp_cert(),
        },
        "security": {
            "wantAssertionsSigned": sp.sign_assertions,
            "wantMessagesSigned": sp.sign_response,
            "wantNameId": True,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": c.SIG_RSA_SHA256,
            "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            **security,
        },
    }


def onelogin_request_data(url: str, query: str = "") -> dict[str, Any]:
    """The request description python3-saml expects for a request received at ``url``."""
    parts = urlsplit(url)
    data: dict[str, Any] = {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.hostname,
        "script_name": parts.path,
        "get_data": {},
        "post_data": {},
    }
    if query:
        data["get_data"] = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        data["query_string"] = query
        data["validate_signature_from_qs"] = True
    return data


# pysaml2 --------------------------------------------------------------------------------


def pysaml2_client(
    sp: SpConfig,
    directory: Path,
    *,
    sha256: bool = True,
    sign_requests: bool = False,
    decryption_key: str | None = None,
) -> Saml2Client:
    """A pysaml2 SP (default xmlsec1 backend) whose metadata names our IdP and its certificate.

    ``decryption_key`` names a key pair (see :func:`key_pair`) the SP decrypts assertions with
    (pysaml2's ``encryption_keypairs``).
    """
    sp_key, sp_certificate = key_pair("sp")
    (directory / "sp.key").write_bytes(sp_key)
    (directory / "sp.crt").write_bytes(sp_certificate)
    service: dict[str, Any] = {
        "endpoints": {
            "assertion_consumer_service": [(sp.acs_url, BINDING_HTTP_POST)],
            "single_logout_service": [
                (SP_SLO_URL, BINDING_HTTP_REDIRECT),
                (SP_SLO_URL, BINDING_HTTP_POST),
            ],
        },
        "want_response_signed": sp.sign_response,
        "want_assertions_signed": sp.sign_assertions,
        "want_assertions_or_response_signed": True,
        "allow_unsolicited": True,
        "authn_requests_signed": sign_requests,
        "logout_requests_signed": sign_requests,
        "name_id_format": sp.name_id_format,
    }
    if sha256:
        service["signing_algorithm"] = c.SIG_RSA_SHA256
        service["digest_algorithm"] = "http://www.w3.org/2001/04/xmlenc#sha256"
    metadata = idp_metadata(IDP, [idp_cert()], sp.name_id_format, False).decode()
    settings: dict[str, Any] = {
        "entityid": sp.entity_id,
        "service": {"sp": service},
        "metadata": {"inline": [metadata]},
        "key_file": str(directory / "sp.key"),
        "cert_file": str(directory / "sp.crt"),
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "allow_unknown_attributes": True,
        "accepted_time_diff": 0,
    }
    if decryption_key is not None:
        private_pem, certificate_pem = key_pair(decryption_key)
        (directory / "enc.key").write_bytes(private_pem)
        (directory / "enc.crt").write_bytes(certificate_pem)
        settings["encryption_keypairs"] = [
            {"key_file": str(directory / "enc.key"), "cert_file": str(directory / "enc.crt")}
        ]
    config = Pysaml2SpConfig()
    config.load(settings)
    return Saml2Client(config=config)


def authn_request_xml(
    issuer: str = SP_ENTITY_ID, extra: str = "", **attributes: str | None
) -> bytes:
    """An AuthnRequest like an SP sends it; ``attributes`` override (None drops) root attributes."""
    values: dict[str, str | None] = {
        "ID": "_authn-request-1",
        "Version": "2.0",
        "IssueInstant": now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Destination": IDP.sso_url,
        "AssertionConsumerServiceURL": ACS_URL,
        "ProtocolBinding": BINDING_HTTP_POST,
        **attributes,
    }
    rendered = " ".join(f'{name}="{value}"' for name, value in values.items() if value is not None)
    return (
        f'<samlp:AuthnRequest xmlns:samlp="{c.SAMLP_NS}" xmlns:saml="{c.SAML_NS}" {rendered}>'
        f"<saml:Issuer>{issuer}</saml:Issuer>{extra}"
        f'<samlp:NameIDPolicy Format="{c.NAMEID_EMAIL}" AllowCreate="true"/>'
        "</samlp:AuthnRequest>"
    ).encode()


def logout_request_xml(issuer: str = SP_ENTITY_ID, **attributes: str | None) -> bytes:
    """A LogoutRequest like an SP sends it; ``attributes`` override (None drops) root attributes."""
    values: dict[str, str | None] = {
        "ID": "_logout-request-1",
        "Version": "2.0",
        "IssueInstant": now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Destination": IDP.slo_url,
        **attributes,
    }
    rendered = " ".join(f'{name}="{value}"' for name, value in values.items() if value is not None)
    return (
        f'<samlp:LogoutRequest xmlns:samlp="{c.SAMLP_NS}" xmlns:saml="{c.SAML_NS}" {rendered}>'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        f'<saml:NameID Format="{c.NAMEID_EMAIL}">ada@example.com</saml:NameID>'
        "<samlp:SessionIndex>_s1</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    ).encode()


def sign_xml(
    xml: bytes, name: str = "sp", algorithm: str = c.SIG_RSA_SHA256, kind: str = "rsa"
) -> bytes:
    """``xml`` with an enveloped signature by the key pair ``name``, made by python3-saml.

    python3-saml signs XML with RSA only; ECDSA signatures are made with python-xmlsec directly.
    """
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    private_pem, certificate_pem = key_pair(name, kind)
    if kind == "ec":
        return _sign_xml_ecdsa(xml, private_pem, algorithm)
    digest = "http://www.w3.org/2001/04/xmlenc#sha256"
    signed: bytes = OneLogin_Saml2_Utils.add_sign(
        xml,
        private_pem.decode(),
        certificate_pem.decode(),
        sign_algorithm=algorithm,
        digest_algorithm=digest,
    )
    return signed


def _sign_xml_ecdsa(xml: bytes, private_pem: bytes, algorithm: str) -> bytes:
    import xmlsec
    from lxml import etree

    transform = {
        c.SIG_ECDSA_SHA256: xmlsec.Transform.ECDSA_SHA256,
        c.SIG_ECDSA_SHA384: xmlsec.Transform.ECDSA_SHA384,
        c.SIG_ECDSA_SHA512: xmlsec.Transform.ECDSA_SHA512,
    }[algorithm]
    root = etree.fromstring(xml)
    signature = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, transform, ns="ds")
    root.insert(1, signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.Transform.SHA256, uri="#" + root.get("ID")
    )
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(private_pem, xmlsec.KeyFormat.PEM)
    context.register_id(root, "ID")
    context.sign(signature)
    signed: bytes = etree.tostring(root)
    return signed


def redirect_query(
    xml: bytes,
    relay_state: str | None = None,
    signer: str | None = None,
    algorithm: str = c.SIG_RSA_SHA256,
    kind: str = "rsa",
) -> str:
    """An HTTP-Redirect query for ``xml``, signed by python3-saml with key pair ``signer``."""
    import xmlsec
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    params = [("SAMLRequest", b64_deflate(xml))]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    if signer is None:
        return urlencode(params)
    params.append(("SigAlg", algorithm))
    query = urlencode(params)
    transform = {
        c.SIG_RSA_SHA1: xmlsec.Transform.RSA_SHA1,
        c.SIG_RSA_SHA256: xmlsec.Transform.RSA_SHA256,
        c.SIG_RSA_SHA384: xmlsec.Transform.RSA_SHA384,
        c.SIG_RSA_SHA512: xmlsec.Transform.RSA_SHA512,
        c.SIG_ECDSA_SHA256: xmlsec.Transform.ECDSA_SHA256,
        c.SIG_ECDSA_SHA384: xmlsec.Transform.ECDSA_SHA384,
        c.SIG_ECDSA_SHA512: xmlsec.Transform.ECDSA_SHA512,
    }[algorithm]
    signature = OneLogin_Saml2_Utils.sign_binary(
        query, key_pair(signer, kind)[0].decode(), transform
    )
    return f"{query}&{urlencode({'Signature': base64.b64encode(signature).decode()})}"
