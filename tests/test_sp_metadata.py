"""SP metadata: parse_sp_metadata (idp/saml/sp_metadata.py), fetch_metadata (idp/metadata_fetch.py).

Fast unit tests: no IdP server. Metadata comes from pysaml2 and python3-saml as they write it,
and from hand-written documents shaped like Shibboleth SP's and mod_auth_mellon's; the
fetcher runs against a local http.server (plain http is allowed to loopback hosts).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2 import BINDING_HTTP_ARTIFACT, BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.metadata import create_metadata_string
from saml_core_helpers import IDP, idp_cert, key_pair
from sp_metadata_helpers import (
    GCM128,
    GCM256,
    MD,
    OAEP,
    ONELOGIN_SP,
    PYSAML2_ENDPOINTS,
    SOAP,
    der_b64,
    onelogin_metadata,
    pem,
    pysaml2_config,
)

from idp.metadata_fetch import fetch_metadata
from idp.saml import constants as c
from idp.saml.config import AcsUrl
from idp.saml.metadata import idp_metadata
from idp.saml.sp_metadata import (
    MAX_METADATA_BYTES,
    MetadataError,
    SpMetadata,
    parse_duration,
    parse_sp_metadata,
)

NOW = datetime.now(UTC)
SIMPLE_SIGN = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign"
PAOS = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"


def parse(xml: bytes | str, **kwargs: Any) -> SpMetadata:
    return parse_sp_metadata(xml, NOW, **kwargs)


def refused(xml: bytes | str, reason: str, **kwargs: Any) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        parse(xml, **kwargs)
    assert caught.value.reason == reason, caught.value.message
    assert str(caught.value) == caught.value.message
    return caught.value


def minimal(
    acs: str = f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" '
    'Location="https://sp.example.org/acs" index="0"/>',
    *,
    entity: str = 'entityID="https://sp.example.org/md"',
    sp: str = f'protocolSupportEnumeration="{c.SAMLP_NS}"',
    inside: str = "",
) -> str:
    """An SP EntityDescriptor with ``acs`` (and ``inside``) in its SPSSODescriptor."""
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="{c.DS_NS}" {entity}>'
        f"<md:SPSSODescriptor {sp}>{inside}{acs}</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def post_acs(index: int, url: str | None = None, is_default: str | None = None) -> str:
    default = "" if is_default is None else f' isDefault="{is_default}"'
    location = url or f"https://sp.example.org/acs/{index}"
    return (
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{location}" '
        f'index="{index}"{default}/>'
    )


# pysaml2 ----------------------------------------------------------------------------------


def test_pysaml2_metadata_is_read(tmp_path: Path) -> None:
    xml = create_metadata_string(None, config=pysaml2_config(tmp_path, PYSAML2_ENDPOINTS))
    metadata = parse(xml)
    assert metadata.entity_id == "https://sp.example.org/saml2/metadata"
    assert metadata.acs_urls == (
        AcsUrl("https://sp.example.org/acs/post", 1, False),
        AcsUrl("https://sp.example.org/acs/alt", 7, True),
    )
    assert metadata.acs_url == "https://sp.example.org/acs/alt"
    assert metadata.slo_url == "https://sp.example.org/slo"
    assert metadata.signing_certificates == (pem("sp"),)
    assert metadata.encryption_certificates == (pem("sp-enc"),)
    assert metadata.encryption_methods == ()
    assert metadata.authn_requests_signed is True
    assert metadata.name_id_format == c.NAMEID_PERSISTENT
    assert metadata.cache_duration is None
    assert metadata.valid_until is not None
    expected = datetime.now(UTC) + timedelta(hours=24)
    assert abs(metadata.valid_until - expected) < timedelta(minutes=1)


def test_pysaml2_entities_descriptor_is_read_with_the_earliest_valid_until(
    tmp_path: Path,
) -> None:
    config = pysaml2_config(tmp_path, PYSAML2_ENDPOINTS)
    xml = create_metadata_string(None, config=config, mid="aggregate", valid=5)
    assert b"EntitiesDescriptor" in xml
    metadata = parse(xml)
    assert metadata.entity_id == "https://sp.example.org/saml2/metadata"
    assert metadata.acs_url == "https://sp.example.org/acs/alt"
    assert metadata.valid_until is not None
    expected = datetime.now(UTC) + timedelta(hours=5)
    assert abs(metadata.valid_until - expected) < timedelta(minutes=1)


def test_pysaml2_without_is_default_takes_the_first_post_acs(tmp_path: Path) -> None:
    endpoints = {
        "assertion_consumer_service": [
            ("https://sp.example.org/acs/a", BINDING_HTTP_POST),
            ("https://sp.example.org/acs/b", BINDING_HTTP_POST),
        ]
    }
    metadata = parse(create_metadata_string(None, config=pysaml2_config(tmp_path, endpoints)))
    assert metadata.acs_urls == (
        AcsUrl("https://sp.example.org/acs/a", 1, True),
        AcsUrl("https://sp.example.org/acs/b", 2, False),
    )
    assert metadata.slo_url is None


# python3-saml -----------------------------------------------------------------------------


def test_python3_saml_builder_metadata_is_read() -> None:
    xml = onelogin_metadata(
        ONELOGIN_SP,
        pem("sp"),
        authnsign=True,
        valid_until=datetime(2099, 1, 1),
        cache_duration=3600,
    )
    metadata = parse(xml)
    assert metadata == SpMetadata(
        entity_id="https://app.example.net/metadata/",
        acs_urls=(AcsUrl("https://app.example.net/acs", 1, True),),
        slo_url="https://app.example.net/sls",
        signing_certificates=(pem("sp"),),
        encryption_certificates=(pem("sp"),),
        encryption_methods=(),
        authn_requests_signed=True,
        name_id_format=c.NAMEID_EMAIL,
        cache_duration=timedelta(hours=1),
        valid_until=datetime(2099, 1, 1, tzinfo=UTC),
    )


def test_python3_saml_settings_metadata_with_a_next_certificate_is_read() -> None:
    private_key, certificate = key_pair("sp")
    settings = OneLogin_Saml2_Settings(
        {
            "strict": True,
            "sp": {
                **ONELOGIN_SP,
                "NameIDFormat": c.NAMEID_UNSPECIFIED,
                "x509cert": certificate.decode(),
                "x509certNew": pem("sp-next"),
                "privateKey": private_key.decode(),
            },
            "security": {"authnRequestsSigned": False, "wantAssertionsEncrypted": True},
        },
        sp_validation_only=True,
    )
    metadata = parse(settings.get_sp_metadata())
    # python3-saml writes the current certificate's KeyDescriptors before the next one's.
    assert metadata.signing_certificates == (pem("sp"), pem("sp-next"))
    assert metadata.encryption_certificates == (pem("sp"), pem("sp-next"))
    assert metadata.authn_requests_signed is False
    assert metadata.name_id_format == c.NAMEID_UNSPECIFIED
    assert metadata.cache_duration == timedelta(weeks=1)  # python3-saml's PT604800S
    assert metadata.valid_until is not None and metadata.valid_until > NOW


# Shibboleth SP and mod_auth_mellon, as they publish their metadata --------------------------

SHIBBOLETH = f"""<!--
This is example metadata only. Do *NOT* supply it as is without review.
 -->
