"""Every CONTRACT §4 refusal of the SAML core, hostile XML, signature wrapping, and a fuzz test."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from saml_attacks import AUTHN_MOVES, BARE_DOCTYPE, LOGOUT_MOVES, XML_ATTACKS, wrapped
from saml_core_helpers import (
    ACS_URL,
    IDP,
    SKEW,
    SP_ENTITY_ID,
    authn_request_xml,
    b64_deflate,
    key_pair,
    logout_request_xml,
    now,
    redirect_query,
    sign_xml,
    sp_cert,
    sp_config,
)

from idp.saml import (
    AuthnRequest,
    LogoutRequest,
    ReceivedMessage,
    SamlRefusal,
    SpConfig,
    decode_post,
    decode_redirect,
    parse_authn_request,
    parse_logout_request,
)
from idp.saml import constants as c
from idp.saml.xml import MAX_XML_BYTES, format_instant

SHA256_ESCAPED = quote(c.SIG_RSA_SHA256, safe="")
MD5 = "http://www.w3.org/2001/04/xmldsig-more#rsa-md5"
UNSIGNED_SP = sp_config()
VERIFYING_SP = sp_config(sp_certificate=sp_cert())
REQUIRING_SP = sp_config(sp_certificate=sp_cert(), want_authn_requests_signed=True)


def post(xml: bytes, relay_state: str | None = None) -> ReceivedMessage:
    form = {"SAMLRequest": base64.b64encode(xml).decode()}
    if relay_state is not None:
        form["RelayState"] = relay_state
    return decode_post(form)


def accept(message: ReceivedMessage, sp: SpConfig = UNSIGNED_SP) -> AuthnRequest:
    return parse_authn_request(message, sp, IDP, now=now(), clock_skew=SKEW)


def refused(
    message: ReceivedMessage | Callable[[], ReceivedMessage], sp: SpConfig = UNSIGNED_SP
) -> SamlRefusal:
    """The refusal raised while decoding (``message`` a callable) or parsing a request."""
    with pytest.raises(SamlRefusal) as caught:
        accept(message() if callable(message) else message, sp)
    assert caught.value.message
    return caught.value


def refused_query(query_string: str | bytes, sp: SpConfig = UNSIGNED_SP) -> SamlRefusal:
    return refused(lambda: decode_redirect(query_string), sp)


def refused_form(form: dict[str, str], sp: SpConfig = UNSIGNED_SP) -> SamlRefusal:
    return refused(lambda: decode_post(form), sp)


# Decoding ---------------------------------------------------------------------------------


def test_well_formed_requests_are_accepted_by_both_bindings() -> None:
    xml = authn_request_xml()
    by_redirect = accept(decode_redirect(redirect_query(xml, relay_state="abc")))
    by_post = accept(post(xml))
    assert by_redirect == by_post
    assert by_redirect.id == "_authn-request-1"
    assert by_redirect.name_id_format == c.NAMEID_EMAIL


@pytest.mark.parametrize("value", ["not base64!", "QUJD=Q", "QUJ", "\u00e9\u00e9\u00e9\u00e9"])
def test_bad_base64_is_refused(value: str) -> None:
    assert refused_form({"SAMLRequest": value}).reason == "bad_encoding"
    assert refused_query("SAMLRequest=" + quote(value)).reason == "bad_encoding"


def test_base64_with_line_breaks_is_accepted() -> None:
    encoded = base64.encodebytes(authn_request_xml()).decode()
    assert "\n" in encoded
    assert accept(decode_post({"SAMLRequest": encoded})).id == "_authn-request-1"


@pytest.mark.parametrize(
    "query_string",
    [
        "",
        "RelayState=x",
        "SAMLRequest=" + quote(base64.b64encode(authn_request_xml()).decode()),
        "SAMLRequest=" + quote(b64_deflate(authn_request_xml())[:-12]),
        "SAMLRequest=%ff%fe",
        b"SAMLRequest=\xff",
        "SAMLRequest=" + quote(b64_deflate(authn_request_xml())) + "&SAMLRequest=x",
    ],
    ids=["empty", "no-request", "not-deflated", "truncated", "bad-utf8", "raw-bytes", "repeated"],
)
def test_undecodable_redirect_is_refused(query_string: str) -> None:
    assert refused_query(query_string).reason == "bad_encoding"


def test_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compressobj(wbits=-15)
    payload = bomb.compress(b"<a>" + b" " * 50_000_000) + bomb.flush()
    query = "SAMLRequest=" + quote(base64.b64encode(payload).decode())
    tracemalloc.start()
    try:
        assert refused_query(query).reason == "too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_XML_BYTES + 4 * len(query)


def test_oversized_messages_are_refused() -> None:
    big = authn_request_xml(
        extra="<samlp:Extensions>" + "x" * MAX_XML_BYTES + "</samlp:Extensions>"
    )
    assert refused_form({"SAMLRequest": base64.b64encode(big).decode()}).reason == "too_large"
    assert refused_form({"SAMLRequest": "A" * (2 * MAX_XML_BYTES)}).reason == "too_large"
    assert refused_query(redirect_query(big)).reason == "too_large"


@pytest.mark.parametrize("size", [81, 1024])
def test_relay_state_up_to_1024_bytes_passes_through_unchanged(size: int) -> None:
    relay_state = "é" * (size // 2) + "x" * (size % 2)
    assert len(relay_state.encode()) == size
    assert (
        decode_redirect(redirect_query(authn_request_xml(), relay_state)).relay_state == relay_state
    )
    assert post(authn_request_xml(), relay_state).relay_state == relay_state


def test_relay_state_over_1024_bytes_is_refused() -> None:
    relay_state = "x" * 1025
    with pytest.raises(SamlRefusal) as caught:
        decode_redirect(redirect_query(authn_request_xml(), relay_state))
    assert caught.value.reason == "relay_state_too_long"
    with pytest.raises(SamlRefusal) as caught:
        post(authn_request_xml(), relay_state)
    assert caught.value.reason == "relay_state_too_long"


# Hostile XML ------------------------------------------------------------------------------


@pytest.mark.parametrize(("prologue", "issuer"), list(XML_ATTACKS.values()), ids=list(XML_ATTACKS))
@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_dtds_and_entities_are_refused(prologue: bytes, issuer: str | None, binding: str) -> None:
    xml = prologue + authn_request_xml(issuer=issuer or SP_ENTITY_ID)
    message = decode_redirect(redirect_query(xml)) if binding == "redirect" else post(xml)
    refusal = refused(message)
    assert refusal.reason == "dtd"
    assert "root:" not in refusal.message


def test_dtd_in_another_encoding_is_refused() -> None:
    xml = (BARE_DOCTYPE + authn_request_xml()).decode().encode("utf-16")
    assert b"<!DOCTYPE" not in xml
    assert refused(post(xml)).reason == "dtd"


@pytest.mark.parametrize(
    "xml",
    [
        b"",
        b"<samlp:AuthnRequest",
        authn_request_xml() + authn_request_xml(),
        authn_request_xml().replace(b"AuthnRequest", b"Response"),
        authn_request_xml().replace(c.SAMLP_NS.encode(), b"urn:example:not-saml"),
        authn_request_xml(Version="1.1"),
        authn_request_xml(ID=None),
        authn_request_xml(ID="x" * 300),
        authn_request_xml(IssueInstant=None),
        authn_request_xml(IssueInstant="yesterday"),
        authn_request_xml(IssueInstant="2024-13-01T00:00:00Z"),
        authn_request_xml(ForceAuthn="yes"),
        authn_request_xml(IsPassive="TRUE"),
        authn_request_xml(extra="<saml:Issuer>https://other.example.com</saml:Issuer>"),
    ],
    ids=[
        "empty",
        "truncated",
        "two-roots",
        "not-authn-request",
        "wrong-namespace",
        "version",
        "no-id",
        "long-id",
        "no-instant",
        "bad-instant",
        "bad-month",
        "bad-force-authn",
        "bad-is-passive",
        "two-issuers",
    ],
)
def test_malformed_requests_are_refused(xml: bytes) -> None:
    assert refused(post(xml)).reason == "malformed"


@pytest.mark.parametrize(
    ("spelling", "value"), [("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_boolean_attributes_take_both_xml_spellings(spelling: str, value: bool) -> None:
    request = accept(post(authn_request_xml(ForceAuthn=spelling, IsPassive=spelling)))
    assert request.force_authn is value
    assert request.is_passive is value


# The CONTRACT §4 rules ----------------------------------------------------------------------


def test_foreign_issuer_is_refused() -> None:
    assert (
        refused(post(authn_request_xml(issuer="https://evil.example.com"))).reason
        == "issuer_mismatch"
    )
    no_issuer = authn_request_xml().replace(
        b"<saml:Issuer>" + SP_ENTITY_ID.encode() + b"</saml:Issuer>", b""
    )
    assert refused(post(no_issuer)).reason == "issuer_mismatch"


def test_foreign_acs_url_is_refused_and_an_absent_one_accepted() -> None:
    refusal = refused(
        post(authn_request_xml(AssertionConsumerServiceURL="https://evil.example.com/acs"))
    )
    assert refusal.reason == "acs_mismatch"
    assert "https://evil.example.com/acs" in refusal.message
    assert accept(post(authn_request_xml(AssertionConsumerServiceURL=None))).acs_url is None


@pytest.mark.parametrize(
    "binding", [c.BINDING_REDIRECT, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"]
)
def test_other_protocol_bindings_are_refused(binding: str) -> None:
    assert refused(post(authn_request_xml(ProtocolBinding=binding))).reason == "binding"


def test_absent_protocol_binding_means_post() -> None:
    assert accept(post(authn_request_xml(ProtocolBinding=None))).protocol_binding is None


def test_wrong_destination_is_refused_and_an_absent_one_accepted() -> None:
    assert refused(post(authn_request_xml(Destination=IDP.slo_url))).reason == "destination"
    assert (
        refused(
            post(authn_request_xml(Destination="https://idp.example.com/saml/acme/other/sso"))
        ).reason
        == "destination"
    )
    assert accept(post(authn_request_xml(Destination=None))).destination is None


@pytest.mark.parametrize("offset", [-(SKEW + 5), SKEW + 5], ids=["stale", "future"])
def test_issue_instant_outside_the_clock_skew_is_refused(offset: int) -> None:
    instant = format_instant(now() + timedelta(seconds=offset))
    assert refused(post(authn_request_xml(IssueInstant=instant))).reason == "stale"


@pytest.mark.parametrize("offset", [-(SKEW - 5), SKEW - 5], ids=["past", "future"])
def test_issue_instant_within_the_clock_skew_is_accepted(offset: int) -> None:
    instant = (now() + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    accept(post(authn_request_xml(IssueInstant=instant)))


# Signatures ---------------------------------------------------------------------------------


def test_missing_signature_is_refused_when_required() -> None:
    xml = authn_request_xml()
    assert refused(decode_redirect(redirect_query(xml)), REQUIRING_SP).reason == "signature_missing"
    assert refused(post(xml), REQUIRING_SP).reason == "signature_missing"
    accept(post(xml), VERIFYING_SP)


def test_signature_is_ignored_without_sp_certificate() -> None:
    forged_redirect = redirect_query(authn_request_xml(), signer="sp-other")
    accept(decode_redirect(forged_redirect), UNSIGNED_SP)
    accept(post(sign_xml(authn_request_xml(), "sp-other")), UNSIGNED_SP)


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        (c.SIG_RSA_SHA1, "rsa"),
        (c.SIG_RSA_SHA256, "rsa"),
        (c.SIG_RSA_SHA384, "rsa"),
        (c.SIG_RSA_SHA512, "rsa"),
        (c.SIG_ECDSA_SHA256, "ec"),
        (c.SIG_ECDSA_SHA384, "ec"),
        (c.SIG_ECDSA_SHA512, "ec"),
    ],
)
def test_accepted_signature_algorithms_verify(algorithm: str, kind: str) -> None:
    signer = f"sp-{kind}"
    sp = sp_config(
        sp_certificate=key_pair(signer, kind)[1].decode(), want_authn_requests_signed=True
    )
    xml = authn_request_xml()
    accept(decode_redirect(redirect_query(xml, "rs", signer, algorithm, kind)), sp)
    accept(post(sign_xml(xml, signer, algorithm, kind)), sp)
    forged = redirect_query(xml, "rs", signer, algorithm, kind).replace(
        "RelayState=rs", "RelayState=rt"
    )
    assert refused(decode_redirect(forged), sp).reason == "signature_invalid"


def test_redirect_signature_covers_the_exact_received_bytes() -> None:
    """An SP that encodes with lowercase escapes signs those bytes; re-encoding would break it."""
    query = redirect_query(authn_request_xml(), "https://sp.example.com/x", "sp")
    lowered = query.replace("%3A%2F%2F", "%3a%2f%2f")
    assert refused(decode_redirect(lowered), REQUIRING_SP).reason == "signature_invalid"
    import xmlsec
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    signed_part = lowered.split("&Signature=")[0]
    signature = OneLogin_Saml2_Utils.sign_binary(
        signed_part, key_pair("sp")[0].decode(), xmlsec.Transform.RSA_SHA256
    )
    lowercase_signed = (
        signed_part + "&Signature=" + quote(base64.b64encode(signature).decode(), safe="")
    )
    assert accept(decode_redirect(lowercase_signed), REQUIRING_SP).id == "_authn-request-1"
    reordered = "&".join(reversed(lowercase_signed.split("&")))
    assert accept(decode_redirect(reordered), REQUIRING_SP).id == "_authn-request-1"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda q: q.replace("SigAlg=", "SigAlg=x"), "signature_invalid"),
        (
            lambda q: q.replace(SHA256_ESCAPED, quote(c.SIG_RSA_SHA512, safe="")),
            "signature_invalid",
        ),
        (lambda q: q.replace(SHA256_ESCAPED, quote(MD5, safe="")), "signature_invalid"),
        (lambda q: q.replace("&SigAlg=" + SHA256_ESCAPED, ""), "signature_invalid"),
        (lambda q: q.split("&Signature=")[0], "signature_invalid"),
        (lambda q: q.split("&Signature=")[0] + "&Signature=AAAA", "signature_invalid"),
        (lambda q: q.split("&Signature=")[0] + "&Signature=%%%", "bad_encoding"),
        (lambda q: q.split("&SigAlg=")[0], "signature_missing"),
    ],
    ids=[
        "garbage-sigalg",
        "other-sigalg",
        "md5",
        "no-sigalg",
        "no-signature",
        "wrong",
        "undecodable",
        "stripped",
    ],
)
def test_bad_redirect_signatures_are_refused(mangle: Callable[[str], str], reason: str) -> None:
    query = mangle(redirect_query(authn_request_xml(), "rs", "sp"))
    assert refused_query(query, REQUIRING_SP).reason == reason


def test_post_signature_by_another_key_is_refused_even_with_its_certificate_inside() -> None:
    signed = sign_xml(authn_request_xml(), "sp-other")
    assert b"X509Certificate" in signed
    assert refused(post(signed), VERIFYING_SP).reason == "signature_invalid"


def test_post_signature_over_changed_content_is_refused() -> None:
    signed = sign_xml(authn_request_xml())
    changed = signed.replace(ACS_URL.encode(), ACS_URL.encode() + b"2")
    assert refused(post(changed), VERIFYING_SP).reason == "signature_invalid"
    changed = signed.replace(b"_authn-request-1", b"_authn-request-2")
    assert refused(post(changed), VERIFYING_SP).reason == "signature_invalid"


# Signature wrapping -------------------------------------------------------------------------


def _signed(request_id: str = "_authn-request-1") -> bytes:
    return sign_xml(authn_request_xml(ID=request_id))


def _strip_declaration(xml: bytes) -> bytes:
    return xml.split(b"?>", 1)[1] if xml.startswith(b"<?xml") else xml


WRAPPING_REFUSALS = {  # move -> the refusal's reason and words of its message
    "wrapped in a forged root": ("signature_invalid", "directly under its root"),
    "signature moved to a forged root": ("signature_invalid", "whole message"),
    "reference to another ID": ("signature_invalid", "whole message"),
    "duplicate ID": ("signature_invalid", "more than once"),
    "second request element": ("signature_invalid", "does not verify"),
    "second Assertion": ("signature_invalid", "does not verify"),
    "second Issuer": ("malformed", "more than one"),
    "comment inside Issuer": ("malformed", "comment"),
    "comment inside NameID": ("malformed", "comment"),
    "comment inside SessionIndex": ("malformed", "comment"),
}
WRAPPINGS = [("authn", move) for move in AUTHN_MOVES] + [("logout", move) for move in LOGOUT_MOVES]


def signed_request(kind: str) -> bytes:
    """A fresh AuthnRequest or LogoutRequest with an enveloped signature by the SP's key."""
    return sign_xml(authn_request_xml() if kind == "authn" else logout_request_xml())


