"""GET /saml/{org}/{svc}/metadata: schema-valid, read back by pysaml2 and python3-saml."""

from __future__ import annotations

import base64
from pathlib import Path

import onelogin.saml2
import pytest
import requests
from admin_helpers import client, new_service
from conftest import Account, Server
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import SPConfig
from saml2.mdstore import MetadataStore
from test_saml_config import SamlService, sp_certificate_pem, sp_config

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": MD, "ds": DS}
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
NAME_ID_FORMATS = (
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
)
SCHEMA_FILE = Path(onelogin.saml2.__file__).parent / "schemas" / "saml-schema-metadata-2.0.xsd"
SP_ENTITY_ID = "https://sp.example.test/metadata"


@pytest.fixture(scope="module")
def metadata_schema() -> etree.XMLSchema:
    """The OASIS SAML 2.0 metadata schema (shipped with python3-saml)."""
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE)))


@pytest.fixture
def ready(server: Server, owner: Account, org: str) -> SamlService:
    """A service configured for SAML, with an active certificate."""
    sso = client(server, owner)
    service = new_service(sso, org)
    sso.services.saml.configure(org, service["slug"], sp_config())
    sso.services.saml.generate_certificate(org, service["slug"])
    return SamlService(org, service["slug"], service["id"], sso)


def urls(server: Server, target: SamlService) -> tuple[str, str, str]:
    """The metadata and SSO URLs as the client gives them, and the SLO URL beside them."""
    saml = target.sso.services.saml
    metadata = saml.get_metadata_url(server.url, target.org, target.svc)
    sso = saml.get_sso_url(server.url, target.org, target.svc)
    return metadata, sso, sso.removesuffix("/sso") + "/slo"


def fetch(server: Server, target: SamlService, **headers: str) -> requests.Response:
    """GET the metadata, as an SP would."""
    return requests.get(urls(server, target)[0], headers=headers, timeout=10)


