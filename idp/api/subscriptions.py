"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("subscriptions", __name__)