def refusal_of(kind: str, message: ReceivedMessage, sp: SpConfig) -> SamlRefusal:
    """The refusal of a request of that kind; fails when it is accepted."""
    parse = parse_authn_request if kind == "authn" else parse_logout_request
    with pytest.raises(SamlRefusal) as caught:
        parse(message, sp, IDP, now=now(), clock_skew=SKEW)
    return caught.value


@pytest.mark.parametrize("sp", [VERIFYING_SP, REQUIRING_SP], ids=["verifying", "requiring"])
@pytest.mark.parametrize(("kind", "move"), WRAPPINGS, ids=[f"{k}-{m}" for k, m in WRAPPINGS])
def test_signature_wrapping_is_refused(kind: str, move: str, sp: SpConfig) -> None:
    """Exclusive C14N drops comments, so a comment splitting a name keeps the signature valid:
    the text check refuses it; every other move is caught by the signature checks."""
    xml = wrapped(signed_request(kind), [LOGOUT_MOVES[move]])
    refusal = refusal_of(kind, post(xml), sp)
    reason, words = WRAPPING_REFUSALS[move]
    assert (refusal.reason, words in refusal.message) == (reason, True), refusal.message


def test_second_signature_is_refused() -> None:
    signed = _strip_declaration(_signed())
    from lxml import etree

    root = etree.fromstring(signed)
    root.append(etree.fromstring(etree.tostring(root.find(f"{{{c.DS_NS}}}Signature"))))
    assert refused(post(etree.tostring(root)), VERIFYING_SP).reason == "signature_invalid"