<md:EntityDescriptor xmlns:md="{MD}" ID="_4b2c2460" entityID="https://wiki.example.edu/shibboleth">
  <md:Extensions xmlns:alg="urn:oasis:names:tc:SAML:metadata:algsupport">
    <alg:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
    <alg:SigningMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
  </md:Extensions>
  <md:SPSSODescriptor protocolSupportEnumeration="{c.SAMLP_NS} \
urn:oasis:names:tc:SAML:1.1:protocol urn:oasis:names:tc:SAML:1.0:protocol">
    <md:Extensions>
      <init:RequestInitiator xmlns:init="urn:oasis:names:tc:SAML:profiles:SSO:request-init" \
Binding="urn:oasis:names:tc:SAML:profiles:SSO:request-init" \
Location="https://wiki.example.edu/Shibboleth.sso/Login"/>
    </md:Extensions>
    <md:KeyDescriptor>
      <ds:KeyInfo xmlns:ds="{c.DS_NS}">
        <ds:KeyName>wiki.example.edu</ds:KeyName>
        <ds:X509Data>
          <ds:X509SubjectName>CN=wiki.example.edu</ds:X509SubjectName>
          <ds:X509Certificate>{der_b64("sp", wrap=64)}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
      <md:EncryptionMethod Algorithm="{GCM128}"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes192-gcm"/>
      <md:EncryptionMethod Algorithm="{GCM256}"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"/>
      <md:EncryptionMethod Algorithm="{OAEP}"/>
    </md:KeyDescriptor>
    <md:ArtifactResolutionService Binding="{SOAP}" \
