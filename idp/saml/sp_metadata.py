"""An SP's SAML 2.0 metadata, read into the settings ``PUT …/saml`` takes (CONTRACT §8).

``parse_sp_metadata(xml, now)`` accepts an ``md:EntityDescriptor``, or an
``md:EntitiesDescriptor`` holding exactly one SP (or naming the one wanted by ``entity_id``).
Parsing is as hardened as for protocol messages (no DTD, entities or network; at most
``MAX_METADATA_BYTES``). A metadata signature is not checked: nothing here trusts a signer.
Anything unusable raises :class:`MetadataError` with a sentence a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from idp.saml.config import AcsUrl
from idp.saml.constants import BINDING_POST, BINDING_REDIRECT, DS_NS, NAMEID_FORMATS, SAMLP_NS
from idp.saml.errors import SamlRefusal, quoted
from idp.saml.urls import endpoint_url_problem
from idp.saml.xml import BOOLEANS, XML_WHITESPACE, parse_instant

MAX_METADATA_BYTES = 1_048_576
MAX_ENTITY_ID = 1024
MAX_URL = 2048
MAX_INDEX = 65535  # xs:unsignedShort
MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
NS = {"md": MD_NS, "ds": DS_NS}
SLO_BINDINGS = (BINDING_REDIRECT, BINDING_POST)
ENTITY_ID = re.compile(r"[^\s\x00-\x1f\x7f]+")
DURATION = re.compile(
    r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?!$)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)
DURATION_DAYS = (365, 30, 1)  # a year and a month, for a cache lifetime, approximated


class MetadataError(ValueError):
    """SP metadata that cannot be used (or fetched); ``str()`` says why.

    ``reason`` is a short code for metrics: ``too_large``, ``malformed``, ``dtd``,
    ``not_metadata``, ``no_entity``, ``several_entities``, ``no_sp``, ``no_acs``, ``expired``,
    ``certificate``, ``url``, ``fetch``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SpMetadata:
    """What an SP's metadata says, for the SAML settings.

    ``acs_urls`` are the HTTP-POST AssertionConsumerServices in document order, exactly one
    with ``is_default``; ``slo_url`` is where LogoutResponses go (``ResponseLocation``, else
    ``Location``); certificates are canonical PEM; ``valid_until`` and ``cache_duration`` are
    the earliest and shortest found on the SPSSODescriptor and the elements around it.
    """

    entity_id: str
    acs_urls: tuple[AcsUrl, ...]
    slo_url: str | None
    signing_certificates: tuple[str, ...]
    encryption_certificates: tuple[str, ...]
    encryption_methods: tuple[str, ...]
    authn_requests_signed: bool | None
    name_id_format: str | None
    cache_duration: timedelta | None
    valid_until: datetime | None

    @property
    def acs_url(self) -> str:
        """The default ACS URL."""
        return next(acs.url for acs in self.acs_urls if acs.is_default)


def parse_sp_metadata(
    xml: bytes | str, now: datetime, *, entity_id: str | None = None
) -> SpMetadata:
    """Read SP metadata (``now``: an aware datetime, for ``validUntil``); ``entity_id`` picks
    one entity out of an EntitiesDescriptor describing several SPs."""
    entity = _entity(parse_metadata(xml), entity_id)
    sp = _sp_descriptor(entity)
    found_id, valid_until = _entity_id(entity), _valid_until(sp, now)
    signing, encryption, methods = _keys(sp)
    return SpMetadata(
        entity_id=found_id,
        acs_urls=_acs_urls(sp),
        slo_url=_slo_url(sp),
        signing_certificates=signing,
        encryption_certificates=encryption,
        encryption_methods=methods,
        authn_requests_signed=_optional_boolean(sp, "AuthnRequestsSigned"),
        name_id_format=_name_id_format(sp),
        cache_duration=_cache_duration(sp),
        valid_until=valid_until,
    )


