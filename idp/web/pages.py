"""HTML pages shared by the browser-facing routes: errors, refusals, the auto-posting form."""

from __future__ import annotations

from flask import Blueprint, Response, g, render_template

from idp.web import browser
from idp.web.browser import AUTOSUBMIT_SCRIPT

bp = Blueprint("pages", __name__, static_folder="static", static_url_path="/static")


class Refused(Exception):
    """A browser request answered with an HTML error page (never a redirect or a post)."""

    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


def error_page(status: int, title: str, message: str) -> Response:
    """An HTML error page a person can act on; it never redirects or posts anywhere."""
    html = render_template(
        "error.html", title=title, message=message, request_id=g.get("request_id")
    )
    return Response(html, status=status, mimetype="text/html")


def message_page(title: str, message: str, status: int = 200, signed_in: bool = False) -> Response:
    """A page that tells the person something; signed in, it offers to sign out."""
    token, seed = browser.csrf_token() if signed_in else (None, None)
    html = render_template("message.html", title=title, message=message, logout_csrf=token)
    response = Response(html, status=status, mimetype="text/html")
    browser.set_csrf_cookie(response, seed)
    return response


def post_form(
    action: str, field: str, message: str, relay_state: str | None, heading: str = "Signing you in"
) -> Response:
    """The page that posts a SAML message to an SP endpoint, by script or by its button."""
    html = render_template(
        "post_form.html",
        action=action,
        field=field,
        message=message,
        relay_state=relay_state,
        heading=heading,
        script=AUTOSUBMIT_SCRIPT,
    )
    return Response(html, mimetype="text/html")
