"""HTML pages shared by the browser-facing routes: errors, and the static files."""

from __future__ import annotations

from flask import Blueprint, Response, g, render_template

bp = Blueprint("pages", __name__, static_folder="static", static_url_path="/static")


def error_page(status: int, title: str, message: str) -> Response:
    """An HTML error page a person can act on; it never redirects or posts anywhere."""
    html = render_template(
        "error.html", title=title, message=message, request_id=g.get("request_id")
    )
    return Response(html, status=status, mimetype="text/html")
