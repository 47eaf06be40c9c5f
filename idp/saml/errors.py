"""The one exception the SAML core raises for a message it will not act on."""

from __future__ import annotations

MAX_QUOTED = 200


class SamlRefusal(Exception):
    """A received SAML message is refused; answered with an HTML page (400), never to the SP.

    ``reason`` is a short machine code for metrics (``bad_encoding``, ``too_large``,
    ``malformed``, ``dtd``, ``issuer_mismatch``, ``acs_mismatch``, ``binding``,
    ``destination``, ``stale``, ``signature_missing``, ``signature_invalid``,
    ``relay_state_too_long``); ``message`` is a sentence a person can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def quoted(value: str) -> str:
    """A received value for an error message: quoted and cut to a readable length."""
    if len(value) > MAX_QUOTED:
        value = value[:MAX_QUOTED] + "…"
    return repr(value)
