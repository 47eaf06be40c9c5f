"""The SAML 2.0 metadata document of one service's IdP (CONTRACT §4)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from saml2.md import NAMESPACE as MD

from idp.saml.authn_context import SECOND_FACTOR_SIGN_IN
from idp.saml.constants import BINDING_POST, BINDING_REDIRECT, DS_NS, SAML_NS, SAMLP_NS

BINDINGS = (BINDING_REDIRECT, BINDING_POST)
MDATTR = "urn:oasis:names:tc:SAML:metadata:attribute"
ATTRNAME_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
# The entity attribute listing the AuthnContextClassRefs this IdP can assert (SAML has no
# standard element for it; SPs that do not know the attribute ignore it).
SUPPORTED_CLASSES = "urn:oasis:names:tc:SAML:2.0:ac:classes"


@dataclass(frozen=True)
class IdpEndpoints:
    """The public URLs of one service's IdP; the metadata URL is also its entity ID."""

    entity_id: str
    sso_url: str
    slo_url: str

    @classmethod
    def of(cls, base_url: str, org_slug: str, service_slug: str) -> IdpEndpoints:
        """The URLs under ``{base_url}/saml/{org}/{svc}/``."""
        root = f"{base_url.rstrip('/')}/saml/{org_slug}/{service_slug}"
        return cls(entity_id=f"{root}/metadata", sso_url=f"{root}/sso", slo_url=f"{root}/slo")


def idp_metadata(
    endpoints: IdpEndpoints,
    certificates_pem: list[str],
    name_id_format: str,
    want_authn_requests_signed: bool,
) -> bytes:
    """The EntityDescriptor (UTF-8 XML) an SP loads to trust this IdP.

    It lists the signing certificates (the active one, then the next one of a staged
    rollover, so SPs that reread metadata trust it before it signs), the one NameID format
    the service is configured to issue, the SSO and SLO endpoints for the HTTP-Redirect and
    HTTP-POST bindings, and, as an entity attribute, the authentication context classes it
    asserts (REFEDS MFA included).
    """
    nsmap = {"md": MD, "ds": DS_NS, "mdattr": MDATTR, "saml": SAML_NS}
    entity = etree.Element(_md("EntityDescriptor"), nsmap=nsmap)
    entity.set("entityID", endpoints.entity_id)
    _supported_classes(entity)
    idp = etree.SubElement(entity, _md("IDPSSODescriptor"))
    idp.set("protocolSupportEnumeration", SAMLP_NS)
    idp.set("WantAuthnRequestsSigned", "true" if want_authn_requests_signed else "false")
    for certificate_pem in certificates_pem:
        key = etree.SubElement(idp, _md("KeyDescriptor"), use="signing")
        key_info = etree.SubElement(key, _ds("KeyInfo"))
        x509_data = etree.SubElement(key_info, _ds("X509Data"))
        etree.SubElement(x509_data, _ds("X509Certificate")).text = _der_base64(certificate_pem)
    for binding in BINDINGS:
        etree.SubElement(
            idp, _md("SingleLogoutService"), Binding=binding, Location=endpoints.slo_url
        )
    etree.SubElement(idp, _md("NameIDFormat")).text = name_id_format
    for binding in BINDINGS:
        etree.SubElement(
            idp, _md("SingleSignOnService"), Binding=binding, Location=endpoints.sso_url
        )
    return bytes(etree.tostring(entity, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _supported_classes(entity: etree._Element) -> None:
    extensions = etree.SubElement(entity, _md("Extensions"))
    attributes = etree.SubElement(extensions, f"{{{MDATTR}}}EntityAttributes")
    attribute = etree.SubElement(
        attributes, f"{{{SAML_NS}}}Attribute", Name=SUPPORTED_CLASSES, NameFormat=ATTRNAME_URI
    )
    for name in SECOND_FACTOR_SIGN_IN:
        etree.SubElement(attribute, f"{{{SAML_NS}}}AttributeValue").text = name


def _md(tag: str) -> str:
    return f"{{{MD}}}{tag}"


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def _der_base64(certificate_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
