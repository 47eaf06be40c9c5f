"""Fetch an SP's metadata from its URL (CONTRACT §8 ``sp_metadata_url``), with no Flask.

Only https, or plain http to this machine (the rule of the API's endpoint URLs); redirects
are followed by hand, at most ``MAX_REDIRECTS``, each target held to the same rule and never
from https down to http. The body is read a socket read at a time up to a size limit
(decompressed size, so a gzip bomb stops too); the fetch ends with a timeout soon after its
deadline (within one more read timeout: under ``2 * timeout_s`` in all).
Proxies, ``.netrc`` and CA bundles from the environment are not used.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from idp.saml.errors import quoted
from idp.saml.sp_metadata import MAX_METADATA_BYTES, MetadataError
from idp.saml.urls import endpoint_url_problem

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"


def fetch_metadata(
    url: str, *, timeout_s: float = 10, max_bytes: int = MAX_METADATA_BYTES
) -> bytes:
    """The body of a 200 answer at ``url``; anything else raises :class:`MetadataError`."""
    _check_url(url, None)
    deadline = time.monotonic() + timeout_s
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(MAX_REDIRECTS + 1):
            next_url = _get(session, url, deadline, max_bytes)
            if isinstance(next_url, bytes):
                return next_url
            _check_url(next_url, url)
            url = next_url
    raise MetadataError("fetch", f"The metadata URL redirects more than {MAX_REDIRECTS} times.")


def _check_url(url: str, previous: str | None) -> None:
    """Refuse a URL (or a redirect target) before any connection to it."""
    problem = endpoint_url_problem(url)
    what = "The metadata URL" if previous is None else "The metadata URL redirects to"
    if problem:
        raise MetadataError("url", f"{what} {quoted(url)}, which {problem}.")
    downgrade = previous is not None and urlsplit(previous).scheme == "https"
    if downgrade and urlsplit(url).scheme != "https":
        raise MetadataError("url", f"{what} {quoted(url)}, from https down to plain http.")


def _get(session: requests.Session, url: str, deadline: float, max_bytes: int) -> bytes | str:
    """The body of a 200 answer, or the absolute target of a redirect."""
    try:
        with session.get(
            url,
            headers={"Accept": ACCEPT},
            allow_redirects=False,
            stream=True,
            timeout=_remaining(deadline),
        ) as response:
            if response.is_redirect:
                return urljoin(url, response.headers["Location"])
            if response.status_code != 200:
                raise MetadataError(
                    "fetch", f"The metadata URL answered {response.status_code}, not 200."
                )
            return _body(response, deadline, max_bytes)
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        raise _timeout() from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise MetadataError("fetch", f"The metadata URL could not be fetched: {exc}") from None


def _body(response: requests.Response, deadline: float, max_bytes: int) -> bytes:
    """Read the (decoded) body a socket read at a time, stopping past ``max_bytes`` or the
    deadline: each read waits at most the time that was left when the request was sent."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        _remaining(deadline)
    return bytes(body)


def _remaining(deadline: float) -> float:
    """Seconds left before the deadline; past it, the fetch has timed out."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout()
    return left


def _timeout() -> MetadataError:
    return MetadataError("fetch", "The metadata URL did not answer in time.")


def _too_large(max_bytes: int) -> MetadataError:
    return MetadataError("too_large", f"The metadata at the URL is larger than {max_bytes} bytes.")
