"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("plans", __name__)
