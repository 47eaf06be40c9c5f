"""XML signatures and Redirect-binding query signatures, in process with python-xmlsec.

We sign with RSA-SHA256, SHA-256 digests and exclusive C14N only. Incoming signatures may
use RSA or ECDSA with SHA-256/384/512, or RSA-SHA1 (pysaml2 SPs sign with it by default).
"""

from __future__ import annotations

import base64
import copy
from functools import lru_cache

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from idp.saml import constants as c
from idp.saml.errors import SamlRefusal, quoted

T = xmlsec.constants
SIGNATURE = f"{{{c.DS_NS}}}Signature"
SIGNED_INFO = f"{{{c.DS_NS}}}SignedInfo"
REFERENCE = f"{{{c.DS_NS}}}Reference"
TRANSFORM = f"{{{c.DS_NS}}}Transforms/{{{c.DS_NS}}}Transform"
VERIFY_ALGORITHMS = {
    c.SIG_RSA_SHA1: T.TransformRsaSha1,
    c.SIG_RSA_SHA256: T.TransformRsaSha256,
    c.SIG_RSA_SHA384: T.TransformRsaSha384,
    c.SIG_RSA_SHA512: T.TransformRsaSha512,
    c.SIG_ECDSA_SHA256: T.TransformEcdsaSha256,
    c.SIG_ECDSA_SHA384: T.TransformEcdsaSha384,
    c.SIG_ECDSA_SHA512: T.TransformEcdsaSha512,
}
VERIFY_DIGESTS = (T.TransformSha1, T.TransformSha256, T.TransformSha384, T.TransformSha512)
REFERENCE_TRANSFORMS = {c.TRANSFORM_ENVELOPED, c.TRANSFORM_EXC_C14N}
KEY_PROBE = b"idp signing key probe"
SIGNATURE_TEMPLATE = (
    f'<ds:Signature xmlns:ds="{c.DS_NS}"><ds:SignedInfo>'
    f'<ds:CanonicalizationMethod Algorithm="{c.TRANSFORM_EXC_C14N}"/>'
    f'<ds:SignatureMethod Algorithm="{c.SIG_RSA_SHA256}"/>'
    '<ds:Reference URI=""><ds:Transforms>'
    f'<ds:Transform Algorithm="{c.TRANSFORM_ENVELOPED}"/>'
    f'<ds:Transform Algorithm="{c.TRANSFORM_EXC_C14N}"/>'
    f'</ds:Transforms><ds:DigestMethod Algorithm="{c.DIGEST_SHA256}"/><ds:DigestValue/>'
    "</ds:Reference></ds:SignedInfo><ds:SignatureValue/>"
    "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate>"
    "</ds:X509Data></ds:KeyInfo></ds:Signature>"
)


class SigningKey:
    """The IdP's private key with its certificate, loaded once and reused for every signature.

    The key is held without its certificate (xmlsec copies a certificate on every use) and
    the certificate is written once into a signature template that each signature copies.
    """

    def __init__(self, key: xmlsec.Key, certificate_der: bytes) -> None:
        self._key = key
        certificate = base64.b64encode(certificate_der).decode("ascii")
        self._template = etree.fromstring(SIGNATURE_TEMPLATE.format(certificate=certificate))

    @classmethod
    def from_pem(cls, private_key_pem: bytes, certificate_pem: bytes) -> SigningKey:
        """Load an unencrypted PEM private key and its PEM certificate; ValueError if unusable."""
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
            key = xmlsec.Key.from_memory(private_key_pem, T.KeyDataFormatPem)
            certificate_key = xmlsec.Key.from_memory(certificate_pem, T.KeyDataFormatCertPem)
        except (ValueError, xmlsec.Error) as exc:
            raise ValueError(f"the signing key or certificate cannot be loaded: {exc}") from None
        signing_key = cls(key, certificate.public_bytes(Encoding.DER))
        context = xmlsec.SignatureContext()
        context.key = certificate_key
        try:
            context.verify_binary(
                KEY_PROBE, T.TransformRsaSha256, signing_key.sign_bytes(KEY_PROBE)
            )
        except xmlsec.Error:
            raise ValueError("the private key does not belong to the certificate") from None
        return signing_key

    def sign_bytes(self, data: bytes) -> bytes:
        """An RSA-SHA256 signature over raw bytes (the HTTP-Redirect binding's query)."""
        context = xmlsec.SignatureContext()
        context.key = self._key
        return context.sign_binary(data, T.TransformRsaSha256)

    def sign(self, element: etree._Element) -> None:
        """Sign ``element`` in place: an enveloped signature over its ``ID``, after its Issuer.

        RSA-SHA256, SHA-256 digest, exclusive C14N, the certificate in ``KeyInfo``.
        """
        signature = copy.deepcopy(self._template)
        signature.find(f"{SIGNED_INFO}/{REFERENCE}").set("URI", "#" + element.get("ID"))
        element.insert(1, signature)
        context = xmlsec.SignatureContext()
        context.key = self._key
        context.register_id(element, "ID")
        context.sign(signature)


