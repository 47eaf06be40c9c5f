"""Building the LogoutResponse that answers an SP's LogoutRequest."""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from idp.saml.config import IdpEndpoints
from idp.saml.requests import LogoutRequest
from idp.saml.response import add_status, protocol_message
from idp.saml.xml import format_instant


def build_logout_response(
    request: LogoutRequest, *, idp: IdpEndpoints, destination: str, now: datetime
) -> etree._Element:
    """An unsigned, successful LogoutResponse to ``destination`` (the binding signs it)."""
    response = protocol_message("LogoutResponse", idp, destination, request.id, format_instant(now))
    add_status(response)
    return response
