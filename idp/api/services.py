"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("services", __name__)
