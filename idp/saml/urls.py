"""Which URLs the IdP will send to or fetch from: https, or plain http to this machine only."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute https URL (plain http only for loopback), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "must be an absolute https URL"
    if parts.scheme not in ("http", "https") or not host or parts.fragment:
        return "must be an absolute https URL"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    if parts.scheme == "http" and not is_loopback(host):
        return "must use https (plain http is allowed only for localhost)"
    return None
