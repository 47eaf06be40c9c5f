"""GET /api/openapi.json: the OpenAPI document of every /api route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from idp.api.openapi import document, operation
from idp.runtime import runtime

bp = Blueprint("docs", __name__)


@operation(
    bp,
    "GET",
    "/openapi.json",
    summary="This document",
    response={"type": "object"},
    public=True,
)
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return document(runtime().settings.base_url)