@lru_cache(maxsize=256)
def _certificate_key(certificate_pem: str) -> xmlsec.Key:
    try:
        return xmlsec.Key.from_memory(certificate_pem.encode(), T.KeyDataFormatCertPem)
    except xmlsec.Error:
        raise SamlRefusal(
            "signature_invalid",
            "The SP certificate in this service's SAML configuration cannot be read; "
            "ask the administrator to configure it again.",
        ) from None


def _invalid(message: str) -> SamlRefusal:
    return SamlRefusal("signature_invalid", message)


def verify_query(signed: bytes, algorithm: str, signature: bytes, certificate_pem: str) -> None:
    """Verify an HTTP-Redirect signature (``SigAlg``/``Signature``) over the signed query bytes."""
    transform = VERIFY_ALGORITHMS.get(algorithm)
    if transform is None:
        raise _invalid(f"The signature algorithm SigAlg={quoted(algorithm)} is not accepted.")
    context = xmlsec.SignatureContext()
    context.key = _certificate_key(certificate_pem)
    try:
        context.verify_binary(signed, transform, signature)
    except xmlsec.Error:
        raise _invalid(
            "The request's signature does not verify against the SP certificate configured "
            "for this service."
        ) from None


def is_signed(root: etree._Element) -> bool:
    """True when an XML signature appears anywhere in the message."""
    return next(root.iter(SIGNATURE), None) is not None


def verify_enveloped(root: etree._Element, certificate_pem: str) -> None:
    """Verify the enveloped signature of a whole message, refusing every wrapping trick.

    Exactly one Signature, a direct child of the root, with exactly one Reference to
    ``#`` + the root's ID (unique in the document) and only the enveloped and exclusive
    C14N transforms.
    """
    signature = _only_root_signature(root)
    _check_reference(root, signature)
    context = xmlsec.SignatureContext()
    context.key = _certificate_key(certificate_pem)
    for transform in (T.TransformEnveloped, T.TransformExclC14N, *VERIFY_DIGESTS):
        context.enable_reference_transform(transform)
    for transform in (T.TransformExclC14N, *VERIFY_ALGORITHMS.values()):
        context.enable_signature_transform(transform)
    try:
        context.register_id(root, "ID")
        context.verify(signature)
    except xmlsec.Error:
        raise _invalid(
            "The message's signature does not verify against the SP certificate configured "
            "for this service, or uses an algorithm that is not accepted."
        ) from None


def _only_root_signature(root: etree._Element) -> etree._Element:
    signatures = list(root.iter(SIGNATURE))
    if len(signatures) != 1 or signatures[0].getparent() is not root:
        raise _invalid("The message must carry exactly one signature, directly under its root.")
    return signatures[0]


def _check_reference(root: etree._Element, signature: etree._Element) -> None:
    references = signature.findall(f"{SIGNED_INFO}/{REFERENCE}")
    if len(signature.findall(SIGNED_INFO)) != 1 or len(references) != 1:
        raise _invalid("The message's signature must hold exactly one reference.")
    root_id = root.get("ID")
    if not root_id or references[0].get("URI") != "#" + root_id:
        raise _invalid("The message's signature does not cover the whole message.")
    if len(root.xpath("//@*[. = $id]", id=root_id)) != 1:
        raise _invalid("The message's ID appears more than once in the document.")
    algorithms = [t.get("Algorithm") for t in references[0].findall(TRANSFORM)]
    if len(set(algorithms)) != len(algorithms) or not REFERENCE_TRANSFORMS.issuperset(algorithms):
        raise _invalid(
            "The message's signature may use only the enveloped-signature and exclusive "
            "canonicalization transforms."
        )
