"""GET /saml/{org}/{svc}/metadata: the IdP metadata an SP loads (CONTRACT §4)."""

from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, request
from sqlalchemy import and_, select

from idp.api.organizations import SLUG
from idp.runtime import runtime
from idp.saml.metadata import IdpEndpoints, idp_metadata
from idp.store.models import Organization, SamlCertificate, SamlConfig, Service
from idp.web.pages import error_page

bp = Blueprint("metadata", __name__)

CONTENT_TYPE = "application/samlmetadata+xml"
MAX_AGE_S = 300


@bp.get("/saml/<org>/<svc>/metadata")
def metadata(org: str, svc: str) -> Response:
    """Public; 404 until the service is configured, enabled and has an active certificate."""
    if not (re.fullmatch(SLUG["pattern"], org) and re.fullmatch(SLUG["pattern"], svc)):
        return _unknown(org, svc)
    with runtime().db.read() as session:
        row = session.execute(
            select(Service.id, SamlConfig, SamlCertificate)
            .join(Organization, Organization.id == Service.organization_id)
            .outerjoin(SamlConfig, SamlConfig.service_id == Service.id)
            .outerjoin(
                SamlCertificate,
                and_(SamlCertificate.service_id == Service.id, SamlCertificate.is_active),
            )
            .where(Organization.slug == org, Service.slug == svc)
        ).first()
    if row is None:
        return _unknown(org, svc)
    _, config, cert = row
    if config is None:
        return _not_found("SAML is not configured for this service.")
    if not config.enabled:
        return _not_found("SAML is disabled for this service.")
    if cert is None:
        return _not_found("This service has no active signing certificate yet.")
    document = idp_metadata(
        IdpEndpoints.of(runtime().settings.base_url, org, svc),
        cert.certificate_pem,
        config.name_id_format,
        config.want_authn_requests_signed,
    )
    response = Response(document, mimetype=CONTENT_TYPE)
    response.set_etag(_etag(document, config))
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE_S
    response.make_conditional(request)
    return response


def _etag(document: bytes, config: SamlConfig) -> str:
    """Changes with the document and with every configuration change."""
    stamp = config.updated_at.isoformat().encode()
    return hashlib.sha256(stamp + b"\n" + document).hexdigest()[:32]


def _unknown(org: str, svc: str) -> Response:
    return _not_found(f"There is no service '{svc}' in organization '{org}'.")


def _not_found(message: str) -> Response:
    return error_page(404, "No SAML metadata here", message)