Location="https://wiki.example.edu/Shibboleth.sso/Artifact/SOAP" index="1"/>
    <md:SingleLogoutService Binding="{SOAP}" Location="https://wiki.example.edu/Shibboleth.sso/SLO/SOAP"/>
    <md:SingleLogoutService Binding="{BINDING_HTTP_REDIRECT}" \
Location="https://wiki.example.edu/Shibboleth.sso/SLO/Redirect"/>
    <md:SingleLogoutService Binding="{BINDING_HTTP_POST}" \
Location="https://wiki.example.edu/Shibboleth.sso/SLO/POST"/>
    <md:ManageNameIDService Binding="{BINDING_HTTP_REDIRECT}" \
Location="https://wiki.example.edu/Shibboleth.sso/NIM/Redirect"/>
    <md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML2/POST" index="1"/>
    <md:AssertionConsumerService Binding="{SIMPLE_SIGN}" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML2/POST-SimpleSign" index="2"/>
    <md:AssertionConsumerService Binding="{BINDING_HTTP_ARTIFACT}" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML2/Artifact" index="3"/>
    <md:AssertionConsumerService Binding="{PAOS}" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML2/ECP" index="4"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:1.0:profiles:browser-post" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML/POST" index="5"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:1.0:profiles:artifact-01" \
Location="https://wiki.example.edu/Shibboleth.sso/SAML/Artifact" index="6"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""

MELLON = f"""<EntityDescriptor entityID="https://app.example.com/mellon/metadata" \
xmlns="{MD}" xmlns:ds="{c.DS_NS}">
  <SPSSODescriptor protocolSupportEnumeration="{c.SAMLP_NS}" AuthnRequestsSigned="true">
    <KeyDescriptor use="encryption">
      <ds:KeyInfo xmlns:ds="{c.DS_NS}">
        <ds:X509Data>
          <ds:X509Certificate>{der_b64("mellon", wrap=64)}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </KeyDescriptor>
    <KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="{c.DS_NS}">
        <ds:X509Data>
          <ds:X509Certificate>{der_b64("mellon", wrap=64)}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </KeyDescriptor>
    <SingleLogoutService Binding="{BINDING_HTTP_REDIRECT}" \
Location="https://app.example.com/mellon/logout"/>
    <SingleLogoutService Binding="{BINDING_HTTP_POST}" Location="https://app.example.com/mellon/logout"/>
    <NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</NameIDFormat>
    <AssertionConsumerService Binding="{BINDING_HTTP_POST}" \
Location="https://app.example.com/mellon/postResponse" index="0"/>
    <AssertionConsumerService Binding="{BINDING_HTTP_ARTIFACT}" \
Location="https://app.example.com/mellon/artifactResponse" index="1"/>
    <AssertionConsumerService Binding="{PAOS}" \
Location="https://app.example.com/mellon/paosResponse" index="2"/>
  </SPSSODescriptor>
</EntityDescriptor>
"""


def test_shibboleth_sp_metadata_is_read() -> None:
    metadata = parse(SHIBBOLETH)
    assert metadata.entity_id == "https://wiki.example.edu/shibboleth"
    assert metadata.acs_urls == (
        AcsUrl("https://wiki.example.edu/Shibboleth.sso/SAML2/POST", 1, True),
    )
    assert metadata.slo_url == "https://wiki.example.edu/Shibboleth.sso/SLO/Redirect"
    # A KeyDescriptor without use is for signing and for encryption.
    assert metadata.signing_certificates == metadata.encryption_certificates == (pem("sp"),)
    assert metadata.encryption_methods[:3] == (
        GCM128,
        "http://www.w3.org/2009/xmlenc11#aes192-gcm",
        GCM256,
    )
    assert metadata.encryption_methods[-1] == OAEP and len(metadata.encryption_methods) == 6
    assert metadata.authn_requests_signed is None
    assert metadata.name_id_format is None
    assert metadata.valid_until is None and metadata.cache_duration is None


