"""Coverage-guided fuzzing (atheris/libFuzzer) of the SAML decoders and request validators.

Run by tests/test_saml_core_refusals.py for a few seconds; by hand for longer:
``python tests/atheris_saml.py -max_total_time=600 CORPUS_DIR``. The first input byte picks
how the rest arrives (raw query string, posted base64, posted text, deflated by Redirect);
every input must end in a request or a SamlRefusal, for each kind of SP configuration.
``--seeds DIR`` writes the seed corpus (valid, signed, XML attacks, wrapped) and exits.
"""

from __future__ import annotations

import base64
import sys
import zlib
from pathlib import Path
from urllib.parse import quote

import atheris

with atheris.instrument_imports(include=["idp.saml"]):
    from idp.saml import (
        SamlRefusal,
        decode_post,
        decode_redirect,
        parse_authn_request,
        parse_logout_request,
    )

from saml_attacks import LOGOUT_MOVES, XML_ATTACKS, wrapped
from saml_core_helpers import (
    IDP,
    SKEW,
    authn_request_xml,
    logout_request_xml,
    now,
    sign_xml,
    sp_cert,
    sp_config,
)

SPS = (
    sp_config(),
    sp_config(sp_certificate=sp_cert()),
    sp_config(sp_certificate=sp_cert(), want_authn_requests_signed=True),
)


def _message(data: bytes) -> object:
    mode, payload = (data[0] % 4, data[1:]) if data else (0, b"")
    if mode == 0:
        return decode_redirect(payload)
    if mode == 1:
        return decode_post({"SAMLRequest": base64.b64encode(payload).decode()})
    if mode == 2:
        return decode_post({"SAMLRequest": payload.decode("latin-1")})
    deflater = zlib.compressobj(wbits=-15)
    encoded = base64.b64encode(deflater.compress(payload) + deflater.flush()).decode()
    return decode_redirect("SAMLRequest=" + quote(encoded, safe=""))


def one_input(data: bytes) -> None:
    """Decode and judge the input as an AuthnRequest and a LogoutRequest for every SP."""
    for parse in (parse_authn_request, parse_logout_request):
        for sp in SPS:
            try:
                parse(_message(data), sp, IDP, now=now(), clock_skew=SKEW)  # type: ignore[arg-type]
            except SamlRefusal as refusal:
                assert refusal.reason and refusal.message


def write_seeds(directory: Path) -> None:
    """Valid and signed requests, the XML attacks and every wrapping move, as posted XML."""
    directory.mkdir(parents=True, exist_ok=True)
    xml = {"authn": authn_request_xml(), "logout": logout_request_xml()}
    seeds = dict(xml)
    for kind, message in xml.items():
        signed = sign_xml(message)
        seeds[f"{kind}-signed"] = signed
        for name, move in LOGOUT_MOVES.items():
            seeds[f"{kind}-{name}"] = wrapped(signed, [move])
    for name, (prologue, issuer) in XML_ATTACKS.items():
        seeds[name] = prologue + authn_request_xml(**({"issuer": issuer} if issuer else {}))
    for name, content in seeds.items():
        (directory / name.replace(" ", "-")).write_bytes(b"\x01" + content)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds(Path(sys.argv[2]))
    else:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
