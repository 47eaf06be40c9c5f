"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("audit", __name__)