def test_mod_auth_mellon_metadata_is_read() -> None:
    metadata = parse(MELLON.encode())
    assert metadata.entity_id == "https://app.example.com/mellon/metadata"
    assert metadata.acs_urls == (AcsUrl("https://app.example.com/mellon/postResponse", 0, True),)
    assert metadata.slo_url == "https://app.example.com/mellon/logout"
    assert metadata.signing_certificates == metadata.encryption_certificates == (pem("mellon"),)
    assert metadata.authn_requests_signed is True
    assert metadata.name_id_format == c.NAMEID_TRANSIENT


def test_a_str_with_non_ascii_text_is_read() -> None:
    organization = (
        '<md:Organization><md:OrganizationName xml:lang="de">Müller GmbH</md:OrganizationName>'
        "</md:Organization>"
    )
    xml = minimal().replace("</md:EntityDescriptor>", organization + "</md:EntityDescriptor>")
    assert parse(xml).acs_url == "https://sp.example.org/acs"


# Details of the reading ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "default"),
    [
        ((None, None, None), 0),
        (("false", None, None), 1),
        (("0", "false", "false"), 0),
        ((None, "true", None), 1),
        ((None, "1", "true"), 1),
        (("false", "false", "true"), 2),
    ],
)
def test_the_default_acs_follows_saml_metadata_2_2_3(
    flags: tuple[str | None, ...], default: int
) -> None:
    pairs = zip((5, 3, 9), flags, strict=True)
    acs = "".join(post_acs(index, is_default=flag) for index, flag in pairs)
    metadata = parse(minimal(acs))
    assert [a.is_default for a in metadata.acs_urls] == [n == default for n in range(3)]
    assert [a.index for a in metadata.acs_urls] == [5, 3, 9]


def test_slo_response_location_is_where_logout_responses_go() -> None:
    slo = (
        f'<md:SingleLogoutService Binding="{BINDING_HTTP_POST}" '
        'Location="https://sp.example.org/slo" ResponseLocation="https://sp.example.org/slo/r"/>'
    )
    assert parse(minimal(inside=slo)).slo_url == "https://sp.example.org/slo/r"


def test_loopback_http_endpoints_are_accepted() -> None:
    acs = post_acs(0, "http://localhost:8080/acs") + post_acs(1, "http://[::1]:9000/acs")
    assert [a.url for a in parse(minimal(acs)).acs_urls] == [
        "http://localhost:8080/acs",
        "http://[::1]:9000/acs",
    ]


def test_unsupported_name_id_formats_are_skipped() -> None:
    formats = (
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos</md:NameIDFormat>"
        f"<md:NameIDFormat> {c.NAMEID_EMAIL}\n</md:NameIDFormat>"
        f"<md:NameIDFormat>{c.NAMEID_PERSISTENT}</md:NameIDFormat>"
    )
    assert parse(minimal(inside=formats)).name_id_format == c.NAMEID_EMAIL


def test_encryption_methods_come_from_encryption_keys_only() -> None:
    def key(use: str, name: str, method: str) -> str:
        use_attribute = f' use="{use}"' if use else ""
        return (
            f"<md:KeyDescriptor{use_attribute}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>"
            f"{der_b64(name)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            f'<md:EncryptionMethod Algorithm="{method}"/></md:KeyDescriptor>'
        )

    keys = key("signing", "sp", "urn:ignored") + key("encryption", "sp-enc", GCM256)
    keys += key("encryption", "sp-enc", GCM256) + key("", "sp-both", OAEP)
    metadata = parse(minimal(inside=keys))
    assert metadata.signing_certificates == (pem("sp"), pem("sp-both"))
    assert metadata.encryption_certificates == (pem("sp-enc"), pem("sp-both"))
    assert metadata.encryption_methods == (GCM256, OAEP)