def test_signature_with_other_transforms_is_refused() -> None:
    signed = _signed().replace(
        c.TRANSFORM_EXC_C14N.encode() + b'"/>\n</ds:Transforms>',
        c.TRANSFORM_EXC_C14N.encode()
        + b'"/><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"/></ds:Transforms>',
    )
    assert b"xpath" in signed
    assert refused(post(signed), VERIFYING_SP).reason == "signature_invalid"


@pytest.mark.parametrize(
    ("c14n", "digest", "method"),
    [
        ("InclC14N", "Sha256", "RsaSha256"),
        ("ExclC14NWithComments", "Sha256", "RsaSha256"),
        ("ExclC14N", "Md5", "RsaSha256"),
        ("ExclC14N", "Sha256", "RsaMd5"),
    ],
    ids=["inclusive-c14n", "c14n-with-comments", "md5-digest", "rsa-md5"],
)
def test_signature_with_weak_or_foreign_algorithms_is_refused(
    c14n: str, digest: str, method: str
) -> None:
    import xmlsec
    from lxml import etree

    root = etree.fromstring(authn_request_xml())
    transforms = xmlsec.constants
    signature = xmlsec.template.create(
        root, getattr(transforms, "Transform" + c14n), getattr(transforms, "Transform" + method)
    )
    root.insert(1, signature)
    reference = xmlsec.template.add_reference(
        signature, getattr(transforms, "Transform" + digest), uri="#_authn-request-1"
    )
    xmlsec.template.add_transform(reference, transforms.TransformEnveloped)
    xmlsec.template.add_transform(reference, transforms.TransformExclC14N)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(key_pair("sp")[0], transforms.KeyDataFormatPem)
    context.register_id(root, "ID")
    context.sign(signature)
    assert refused(post(etree.tostring(root)), VERIFYING_SP).reason == "signature_invalid"