def der_base64(pem: str) -> str:
    """The base64 DER body of a PEM certificate, as metadata carries it."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def test_metadata_document(
    server: Server, ready: SamlService, metadata_schema: etree.XMLSchema
) -> None:
    response = fetch(server, ready)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/samlmetadata+xml"
    root = etree.fromstring(response.content)
    metadata_schema.assertValid(root)

    metadata, sso, slo = urls(server, ready)
    assert metadata == f"{server.url}/saml/{ready.org}/{ready.svc}/metadata"
    assert root.tag == f"{{{MD}}}EntityDescriptor" and root.get("entityID") == metadata
    (idp,) = root.findall("md:IDPSSODescriptor", NS)
    assert PROTOCOL in idp.get("protocolSupportEnumeration").split()
    assert idp.get("WantAuthnRequestsSigned") == "false"
    (key,) = idp.findall("md:KeyDescriptor", NS)
    assert key.get("use") == "signing"
    active = ready.sso.services.saml.get_certificate(ready.org, ready.svc)["public_key"]
    certs = key.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert [c.text for c in certs] == [der_base64(active)]
    assert [f.text for f in idp.findall("md:NameIDFormat", NS)] == [sp_config()["name_id_format"]]
    services = {
        (s.get("Binding"), s.get("Location")) for s in idp.findall("md:SingleSignOnService", NS)
    }
    assert services == {(BINDING_HTTP_REDIRECT, sso), (BINDING_HTTP_POST, sso)}
    logouts = {
        (s.get("Binding"), s.get("Location")) for s in idp.findall("md:SingleLogoutService", NS)
    }
    assert logouts == {(BINDING_HTTP_REDIRECT, slo), (BINDING_HTTP_POST, slo)}


@pytest.mark.parametrize("name_id_format", NAME_ID_FORMATS)
def test_metadata_follows_the_configuration(
    server: Server,
    ready: SamlService,
    metadata_schema: etree.XMLSchema,
    name_id_format: str,
) -> None:
    config = sp_config(
        name_id_format=name_id_format,
        sp_certificate=sp_certificate_pem(),
        want_authn_requests_signed=True,
    )
    ready.sso.services.saml.configure(ready.org, ready.svc, config)
    root = etree.fromstring(fetch(server, ready).content)
    metadata_schema.assertValid(root)
    (idp,) = root.findall("md:IDPSSODescriptor", NS)
    assert idp.get("WantAuthnRequestsSigned") == "true"
    assert [f.text for f in idp.findall("md:NameIDFormat", NS)] == [name_id_format]


def test_pysaml2_metadata_store_reads_it_back(server: Server, ready: SamlService) -> None:
    metadata, sso, slo = urls(server, ready)
    config = SPConfig().load(
        {"entityid": SP_ENTITY_ID, "metadata": {"remote": [{"url": metadata}]}}
    )
    store = config.metadata
    assert isinstance(store, MetadataStore)
    assert list(store.identity_providers()) == [metadata]
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        assert [s["location"] for s in store.single_sign_on_service(metadata, binding)] == [sso]
        assert [
            s["location"] for s in store.single_logout_service(metadata, binding, "idpsso")
        ] == [slo]
    active = ready.sso.services.saml.get_certificate(ready.org, ready.svc)["public_key"]
    certs = store.certs(metadata, "idpsso", use="signing")
    assert ["".join(cert.split()) for _, cert in certs] == [der_base64(active)]
    (idp,) = store[metadata]["idpsso_descriptor"]
    assert idp["want_authn_requests_signed"] == "false"
    assert [f["text"] for f in idp["name_id_format"]] == [sp_config()["name_id_format"]]


def test_python3_saml_reads_it_back(server: Server, ready: SamlService) -> None:
    metadata, sso, slo = urls(server, ready)
    active = ready.sso.services.saml.get_certificate(ready.org, ready.svc)["public_key"]
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        xml = OneLogin_Saml2_IdPMetadataParser.get_metadata(metadata)
        idp = OneLogin_Saml2_IdPMetadataParser.parse(
            xml, required_sso_binding=binding, required_slo_binding=binding
        )["idp"]
        assert idp["entityId"] == metadata
        assert idp["singleSignOnService"] == {"url": sso, "binding": binding}
        assert idp["singleLogoutService"] == {"url": slo, "binding": binding}
        assert idp["x509cert"] == der_base64(active)

    parsed = OneLogin_Saml2_IdPMetadataParser.parse_remote(metadata)
    sp = {
        "strict": True,
        "sp": {
            "entityId": SP_ENTITY_ID,
            "assertionConsumerService": {"url": "https://sp.example.test/acs"},
        },
    }
    settings = OneLogin_Saml2_Settings(OneLogin_Saml2_IdPMetadataParser.merge_settings(sp, parsed))
    assert settings.get_idp_data()["entityId"] == metadata
    assert settings.get_sp_data()["NameIDFormat"] == sp_config()["name_id_format"]


def test_rotation_publishes_only_the_new_certificate(server: Server, ready: SamlService) -> None:
    saml = ready.sso.services.saml
    old = saml.get_certificate(ready.org, ready.svc)
    old_tag = fetch(server, ready).headers["ETag"]
    new = saml.generate_certificate(ready.org, ready.svc)
    response = fetch(server, ready, **{"If-None-Match": old_tag})
    assert response.status_code == 200 and response.headers["ETag"] != old_tag
    root = etree.fromstring(response.content)
    certs = [c.text for c in root.iterfind(".//ds:X509Certificate", NS)]
    assert certs == [der_base64(new["public_key"])]
    assert der_base64(old["public_key"]) not in response.text


def test_etag_and_cache_control(server: Server, ready: SamlService) -> None:
    first = fetch(server, ready)
    tag = first.headers["ETag"]
    cache = {d.strip() for d in first.headers["Cache-Control"].split(",")}
    assert cache == {"public", "max-age=300"}
    again = fetch(server, ready, **{"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == tag

    ready.sso.services.saml.configure(
        ready.org, ready.svc, sp_config(acs_url="https://salesforce.example.com/saml/acs2")
    )
    changed = fetch(server, ready, **{"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert changed.content == first.content


def test_entity_id_comes_from_the_base_url_not_the_host_header(
    server: Server, ready: SamlService
) -> None:
    response = fetch(server, ready, Host="attacker.example")
    assert response.status_code == 200
    assert etree.fromstring(response.content).get("entityID") == urls(server, ready)[0]
    assert "attacker.example" not in response.text


def test_no_metadata_until_the_service_can_sign(server: Server, owner: Account, org: str) -> None:
    sso = client(server, owner)
    svc = new_service(sso, org)["slug"]
    target = SamlService(org, svc, "", sso)
    saml = sso.services.saml

    def refused(fragment: str) -> None:
        response = fetch(server, target)
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/html")
        assert fragment in response.text

    refused("SAML is not configured for this service")
    saml.configure(org, svc, sp_config())
    refused("no active signing certificate")
    saml.generate_certificate(org, svc)
    assert fetch(server, target).status_code == 200
    saml.configure(org, svc, sp_config(enabled=False))
    refused("SAML is disabled for this service")
    saml.configure(org, svc, sp_config())
    assert fetch(server, target).status_code == 200
    saml.delete_config(org, svc)
    refused("SAML is not configured for this service")

    for other_org, other_svc in ((org, "no-such-service"), ("no-such-org", svc)):
        response = fetch(server, SamlService(other_org, other_svc, "", sso))
        assert response.status_code == 404 and "There is no service" in response.text


@pytest.mark.parametrize(
    "path",
    ["%00/main-app", "acme/%00", "a" * 1000 + "/main-app", "%C3%A9/%F0%9F%92%A5", "acme/..%2F.."],
)
def test_hostile_paths_are_plain_not_found_pages(server: Server, path: str) -> None:
    response = requests.get(f"{server.url}/saml/{path}/metadata", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