def test_entities_descriptor_with_several_sps_needs_the_entity_id() -> None:
    one = minimal(entity='entityID="https://one.example.org"')
    two = minimal(entity='entityID="https://two.example.org"', acs=post_acs(4))
    idp = idp_metadata(IDP, [idp_cert()], c.NAMEID_EMAIL, False).decode().split("?>", 1)[1]
    xml = f'<md:EntitiesDescriptor xmlns:md="{MD}">{idp}{one}{two}</md:EntitiesDescriptor>'
    error = refused(xml, "several_entities")
    assert "2 service providers" in error.message and "two.example.org" in error.message
    assert parse(xml, entity_id="https://two.example.org").acs_urls == (
        AcsUrl("https://sp.example.org/acs/4", 4, True),
    )
    refused(xml, "no_entity", entity_id="https://three.example.org")
    single = f'<md:EntitiesDescriptor xmlns:md="{MD}">{idp}{two}</md:EntitiesDescriptor>'
    assert parse(single).entity_id == "https://two.example.org"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT604800S", timedelta(weeks=1)),
        ("P1D", timedelta(days=1)),
        ("PT1H30M", timedelta(minutes=90)),
        ("PT0.5S", timedelta(milliseconds=500)),
        (" P1Y2M3DT4H5M6S ", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6)),
    ],
)
def test_cache_duration_is_an_xs_duration(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected
    sp = f'protocolSupportEnumeration="{c.SAMLP_NS}" cacheDuration="{value}"'
    assert parse(minimal(sp=sp)).cache_duration == expected


BAD_DURATIONS = ["P", "PT", "P1DT", "-P1D", "1D", "P1H", "PT1D", "P1.5D", "P9" * 200]
BAD_DURATIONS.append(f"P{'9' * 400}D")  # too long for a timedelta


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_bad_cache_durations_are_refused(value: str) -> None:
    with pytest.raises(MetadataError):
        parse_duration(value)
    refused(minimal(entity=f'entityID="https://sp" cacheDuration="{value}"'), "malformed")


def test_the_shortest_cache_duration_and_earliest_valid_until_in_scope_win() -> None:
    inner = minimal(
        entity='entityID="https://sp.example.org" cacheDuration="P1D" '
        'validUntil="2098-01-01T00:00:00Z"'
    )
    xml = (
        f'<md:EntitiesDescriptor xmlns:md="{MD}" cacheDuration="PT6H" '
        f'validUntil="2099-01-01T00:00:00Z">{inner}</md:EntitiesDescriptor>'
    )
    metadata = parse(xml)
    assert metadata.cache_duration == timedelta(hours=6)
    assert metadata.valid_until == datetime(2098, 1, 1, tzinfo=UTC)


# Refusals -------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    + "]>"
)
LAUGHING = minimal(entity='entityID="https://sp.example.org/&lol9;"')


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE md:EntityDescriptor [<!ENTITY sp "https://sp.example.org">]>',
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE x SYSTEM "https://evil.example/x.dtd">',
    ],
)
def test_a_dtd_is_refused(prolog: str) -> None:
    error = refused(prolog + minimal(), "dtd")
    assert "DTD" in error.message


def test_billion_laughs_is_refused() -> None:
    refused(BILLION_LAUGHS + LAUGHING, "dtd")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ('<!DOCTYPE x [<!ENTITY e "e">]>' + minimal(), "dtd"),
        # libxml2 stops the expansion itself (amplification limit) before the DTD check.
        (BILLION_LAUGHS + LAUGHING, "malformed"),
    ],
)
def test_a_dtd_in_utf16_is_refused_without_expansion(document: str, reason: str) -> None:
    xml = '<?xml version="1.0" encoding="UTF-16"?>' + document
    started = time.monotonic()
    refused(xml.encode("utf-16"), reason)
    assert time.monotonic() - started < 1


def test_oversize_metadata_is_refused() -> None:
    padding = "<!--" + "x" * MAX_METADATA_BYTES + "-->"
    error = refused(minimal(inside=padding), "too_large")
    assert str(MAX_METADATA_BYTES) in error.message


def test_metadata_under_the_size_limit_is_read() -> None:
    padding = "<!--" + "x" * (MAX_METADATA_BYTES - 2000) + "-->"
    assert parse(minimal(inside=padding)).acs_url == "https://sp.example.org/acs"


def expired_metadata() -> str:
    return minimal(entity='entityID="https://sp" validUntil="2020-01-01T00:00:00Z"')


