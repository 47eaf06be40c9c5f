"""The HTTP-Redirect and HTTP-POST bindings: decoding received messages, encoding ours."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlencode

from idp.saml import constants as c
from idp.saml.errors import SamlRefusal
from idp.saml.signing import SigningKey
from idp.saml.xml import MAX_XML_BYTES

MAX_BASE64_CHARS = (MAX_XML_BYTES + 2) // 3 * 4
MAX_RELAY_STATE_BYTES = 1024
SIGNED_QUERY_PARAMS = ("RelayState", "SigAlg")
WHITESPACE = str.maketrans("", "", " \t\r\n")


@dataclass(frozen=True)
class QuerySignature:
    """An HTTP-Redirect signature: the exact signed query bytes, ``SigAlg`` and ``Signature``."""

    signed: bytes
    algorithm: str
    value: bytes


@dataclass(frozen=True)
class ReceivedMessage:
    """A decoded SAML message as it arrived, before it is parsed."""

    xml: bytes
    binding: str
    relay_state: str | None
    query_signature: QuerySignature | None = None


def decode_redirect(query_string: bytes | str, param: str = "SAMLRequest") -> ReceivedMessage:
    """Decode an HTTP-Redirect message from the raw query string (base64, raw DEFLATE)."""
    raw = _raw_params(query_string, (param, "RelayState", "SigAlg", "Signature"))
    if param not in raw:
        raise SamlRefusal("bad_encoding", f"The address carries no {param} parameter.")
    xml = _inflate(_base64(_unquote(raw[param]), param))
    relay_state = check_relay_state(_unquote(raw["RelayState"]) if "RelayState" in raw else None)
    signature = None
    if "SigAlg" in raw or "Signature" in raw:
        if "SigAlg" not in raw or "Signature" not in raw:
            raise SamlRefusal(
                "signature_invalid", "A signed request needs both SigAlg and Signature parameters."
            )
        signed = "&".join(
            f"{name}={raw[name]}" for name in (param, *SIGNED_QUERY_PARAMS) if name in raw
        )
        signature = QuerySignature(
            signed=signed.encode("ascii"),
            algorithm=_unquote(raw["SigAlg"]),
            value=_base64(_unquote(raw["Signature"]), "Signature"),
        )
    return ReceivedMessage(xml, c.BINDING_REDIRECT, relay_state, signature)


def decode_post(form: Mapping[str, str], param: str = "SAMLRequest") -> ReceivedMessage:
    """Decode an HTTP-POST message from the submitted form (base64)."""
    value = form.get(param)
    if value is None:
        raise SamlRefusal("bad_encoding", f"The form carries no {param} field.")
    return ReceivedMessage(
        _base64(value, param), c.BINDING_POST, check_relay_state(form.get("RelayState"))
    )


def encode_post(xml: bytes) -> str:
    """The base64 value of an HTTP-POST form field."""
    return base64.b64encode(xml).decode("ascii")


def redirect_url(
    location: str, param: str, xml: bytes, relay_state: str | None, key: SigningKey
) -> str:
    """An HTTP-Redirect URL to ``location`` carrying the message, its query signed RSA-SHA256."""
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    params = [(param, encode_post(deflater.compress(xml) + deflater.flush()))]
    if relay_state is not None:
        params.append(("RelayState", relay_state))
    params.append(("SigAlg", c.SIG_RSA_SHA256))
    query = urlencode(params)
    signature = base64.b64encode(key.sign_bytes(query.encode("ascii"))).decode("ascii")
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{query}&{urlencode({'Signature': signature})}"


def _raw_params(query_string: bytes | str, names: tuple[str, ...]) -> dict[str, str]:
    """The still-encoded values of ``names`` in the query; a repeated name is refused."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    if not query_string.isascii():
        raise SamlRefusal("bad_encoding", "The address holds characters that are not URL-encoded.")
    found: dict[str, str] = {}
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if name in names:
            if name in found:
                raise SamlRefusal("bad_encoding", f"The address carries {name} more than once.")
            found[name] = value
    return found


def _unquote(value: str) -> str:
    try:
        return unquote_plus(value, errors="strict")
    except UnicodeDecodeError:
        raise SamlRefusal(
            "bad_encoding", "A parameter of the address is not valid UTF-8."
        ) from None


def _base64(value: str, name: str) -> bytes:
    compact = value.translate(WHITESPACE)
    if len(compact) > MAX_BASE64_CHARS:
        raise SamlRefusal("too_large", f"{name} is larger than {MAX_XML_BYTES} bytes.")
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError:
        raise SamlRefusal("bad_encoding", f"{name} is not valid base64.") from None


def _inflate(data: bytes) -> bytes:
    """Raw DEFLATE, never producing more than the message size limit (no zip bombs)."""
    inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
    try:
        xml = inflater.decompress(data, MAX_XML_BYTES + 1)
    except zlib.error:
        raise SamlRefusal("bad_encoding", "The message does not inflate (raw DEFLATE).") from None
    if len(xml) > MAX_XML_BYTES:
        raise SamlRefusal(
            "too_large", f"The inflated message is larger than {MAX_XML_BYTES} bytes."
        )
    if not inflater.eof:
        raise SamlRefusal("bad_encoding", "The message is truncated (incomplete DEFLATE data).")
    return xml


def check_relay_state(value: str | None) -> str | None:
    """RelayState unchanged, refused beyond 1024 bytes (the binding's 80 are not enforced)."""
    if value is None:
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SamlRefusal("bad_encoding", "RelayState is not valid text.") from None
    if size > MAX_RELAY_STATE_BYTES:
        raise SamlRefusal(
            "relay_state_too_long",
            f"RelayState is {size} bytes long; at most {MAX_RELAY_STATE_BYTES} are accepted.",
        )
    return value
