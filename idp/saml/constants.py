"""SAML and XML-DSig URIs, taken from pysaml2 and typed for the rest of the package."""

from __future__ import annotations

from typing import Final

import saml2
from saml2 import saml, samlp, xmldsig

SAML_NS: Final[str] = saml.NAMESPACE
SAMLP_NS: Final[str] = samlp.NAMESPACE
DS_NS: Final[str] = xmldsig.NAMESPACE

BINDING_POST: Final[str] = saml2.BINDING_HTTP_POST
BINDING_REDIRECT: Final[str] = saml2.BINDING_HTTP_REDIRECT

NAMEID_EMAIL: Final[str] = saml.NAMEID_FORMAT_EMAILADDRESS
NAMEID_PERSISTENT: Final[str] = saml.NAMEID_FORMAT_PERSISTENT
NAMEID_TRANSIENT: Final[str] = saml.NAMEID_FORMAT_TRANSIENT
NAMEID_UNSPECIFIED: Final[str] = saml.NAMEID_FORMAT_UNSPECIFIED
NAMEID_FORMATS: Final = frozenset(
    {NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED}
)

ATTRNAME_URI: Final[str] = saml.NAME_FORMAT_URI
ATTRNAME_BASIC: Final[str] = saml.NAME_FORMAT_BASIC
CONFIRMATION_BEARER: Final[str] = saml.SCM_BEARER
AUTHN_UNSPECIFIED: Final[str] = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
AUTHN_PASSWORD: Final[str] = saml.AUTHN_PASSWORD
AUTHN_PASSWORD_PROTECTED: Final[str] = saml.AUTHN_PASSWORD_PROTECTED
AUTHN_MFA: Final[str] = "https://refeds.org/profile/mfa"

STATUS_SUCCESS: Final[str] = samlp.STATUS_SUCCESS
STATUS_REQUESTER: Final[str] = samlp.STATUS_REQUESTER
STATUS_RESPONDER: Final[str] = samlp.STATUS_RESPONDER
STATUS_NO_PASSIVE: Final[str] = samlp.STATUS_NO_PASSIVE
STATUS_INVALID_NAMEID_POLICY: Final[str] = samlp.STATUS_INVALID_NAMEID_POLICY
STATUS_REQUEST_DENIED: Final[str] = samlp.STATUS_REQUEST_DENIED
STATUS_NO_AUTHN_CONTEXT: Final[str] = samlp.STATUS_NO_AUTHN_CONTEXT
STATUS_UNKNOWN_PRINCIPAL: Final[str] = samlp.STATUS_UNKNOWN_PRINCIPAL

SIG_RSA_SHA1: Final[str] = xmldsig.SIG_RSA_SHA1
SIG_RSA_SHA256: Final[str] = xmldsig.SIG_RSA_SHA256
SIG_RSA_SHA384: Final[str] = xmldsig.SIG_RSA_SHA384
SIG_RSA_SHA512: Final[str] = xmldsig.SIG_RSA_SHA512
SIG_ECDSA_SHA256: Final[str] = xmldsig.SIG_ECDSA_SHA256
SIG_ECDSA_SHA384: Final[str] = xmldsig.SIG_ECDSA_SHA384
SIG_ECDSA_SHA512: Final[str] = xmldsig.SIG_ECDSA_SHA512
DIGEST_SHA256: Final[str] = xmldsig.DIGEST_SHA256
TRANSFORM_ENVELOPED: Final[str] = xmldsig.TRANSFORM_ENVELOPED
TRANSFORM_EXC_C14N: Final[str] = "http://www.w3.org/2001/10/xml-exc-c14n#"