@pytest.mark.parametrize(
    ("xml", "reason", "says"),
    [
        (minimal(acs=""), "no_acs", "HTTP-POST AssertionConsumerService"),
        (
            minimal(acs=f'<md:AssertionConsumerService Binding="{BINDING_HTTP_ARTIFACT}" '
                    'Location="https://sp.example.org/a" index="0"/>'),
            "no_acs",
            "HTTP-POST",
        ),
        (expired_metadata(), "expired", "expired at 2020-01-01"),
        (
            f'<md:EntitiesDescriptor xmlns:md="{MD}" validUntil="2001-01-01T00:00:00">'
            f"{minimal()}</md:EntitiesDescriptor>",
            "expired",
            "expired",
        ),
        (minimal(entity='entityID="https://sp" validUntil="soon"'), "malformed", "valid time"),
        (idp_metadata(IDP, [idp_cert()], c.NAMEID_EMAIL, False), "no_sp", "SPSSODescriptor"),
        (
            minimal(sp='protocolSupportEnumeration="urn:oasis:names:tc:SAML:1.1:protocol"'),
            "no_sp",
            "SAML 2.0",
        ),
        (minimal(entity=""), "no_entity", "entityID"),
        (minimal(entity='entityID="  "'), "no_entity", "entityID"),
        (minimal(entity='entityID="https://sp.example.org/a b"'), "malformed", "spaces"),
        (f'<samlp:AuthnRequest xmlns:samlp="{c.SAMLP_NS}"/>', "not_metadata", "AuthnRequest"),
        ("<md:EntityDescriptor", "malformed", "well-formed"),
        (minimal(post_acs(0).replace(' index="0"', "")), "malformed", "index"),
        (minimal(post_acs(0).replace('"0"', '"-1"')), "malformed", "index"),
        (minimal(post_acs(0).replace('"0"', '"65536"')), "malformed", "index"),
        (minimal(post_acs(0) + post_acs(0, "https://sp.example.org/b")), "malformed", "index 0"),
        (minimal(post_acs(0, is_default="yes")), "malformed", "isDefault"),
        (minimal(post_acs(0, "http://sp.example.org/acs")), "url", "https"),
        (minimal(post_acs(0, "javascript:alert(1)")), "url", "https"),
        (minimal(post_acs(0, "https://sp.example.org/" + "a" * 2048)), "url", "too long"),
        (
            minimal(inside=f'<md:SingleLogoutService Binding="{BINDING_HTTP_REDIRECT}" '
                    'Location="http://sp.example.org/slo"/>'),
            "url",
            "SingleLogoutService",
        ),
        (
            minimal(sp=f'protocolSupportEnumeration="{c.SAMLP_NS}" AuthnRequestsSigned="yes"'),
            "malformed",
            "AuthnRequestsSigned",
        ),
        (
            minimal(inside='<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
                    "<ds:X509Certificate>bm90IGEgY2VydA==</ds:X509Certificate>"
                    "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"),
            "certificate",
            "X509Certificate",
        ),
        (
            minimal(inside='<md:KeyDescriptor use="both"/>'),
            "malformed",
            "use='both'",
        ),
        (
            minimal(inside=f"<md:NameIDFormat>{c.NAMEID_EMAIL}<!-- x --></md:NameIDFormat>"),
            "malformed",
            "NameIDFormat",
        ),
    ],
)
def test_unusable_metadata_is_refused(xml: str | bytes, reason: str, says: str) -> None:
    assert says in refused(xml, reason).message


def test_metadata_errors_are_value_errors() -> None:
    assert issubclass(MetadataError, ValueError)


# The fetcher --------------------------------------------------------------------------------