def test_nested_signature_is_refused() -> None:
    """A signature below the root (e.g. in Extensions) does not count and is refused."""
    signed = _strip_declaration(sign_xml(authn_request_xml(ID="_inner")))
    forged = authn_request_xml(extra=f"<samlp:Extensions>{signed.decode()}</samlp:Extensions>")
    assert refused(post(forged), REQUIRING_SP).reason == "signature_invalid"


# LogoutRequests ------------------------------------------------------------------------------


def accept_logout(message: ReceivedMessage, sp: SpConfig = UNSIGNED_SP) -> LogoutRequest:
    return parse_logout_request(message, sp, IDP, now=now(), clock_skew=SKEW)


def refused_logout(message: ReceivedMessage, sp: SpConfig = UNSIGNED_SP) -> str:
    with pytest.raises(SamlRefusal) as caught:
        accept_logout(message, sp)
    return caught.value.reason


def test_logout_request_is_read() -> None:
    request = accept_logout(post(logout_request_xml()))
    assert request.name_id.value == "ada@example.com"
    assert request.name_id.format == c.NAMEID_EMAIL
    assert request.session_indexes == ("_s1",)
    assert (
        accept_logout(
            decode_redirect(redirect_query(logout_request_xml(), None, "sp")), REQUIRING_SP
        )
        == request
    )