def parse_metadata(xml: bytes | str, max_bytes: int = MAX_METADATA_BYTES) -> etree._Element:
    """Parse like idp.saml.xml.parse (no DTD, entities or network), up to ``max_bytes``."""
    data = xml.encode() if isinstance(xml, str) else xml
    if len(data) > max_bytes:
        raise MetadataError("too_large", f"The metadata is larger than {max_bytes} bytes.")
    if b"<!DOCTYPE" in data:
        raise _dtd_error()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise MetadataError("malformed", f"The metadata is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise _dtd_error()
    return root


def _dtd_error() -> MetadataError:
    return MetadataError(
        "dtd", "The metadata contains a DTD or entity declaration, which is never accepted."
    )


def _entity(root: etree._Element, entity_id: str | None) -> etree._Element:
    """The one EntityDescriptor to read: the root, or the SP (or ``entity_id``) inside it."""
    if root.tag == f"{{{MD_NS}}}EntityDescriptor":
        entities = [root]
    elif root.tag == f"{{{MD_NS}}}EntitiesDescriptor":
        entities = root.findall(".//md:EntityDescriptor", NS)
    else:
        raise MetadataError(
            "not_metadata",
            f"The document is a <{etree.QName(root).localname}>, not SAML 2.0 metadata "
            "(an EntityDescriptor or EntitiesDescriptor).",
        )
    if entity_id is not None:
        return _named(entities, entity_id)
    if len(entities) == 1:
        return entities[0]
    return _only_sp(entities)


def _named(entities: list[etree._Element], entity_id: str) -> etree._Element:
    for entity in entities:
        if (entity.get("entityID") or "").strip(XML_WHITESPACE) == entity_id:
            return entity
    raise MetadataError("no_entity", f"The metadata has no entity {quoted(entity_id)}.")


def _only_sp(entities: list[etree._Element]) -> etree._Element:
    sps = [e for e in entities if e.find("md:SPSSODescriptor", NS) is not None]
    if not sps:
        raise MetadataError("no_sp", "The metadata describes no service provider.")
    if len(sps) > 1:
        names = ", ".join(quoted(e.get("entityID") or "") for e in sps[:5])
        raise MetadataError(
            "several_entities",
            f"The metadata describes {len(sps)} service providers ({names}); "
            "give the metadata of just one.",
        )
    return sps[0]


def _entity_id(entity: etree._Element) -> str:
    value = (entity.get("entityID") or "").strip(XML_WHITESPACE)
    if not value:
        raise MetadataError("no_entity", "The EntityDescriptor has no entityID.")
    if len(value) > MAX_ENTITY_ID or not ENTITY_ID.fullmatch(value):
        raise MetadataError(
            "malformed",
            f"entityID={quoted(value)} is not a URI of at most {MAX_ENTITY_ID} characters "
            "without spaces or control characters.",
        )
    return value


def _sp_descriptor(entity: etree._Element) -> etree._Element:
    """The first SPSSODescriptor that supports the SAML 2.0 protocol."""
    descriptors = entity.findall("md:SPSSODescriptor", NS)
    if not descriptors:
        raise MetadataError("no_sp", "The metadata has no SPSSODescriptor: it is not an SP's.")
    for sp in descriptors:
        if SAMLP_NS in (sp.get("protocolSupportEnumeration") or "").split():
            return sp
    raise MetadataError("no_sp", "The SPSSODescriptor does not support the SAML 2.0 protocol.")


def _acs_urls(sp: etree._Element) -> tuple[AcsUrl, ...]:
    """The HTTP-POST ACSs; the default per SAML metadata §2.2.3 (among them)."""
    found: list[tuple[str, int, bool | None]] = []
    for acs in sp.findall("md:AssertionConsumerService", NS):
        if (acs.get("Binding") or "").strip(XML_WHITESPACE) != BINDING_POST:
            continue
        index = _index(acs)
        if index in (i for _, i, _ in found):
            raise MetadataError("malformed", f"Two HTTP-POST ACSs have index {index}.")
        found.append((_endpoint(acs, "Location"), index, _optional_boolean(acs, "isDefault")))
    if not found:
        raise MetadataError("no_acs", "The metadata has no HTTP-POST AssertionConsumerService.")
    default = _default([flag for _, _, flag in found])
    return tuple(
        AcsUrl(url=url, index=index, is_default=n == default)
        for n, (url, index, _) in enumerate(found)
    )


def _default(flags: list[bool | None]) -> int:
    """The first isDefault="true", else the first without isDefault="false", else the first."""
    if True in flags:
        return flags.index(True)
    return next((n for n, flag in enumerate(flags) if flag is None), 0)


def _index(acs: etree._Element) -> int:
    value = (acs.get("index") or "").strip(XML_WHITESPACE)
    if not value.isascii() or not value.isdigit() or int(value) > MAX_INDEX:
        raise MetadataError(
            "malformed",
            f"An AssertionConsumerService has index={quoted(value)}; "
            f"it needs an index from 0 to {MAX_INDEX}.",
        )
    return int(value)


def _slo_url(sp: etree._Element) -> str | None:
    """Where the first HTTP-Redirect or HTTP-POST SingleLogoutService takes responses."""
    for slo in sp.findall("md:SingleLogoutService", NS):
        if (slo.get("Binding") or "").strip(XML_WHITESPACE) in SLO_BINDINGS:
            name = "ResponseLocation" if slo.get("ResponseLocation") else "Location"
            return _endpoint(slo, name)
    return None


def _endpoint(element: etree._Element, name: str) -> str:
    """An endpoint's URL attribute, held to the API's rule for endpoint URLs."""
    url = (element.get(name) or "").strip(XML_WHITESPACE)
    where = f"The {etree.QName(element).localname} {name}={quoted(url)}"
    problem = "is too long" if len(url) > MAX_URL else endpoint_url_problem(url)
    if problem:
        raise MetadataError("url", f"{where} {problem}.")
    return url


def _keys(sp: etree._Element) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Signing and encryption certificates (PEM) and the encryption methods listed."""
    signing: list[str] = []
    encryption: list[str] = []
    methods: list[str] = []
    for key in sp.findall("md:KeyDescriptor", NS):
        use = (key.get("use") or "").strip(XML_WHITESPACE)
        if use not in ("", "signing", "encryption"):
            raise MetadataError("malformed", f"A KeyDescriptor has use={quoted(use)}.")
        pems = [_pem(c) for c in key.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)]
        if use != "encryption":
            signing.extend(pems)
        if use != "signing":
            encryption.extend(pems)
            methods.extend(
                (m.get("Algorithm") or "").strip(XML_WHITESPACE)
                for m in key.findall("md:EncryptionMethod", NS)
            )
    return _unique(signing), _unique(encryption), _unique(m for m in methods if m)


def _pem(element: etree._Element) -> str:
    """An X509Certificate (base64 DER, any line breaks) as canonical PEM."""
    try:
        der = base64.b64decode("".join(_text(element).split()), validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise MetadataError(
            "certificate", "An X509Certificate in the metadata is not a base64 X.509 certificate."
        ) from None
    return certificate.public_bytes(Encoding.PEM).decode()


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """The values in order, each once."""
    return tuple(dict.fromkeys(values))


def _name_id_format(sp: etree._Element) -> str | None:
    """The first NameIDFormat listed that this IdP can issue."""
    for element in sp.findall("md:NameIDFormat", NS):
        value = _text(element)
        if value in NAMEID_FORMATS:
            return value
    return None


def _text(element: etree._Element) -> str:
    """A simple element's text; markup or a comment inside it is refused."""
    if len(element):
        raise MetadataError(
            "malformed", f"<{etree.QName(element).localname}> holds markup or a comment."
        )
    return (element.text or "").strip(XML_WHITESPACE)


def _optional_boolean(element: etree._Element, name: str) -> bool | None:
    """An xs:boolean attribute (true/false/1/0), None when absent."""
    value = element.get(name)
    if value is None:
        return None
    try:
        return BOOLEANS[value.strip(XML_WHITESPACE)]
    except KeyError:
        raise MetadataError(
            "malformed", f"{name}={quoted(value)} is not a boolean (true, false, 1 or 0)."
        ) from None


def _scope(sp: etree._Element) -> list[etree._Element]:
    """The SPSSODescriptor and every element it sits in, whose validity limits it."""
    return [sp, *sp.iterancestors()]


def _valid_until(sp: etree._Element, now: datetime) -> datetime | None:
    """The earliest validUntil in scope; refused when it has passed."""
    instants: list[datetime] = []
    for element in _scope(sp):
        value = element.get("validUntil")
        if value is not None:
            try:
                instants.append(parse_instant(value, "validUntil"))
            except SamlRefusal as exc:
                raise MetadataError("malformed", exc.message) from None
    if not instants:
        return None
    earliest = min(instants)
    if earliest <= now:
        raise MetadataError("expired", f"The metadata expired at {earliest.isoformat()}.")
    return earliest


def _cache_duration(sp: etree._Element) -> timedelta | None:
    """The shortest cacheDuration in scope."""
    durations = [
        parse_duration(value)
        for element in _scope(sp)
        if (value := element.get("cacheDuration")) is not None
    ]
    return min(durations, default=None)


def parse_duration(value: str) -> timedelta:
    """A non-negative xs:duration (``P1DT2H``, ``PT604800S``); a year is 365 days, a month 30."""
    match = DURATION.fullmatch(value.strip(XML_WHITESPACE))
    if not match:
        raise MetadataError("malformed", f"cacheDuration={quoted(value)} is not an xs:duration.")
    years, months, days, hours, minutes, seconds = (float(g or 0) for g in match.groups())
    day_count = years * DURATION_DAYS[0] + months * DURATION_DAYS[1] + days
    try:
        return timedelta(days=day_count, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise MetadataError("malformed", f"cacheDuration={quoted(value)} is too long.") from None
