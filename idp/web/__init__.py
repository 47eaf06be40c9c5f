"""The browser-facing routes: login, SSO, SLO, metadata."""

from __future__ import annotations

from flask import Flask

from idp.web import pages


def register(app: Flask) -> None:
    """Mount every browser-facing blueprint."""
    app.register_blueprint(pages.bp)
