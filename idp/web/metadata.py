"""GET /saml/{org}/{svc}/metadata: the IdP metadata an SP loads (CONTRACT §4)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from flask import Blueprint, Response, request

from idp import providers
from idp.runtime import runtime
from idp.saml.metadata import idp_metadata
from idp.web.pages import error_page

bp = Blueprint("metadata", __name__)

CONTENT_TYPE = "application/samlmetadata+xml"
MAX_AGE_S = 300


@bp.get("/saml/<org>/<svc>/metadata")
def metadata(org: str, svc: str) -> Response:
    """Public; 404 until the service is configured, enabled and has an active certificate."""
    rt = runtime()
    provider = providers.find(rt, org, svc, rt.store.version())
    if provider is None:
        return _not_found(f"There is no service '{svc}' in organization '{org}'.")
    if provider.sp is None or provider.updated_at is None:
        return _not_found("SAML is not configured for this service.")
    if not provider.enabled:
        return _not_found("SAML is disabled for this service.")
    if provider.certificate is None:
        return _not_found("This service has no active signing certificate yet.")
    published = [
        provider.certificate,
        *([provider.next_certificate] if provider.next_certificate else []),
    ]
    document = idp_metadata(
        provider.endpoints,
        [certificate.certificate_pem for certificate in published],
        provider.sp.name_id_format,
        provider.sp.want_authn_requests_signed,
    )
    response = Response(document, mimetype=CONTENT_TYPE)
    response.set_etag(_etag(document, provider.updated_at))
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE_S
    response.make_conditional(request)
    return response


def _etag(document: bytes, config_updated_at: datetime) -> str:
    """Changes with the document and with every configuration change."""
    stamp = config_updated_at.isoformat().encode()
    return hashlib.sha256(stamp + b"\n" + document).hexdigest()[:32]


def _not_found(message: str) -> Response:
    return error_page(404, "No SAML metadata here", message)
