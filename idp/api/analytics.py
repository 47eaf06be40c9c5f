"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("analytics", __name__)
