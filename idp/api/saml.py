"""Placeholder: routes arrive with their issue."""

from flask import Blueprint

bp = Blueprint("saml", __name__)
