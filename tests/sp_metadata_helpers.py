"""SP metadata as real SP stacks write it (pysaml2, python3-saml's builder), and a local web
server publishing documents that can change.

Shared by the metadata parser's unit tests (tests/test_sp_metadata.py) and the onboarding
tests over HTTP (tests/test_sp_onboarding.py).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata
from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import SPConfig as Pysaml2SpConfig
from saml_core_helpers import key_pair

from idp.saml import constants as c

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
GCM128 = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
GCM256 = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
OAEP = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"


def pem(name: str, kind: str = "rsa") -> str:
    """The certificate of test key ``name``, as canonical PEM."""
    return key_pair(name, kind)[1].decode()


def der_b64(name: str, wrap: int = 0) -> str:
    """The certificate of ``name`` as an X509Certificate's text, optionally wrapped."""
    certificate = x509.load_pem_x509_certificate(key_pair(name)[1])
    text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()
    if not wrap:
        return text
    lines = [text[i : i + wrap] for i in range(0, len(text), wrap)]
    return "\n" + "\n".join(" " * 24 + line for line in lines) + "\n" + " " * 20


# pysaml2 ----------------------------------------------------------------------------------

PYSAML2_ENTITY_ID = "https://sp.example.org/saml2/metadata"
PYSAML2_ENDPOINTS: dict[str, Any] = {
    "assertion_consumer_service": [
        ("https://sp.example.org/acs/artifact", BINDING_HTTP_ARTIFACT, 0),
        ("https://sp.example.org/acs/post", BINDING_HTTP_POST, 1),
        {
            "location": "https://sp.example.org/acs/alt",
            "binding": BINDING_HTTP_POST,
            "index": 7,
            "is_default": "true",
        },
    ],
    "single_logout_service": [
        ("https://sp.example.org/slo/soap", SOAP),
        ("https://sp.example.org/slo", BINDING_HTTP_REDIRECT),
        ("https://sp.example.org/slo/post", BINDING_HTTP_POST),
    ],
}


def pysaml2_config(
    directory: Path,
    endpoints: dict[str, Any],
    *,
    entity_id: str = PYSAML2_ENTITY_ID,
    encryption: tuple[str, str] = ("sp-enc", "rsa"),
    idp_metadata: str | None = None,
    **sp: Any,
) -> Pysaml2SpConfig:
    """A pysaml2 SP signing with key pair ``sp``, decrypting with the key pair ``encryption``
    (name, kind) and serving ``endpoints``; it signs its AuthnRequests (RSA-SHA256).

    With ``idp_metadata`` it is also an SP that trusts that IdP and validates its Responses;
    ``sp`` overrides its ``service.sp`` settings.
    """
    name, kind = encryption
    for pair, pair_kind in (("sp", "rsa"), (name, kind)):
        private_key, certificate = key_pair(pair, pair_kind)
        (directory / f"{pair}.key").write_bytes(private_key)
        (directory / f"{pair}.crt").write_bytes(certificate)
    settings: dict[str, Any] = {
        "entityid": entity_id,
        "key_file": str(directory / "sp.key"),
        "cert_file": str(directory / "sp.crt"),
        "encryption_keypairs": [
            {
                "key_file": str(directory / f"{name}.key"),
                "cert_file": str(directory / f"{name}.crt"),
            }
        ],
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "valid_for": 24,
        "service": {
            "sp": {
                "endpoints": endpoints,
                "authn_requests_signed": True,
                "name_id_format": [
                    "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
                    c.NAMEID_PERSISTENT,
                ],
                **sp,
            }
        },
    }
    if idp_metadata is not None:
        settings["metadata"] = {"inline": [idp_metadata]}
        settings["allow_unknown_attributes"] = True
        settings["service"]["sp"].setdefault("signing_algorithm", c.SIG_RSA_SHA256)
        settings["service"]["sp"].setdefault("digest_algorithm", SHA256_DIGEST)
    config = Pysaml2SpConfig()
    config.load(settings)
    return config


# python3-saml -----------------------------------------------------------------------------

APP = "https://app.example.net"
ONELOGIN_SP = {
    "entityId": f"{APP}/metadata/",
    "assertionConsumerService": {"url": f"{APP}/acs", "binding": BINDING_HTTP_POST},
    "singleLogoutService": {"url": f"{APP}/sls", "binding": BINDING_HTTP_REDIRECT},
    "NameIDFormat": c.NAMEID_EMAIL,
}


def onelogin_metadata(
    sp: dict[str, Any] | None = None,
    certificate: str | None = None,
    *,
    encryption: bool = True,
    **builder: Any,
) -> str:
    """Metadata by python3-saml's builder for ``sp`` (ONELOGIN_SP), with ``certificate`` in a
    signing KeyDescriptor and, with ``encryption``, an encryption one."""
    xml = OneLogin_Saml2_Metadata.builder(sp or ONELOGIN_SP, **builder)
    if certificate is not None:
        xml = OneLogin_Saml2_Metadata.add_x509_key_descriptors(xml, certificate, encryption)
    return xml.decode() if isinstance(xml, bytes) else str(xml)


def with_encryption_methods(xml: str | bytes, *algorithms: str) -> str:
    """``xml`` with ``EncryptionMethod``s for ``algorithms`` in each encryption KeyDescriptor."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    for descriptor in root.iter(f"{{{MD}}}KeyDescriptor"):
        if descriptor.get("use") in (None, "encryption"):
            for algorithm in algorithms:
                etree.SubElement(descriptor, f"{{{MD}}}EncryptionMethod", Algorithm=algorithm)
    return etree.tostring(root).decode()


# A metadata URL ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: MetadataHost

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, body, content_type = self.server.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MetadataHost(ThreadingHTTPServer):
    """A web server on 127.0.0.1 (plain http is allowed to loopback) publishing documents at
    paths; what a path answers can change at any time. Unknown paths answer 404."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._documents: dict[str, tuple[int, bytes, str]] = {}
        self._hits: list[str] = []
        self._lock = threading.Lock()

    def publish(
        self,
        path: str,
        body: str | bytes,
        status: int = 200,
        content_type: str = "application/samlmetadata+xml",
    ) -> str:
        """Answer ``body`` with ``status`` at ``path`` from now on; returns its URL."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._documents[path] = (status, data, content_type)
        return self.url(path)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        with self._lock:
            self._hits.append(path)
            return self._documents.get(path, (404, b"not found", "text/plain"))

    def hits(self, path: str) -> int:
        """How many requests ``path`` got so far."""
        with self._lock:
            return self._hits.count(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@contextmanager
def metadata_host() -> Iterator[MetadataHost]:
    """A running MetadataHost, in a thread of this process."""
    host = MetadataHost()
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.shutdown()
        host.server_close()
