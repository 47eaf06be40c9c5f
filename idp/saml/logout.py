"""Building the LogoutResponse that answers an SP's LogoutRequest, and matching its subject."""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from idp.saml.config import IdpEndpoints
from idp.saml.nameid import values_equal
from idp.saml.requests import LogoutRequest
from idp.saml.response import add_status, protocol_message
from idp.saml.status import ErrorStatus
from idp.saml.xml import format_instant


def build_logout_response(
    request: LogoutRequest,
    *,
    idp: IdpEndpoints,
    destination: str,
    now: datetime,
    status: ErrorStatus | None = None,
) -> etree._Element:
    """An unsigned LogoutResponse to ``destination`` (the binding signs it).

    Its status is Success, or ``status`` (UnknownPrincipal when the request does not name
    this browser's sign-in).
    """
    response = protocol_message("LogoutResponse", idp, destination, request.id, format_instant(now))
    add_status(response, status)
    return response


def logout_matches(request: LogoutRequest, name_id: str, session_index: str) -> bool:
    """Whether the request names this sign-in (compared in constant time).

    Its NameID value must be ``name_id`` and each of its SessionIndexes, if any,
    ``session_index``.
    """
    results = [values_equal(request.name_id.value, name_id)]
    results += [values_equal(index, session_index) for index in request.session_indexes]
    return all(results)
