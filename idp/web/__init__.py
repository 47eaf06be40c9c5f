"""The browser-facing routes: login, SSO, SLO, metadata."""

from __future__ import annotations

from flask import Flask, Response, request

from idp.metrics import SSO_REQUESTS
from idp.saml import SamlRefusal
from idp.web import (
    account,
    browser,
    login,
    metadata,
    pages,
    second_factor,
    slo,
    sso,
    upstream,
)
from idp.web.pages import Refused, error_page


def _harden(response: Response) -> Response:
    if request.path.startswith("/api/"):
        return response
    return browser.harden(response)


def _refused(exc: Refused) -> Response:
    """The page for a refused SAML request, counted by reason."""
    if request.blueprint == "sso":
        SSO_REQUESTS.labels("refused", exc.reason).inc()
    response = error_page(exc.status, "This request cannot be accepted", exc.message)
    response.headers.update(exc.headers)
    return response


def _saml_refusal(exc: SamlRefusal) -> Response:
    """A message the SAML core will not act on: 400 with its reason."""
    return _refused(Refused(400, exc.reason, exc.message))


def register(app: Flask) -> None:
    """Mount every browser-facing blueprint, answer refusals as pages, harden every page."""
    for blueprint in (
        pages.bp,
        login.bp,
        second_factor.bp,
        account.bp,
        upstream.bp,
        metadata.bp,
        sso.bp,
        slo.bp,
    ):
        app.register_blueprint(blueprint)
    app.register_error_handler(Refused, _refused)
    app.register_error_handler(SamlRefusal, _saml_refusal)
    app.after_request(_harden)
