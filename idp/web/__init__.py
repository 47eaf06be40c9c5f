"""The browser-facing routes: login, SSO, SLO, metadata."""

from __future__ import annotations

from flask import Flask, Response, request

from idp.web import browser, login, metadata, pages


def _harden(response: Response) -> Response:
    if request.path.startswith("/api/"):
        return response
    return browser.harden(response)


def register(app: Flask) -> None:
    """Mount every browser-facing blueprint and harden their pages."""
    app.register_blueprint(pages.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(metadata.bp)
    app.after_request(_harden)
