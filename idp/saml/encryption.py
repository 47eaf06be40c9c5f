"""Encrypted assertions for SPs that ask for them (CONTRACT §8), in process with python-xmlsec.

The signed assertion becomes a ``saml:EncryptedAssertion`` holding one ``xenc:EncryptedData``
(Type Element) encrypted with AES-256-GCM or AES-128-GCM under a fresh session key that xmlsec
generates; that key travels in ``ds:KeyInfo/xenc:EncryptedKey``, encrypted to the SP's
certificate with RSA-OAEP written as ``xmlenc#rsa-oaep-mgf1p`` with a SHA-1 ``DigestMethod``
(MGF1 with SHA-1): the form every common SP stack decrypts, xmlsec 1.2 included (tested with
python3-saml and with pysaml2 over the xmlsec1 1.2 program). The EncryptedKey's own KeyInfo
carries the SP certificate, so an SP holding several keys knows which one to use. Nothing here
uses AES-CBC, 3DES or RSA 1.5.
"""

from __future__ import annotations

from functools import lru_cache

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from idp.saml import constants as c
from idp.saml.config import AES128_GCM, AES256_GCM

__all__ = ["DIGEST_SHA1", "RSA_OAEP_MGF1P", "XENC_NS", "encrypt_assertion", "encryption_keys"]

T = xmlsec.constants
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
CONTENT_ENCRYPTION = {
    AES256_GCM: (T.TransformAes256Gcm, 256),
    AES128_GCM: (T.TransformAes128Gcm, 128),
}


def encrypt_assertion(
    assertion: etree._Element, certificate_pem: str, content_encryption: str
) -> etree._Element:
    """A new ``saml:EncryptedAssertion`` holding ``assertion`` encrypted for the certificate's key.

    ``assertion`` (signed already, when it is to be signed) is left as it is; the caller puts
    the result in its place. ``content_encryption`` is ``AES256_GCM`` or ``AES128_GCM``.
    ValueError when the algorithm or the certificate is not usable.
    """
    if content_encryption not in CONTENT_ENCRYPTION:
        raise ValueError(f"unsupported content encryption {content_encryption!r}")
    encrypted = etree.Element(f"{{{c.SAML_NS}}}EncryptedAssertion", nsmap={"saml": c.SAML_NS})
    data = _template(encrypted, content_encryption)
    context = xmlsec.EncryptionContext(encryption_keys(certificate_pem))
    bits = CONTENT_ENCRYPTION[content_encryption][1]
    context.key = xmlsec.Key.generate(T.KeyDataAes, bits, T.KeyDataTypeSession)
    # lxml serializes the assertion with the namespace declarations it inherits, so the SP
    # parses the decrypted bytes on their own; the signature (exclusive C14N) is unaffected.
    try:
        context.encrypt_binary(data, etree.tostring(assertion))
    except xmlsec.Error as exc:
        raise ValueError(f"the assertion cannot be encrypted for this certificate: {exc}") from None
    return encrypted


@lru_cache(maxsize=256)
def encryption_keys(certificate_pem: str) -> xmlsec.KeysManager:
    """The SP's RSA public key (with its certificate) in a keys manager, made once per certificate.

    Creating a keys manager costs milliseconds; encrypting with a cached one, a fraction of
    one. It is only read afterwards. ValueError when the certificate cannot be read or its key
    is not RSA (RSA-OAEP key transport needs one): the admin API can call this to check an
    SP encryption certificate before storing it.
    """
    try:
        public_key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        key = xmlsec.Key.from_memory(certificate_pem.encode(), T.KeyDataFormatCertPem)
    except (ValueError, xmlsec.Error):
        raise ValueError("the SP encryption certificate cannot be read") from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the SP encryption certificate must hold an RSA key")
    manager = xmlsec.KeysManager()
    manager.add_key(key)
    return manager


def _template(parent: etree._Element, content_encryption: str) -> etree._Element:
    """The EncryptedData template under ``parent``, with the EncryptedKey in its KeyInfo."""
    data = xmlsec.template.encrypted_data_create(
        parent, CONTENT_ENCRYPTION[content_encryption][0], type=T.TypeEncElement, ns="xenc"
    )
    parent.append(data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, T.TransformRsaOaep)
    method = encrypted_key.find(f"{{{XENC_NS}}}EncryptionMethod")
    etree.SubElement(method, f"{{{c.DS_NS}}}DigestMethod", Algorithm=DIGEST_SHA1)
    recipient = xmlsec.template.encrypted_data_ensure_key_info(encrypted_key)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(recipient))
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    xmlsec.template.encrypted_data_ensure_cipher_value(data)
    return data