def test_logout_request_refusals() -> None:
    assert (
        refused_logout(post(logout_request_xml(issuer="https://evil.example.com")))
        == "issuer_mismatch"
    )
    assert refused_logout(post(logout_request_xml(Destination=IDP.sso_url))) == "destination"
    stale = format_instant(now() - timedelta(seconds=SKEW + 5))
    assert refused_logout(post(logout_request_xml(IssueInstant=stale))) == "stale"
    expired = format_instant(now() - timedelta(seconds=SKEW + 5))
    assert refused_logout(post(logout_request_xml(NotOnOrAfter=expired))) == "stale"
    assert refused_logout(post(logout_request_xml()), REQUIRING_SP) == "signature_missing"
    forged = redirect_query(logout_request_xml(), None, "sp-other")
    assert refused_logout(decode_redirect(forged), REQUIRING_SP) == "signature_invalid"
    assert refused_logout(post(authn_request_xml())) == "malformed"
    encrypted = logout_request_xml().replace(b"saml:NameID", b"saml:EncryptedID")
    assert refused_logout(post(encrypted)) == "malformed"
    assert refused_logout(post(BARE_DOCTYPE + logout_request_xml())) == "dtd"


# Fuzzing ---------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = authn_request_xml()
SIGNED = sign_xml(VALID)