HUGE_BYTES = 64 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """The routes of the local metadata server."""

    server: MetadataServer
    routes: ClassVar[dict[str, str]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        route = getattr(self, "route_" + self.path.strip("/").replace("-", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route()

    def answer(self, body: bytes, status: int = 200, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/samlmetadata+xml")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.answer(b"", 302, Location=location)

    def route_metadata(self) -> None:
        self.answer(MELLON.encode())

    def route_to_metadata(self) -> None:
        self.redirect("/metadata")

    def route_to_file(self) -> None:
        self.redirect("file:///etc/passwd")

    def route_to_remote_http(self) -> None:
        self.redirect("http://sp.example.org/metadata")

    def route_loop(self) -> None:
        self.redirect("/loop")

    def route_gzip_bomb(self) -> None:
        self.answer(gzip.compress(b" " * (8 * MAX_METADATA_BYTES)), Content_Encoding="gzip")

    def route_declared_huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        self.wfile.write(b"<")

    def route_huge(self) -> None:
        """An endless-looking body without Content-Length, counting what was sent."""
        self.send_response(200)
        self.end_headers()
        chunk = b"x" * 65536
        try:
            while self.server.sent < HUGE_BYTES:
                self.wfile.write(chunk)
                self.server.sent += len(chunk)
        except OSError:
            pass
        finally:
            self.server.huge_done.set()

    def route_slow(self) -> None:
        time.sleep(2)
        self.answer(MELLON.encode())

    def route_drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10000")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.paths: list[str] = []
        self.sent = 0
        self.huge_done = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[MetadataServer]:
    httpd = MetadataServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any request the fetcher would send fails the test."""

    def send(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(requests.Session, "send", send)


def fetch_refused(url: str, reason: str, **kwargs: Any) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        fetch_metadata(url, **kwargs)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


def test_metadata_is_fetched_from_loopback_http(server: MetadataServer) -> None:
    body = fetch_metadata(server.url("/metadata"))
    assert body == MELLON.encode()
    assert parse(body).entity_id == "https://app.example.com/mellon/metadata"


def test_environment_proxies_are_not_used(
    server: MetadataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert fetch_metadata(server.url("/metadata")) == MELLON.encode()


def test_a_relative_redirect_on_loopback_is_followed(server: MetadataServer) -> None:
    assert fetch_metadata(server.url("/to-metadata")) == MELLON.encode()


def test_a_404_is_refused(server: MetadataServer) -> None:
    assert "answered 404" in fetch_refused(server.url("/nothing-here"), "fetch").message


def test_a_huge_body_is_refused_without_reading_it_all(server: MetadataServer) -> None:
    error = fetch_refused(server.url("/huge"), "too_large")
    assert str(MAX_METADATA_BYTES) in error.message
    assert server.huge_done.wait(10)
    assert server.sent < HUGE_BYTES // 4  # the server stopped early: the client hung up


def test_a_declared_huge_body_is_refused_at_once(server: MetadataServer) -> None:
    started = time.monotonic()
    fetch_refused(server.url("/declared-huge"), "too_large")
    assert time.monotonic() - started < 1


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(server: MetadataServer) -> None:
    fetch_refused(server.url("/gzip-bomb"), "too_large")


def test_a_smaller_limit_applies(server: MetadataServer) -> None:
    fetch_refused(server.url("/metadata"), "too_large", max_bytes=100)


def test_a_slow_answer_times_out(server: MetadataServer) -> None:
    started = time.monotonic()
    error = fetch_refused(server.url("/slow"), "fetch", timeout_s=0.3)
    assert "in time" in error.message
    assert time.monotonic() - started < 1.5


def test_a_dripping_body_times_out_at_the_deadline(server: MetadataServer) -> None:
    started = time.monotonic()
    error = fetch_refused(server.url("/drip"), "fetch", timeout_s=0.5)
    assert "in time" in error.message
    assert time.monotonic() - started < 1.5


def test_a_redirect_to_a_file_url_is_refused(server: MetadataServer) -> None:
    error = fetch_refused(server.url("/to-file"), "url")
    assert "file:///etc/passwd" in error.message


def test_a_redirect_to_non_loopback_http_is_refused(server: MetadataServer) -> None:
    before = len(server.paths)
    error = fetch_refused(server.url("/to-remote-http"), "url")
    assert "http://sp.example.org/metadata" in error.message and "https" in error.message
    assert server.paths[before:] == ["/to-remote-http"]


def test_redirects_are_limited(server: MetadataServer) -> None:
    before = len(server.paths)
    assert "more than 3" in fetch_refused(server.url("/loop"), "fetch").message
    assert server.paths[before:] == ["/loop"] * 4


@pytest.mark.usefixtures("no_connections")
@pytest.mark.parametrize(
    "url",
    [
        "http://sp.example.org/metadata",
        "http://10.0.0.1/metadata",
        "file:///etc/passwd",
        "ftp://sp.example.org/metadata",
        "https:///metadata",
        "https://sp.example.org/metadata#fragment",
        "metadata.xml",
    ],
)
def test_urls_other_than_https_or_loopback_http_are_refused_before_any_request(url: str) -> None:
    fetch_refused(url, "url")


def test_an_unreachable_https_url_is_refused() -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    assert "could not be fetched" in fetch_refused(f"https://127.0.0.1:{port}/md", "fetch").message