def _outcome(decode: Callable[[], ReceivedMessage]) -> None:
    """Decoding and parsing ends in a request or a SamlRefusal, never in another exception."""
    for sp in (UNSIGNED_SP, VERIFYING_SP, REQUIRING_SP):
        try:
            message = decode()
            assert isinstance(
                parse_authn_request(message, sp, IDP, now=now(), clock_skew=SKEW), AuthnRequest
            )
        except SamlRefusal as refusal:
            assert refusal.reason and refusal.message
        try:
            message = decode()
            assert isinstance(
                parse_logout_request(message, sp, IDP, now=now(), clock_skew=SKEW), LogoutRequest
            )
        except SamlRefusal as refusal:
            assert refusal.reason and refusal.message


@FUZZ
@given(st.one_of(st.text(), st.binary()))
def test_fuzz_any_query_string(query_string: str | bytes) -> None:
    _outcome(lambda: decode_redirect(query_string))


@FUZZ
@given(st.binary(max_size=4096), st.one_of(st.none(), st.text(max_size=2000)))
def test_fuzz_any_deflated_bytes(payload: bytes, relay_state: str | None) -> None:
    deflater = zlib.compressobj(wbits=-15)
    encoded = base64.b64encode(deflater.compress(payload) + deflater.flush()).decode()
    query = "SAMLRequest=" + quote(encoded, safe="")
    if relay_state is not None:
        query += "&RelayState=" + quote(relay_state, safe="")
    _outcome(lambda: decode_redirect(query))


@FUZZ
@given(st.dictionaries(st.sampled_from(["SAMLRequest", "RelayState", "x"]), st.text(max_size=3000)))
def test_fuzz_any_form(form: dict[str, str]) -> None:
    _outcome(lambda: decode_post(form))


@FUZZ
@given(
    st.sampled_from([VALID, SIGNED]),
    st.integers(0, len(SIGNED)),
    st.integers(0, 64),
    st.binary(max_size=64),
)
def test_fuzz_mutated_requests(
    original: bytes, position: int, removed: int, inserted: bytes
) -> None:
    mutated = original[:position] + inserted + original[position + removed :]
    _outcome(lambda: decode_post({"SAMLRequest": base64.b64encode(mutated).decode()}))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "ID",
                "Version",
                "IssueInstant",
                "Destination",
                "AssertionConsumerServiceURL",
                "ProtocolBinding",
                "ForceAuthn",
                "IsPassive",
            ]
        ),
        st.one_of(
            st.none(),
            st.text(
                alphabet=st.characters(blacklist_characters='"<&', blacklist_categories=("Cs",)),
                max_size=40,
            ),
        ),
    ),
    st.text(max_size=40).filter(lambda s: "<" not in s and "&" not in s),
)
def test_fuzz_request_attributes(attributes: dict[str, str | None], issuer: str) -> None:
    xml = authn_request_xml(issuer=issuer, **attributes)
    _outcome(lambda: decode_post({"SAMLRequest": base64.b64encode(xml).decode()}))


@FUZZ
@given(
    st.sampled_from(["authn", "logout"]),
    st.lists(st.sampled_from(list(LOGOUT_MOVES)), min_size=1, max_size=4),
)
def test_fuzz_signature_wrapping(kind: str, names: list[str]) -> None:
    """Any chain of wrapping moves on a signed request is refused wherever a certificate
    is configured; by HTTP-Redirect (its signature is on the query) a requiring SP refuses it."""
    moves = [LOGOUT_MOVES[name] for name in names if kind == "logout" or name in AUTHN_MOVES]
    assume(moves)
    xml = wrapped(signed_request(kind), moves)
    for sp in (VERIFYING_SP, REQUIRING_SP):
        assert refusal_of(kind, post(xml), sp).reason in ("signature_invalid", "malformed")
    assert refusal_of(kind, decode_redirect(redirect_query(xml)), REQUIRING_SP).reason in (
        "signature_missing",
        "malformed",
    )


def test_atheris_finds_no_crash_in_the_decoders(tmp_path: Path) -> None:
    """A short coverage-guided run from the seed corpus (longer runs: tests/atheris_saml.py)."""
    harness = Path(__file__).with_name("atheris_saml.py")
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    subprocess.run([sys.executable, harness, "--seeds", seeds], check=True, timeout=120)
    corpus.mkdir()
    options = ["-max_total_time=5", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]
    run = subprocess.run(
        [sys.executable, harness, *options, corpus, seeds],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    executed = re.search(r"stat::number_of_executed_units: (\d+)", run.stderr)
    assert executed and int(executed.group(1)) > 1000, run.stderr[-2000:]
