"""The authentication context: which AuthnContextClassRef to assert (SAML Core 3.3.2.2.1).

The IdP knows four classes, ranked by strength: unspecified (0), Password (1),
PasswordProtectedTransport (2) and REFEDS MFA (3). A sign-in *achieves* its own class and
every weaker known class it implies:

- a password sign-in on the IdP's HTTPS-only form achieves PasswordProtectedTransport, and
  also Password (PPT is a password sent over a protected transport, so Password is true of
  it, only less precise) and unspecified (which says nothing of the means, so any sign-in
  satisfies it): :data:`PASSWORD_SIGN_IN`;
- a second factor follows a password sign-in, so it adds MFA on top of those:
  :data:`SECOND_FACTOR_SIGN_IN`.

So an SP asking for exactly Password (as ADFS-style SPs do) is answered Password rather than
NoAuthnContext, and the asserted class is always one the request accepts. Without a request,
or with ``minimum``/``better``, the strongest achieved class is asserted: PPT for a password,
MFA whenever a second factor was used, except that an ``exact`` request for PPT (or Password)
gets that class, as ``exact`` requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from idp.saml import constants as c

UNSPECIFIED: Final[str] = c.AUTHN_UNSPECIFIED
PASSWORD: Final[str] = c.AUTHN_PASSWORD
PASSWORD_PROTECTED_TRANSPORT: Final[str] = c.AUTHN_PASSWORD_PROTECTED
MFA: Final[str] = c.AUTHN_MFA
RANKS: Final = MappingProxyType(
    {UNSPECIFIED: 0, PASSWORD: 1, PASSWORD_PROTECTED_TRANSPORT: 2, MFA: 3}
)
PASSWORD_SIGN_IN: Final = (PASSWORD_PROTECTED_TRANSPORT, PASSWORD, UNSPECIFIED)
SECOND_FACTOR_SIGN_IN: Final = (MFA, *PASSWORD_SIGN_IN)

EXACT: Final = "exact"
MINIMUM: Final = "minimum"
BETTER: Final = "better"
MAXIMUM: Final = "maximum"
COMPARISONS: Final = frozenset({EXACT, MINIMUM, BETTER, MAXIMUM})


@dataclass(frozen=True)
class RequestedContext:
    """A RequestedAuthnContext: its Comparison and class references, most preferred first.

    ``class_refs`` is empty when the SP named only AuthnContextDeclRefs, which never match.
    """

    comparison: str
    class_refs: tuple[str, ...]


def choose_class(requested: RequestedContext | None, achieved: Sequence[str]) -> str | None:
    """The class to assert for ``requested`` given the ``achieved`` classes, or None if none fits.

    No request: the strongest achieved class. ``exact``: the first requested class (in the
    request's order of preference) that is achieved. ``minimum``/``better``: the strongest
    achieved class at least as strong as / stronger than the weakest requested known class.
    ``maximum``: the strongest achieved class no stronger than the strongest requested known
    class. Unknown class URIs, requested or achieved, never match.
    """
    known = [name for name in achieved if name in RANKS]
    if requested is None:
        return _strongest(known)
    if requested.comparison == EXACT:
        return next((ref for ref in requested.class_refs if ref in known), None)
    ranks = [RANKS[ref] for ref in requested.class_refs if ref in RANKS]
    if not ranks:
        return None
    if requested.comparison == MINIMUM:
        return _strongest(name for name in known if RANKS[name] >= min(ranks))
    if requested.comparison == BETTER:
        return _strongest(name for name in known if RANKS[name] > min(ranks))
    if requested.comparison == MAXIMUM:
        return _strongest(name for name in known if RANKS[name] <= max(ranks))
    raise ValueError(f"unknown Comparison {requested.comparison!r}")


def _strongest(names: Iterable[str]) -> str | None:
    return max(names, key=RANKS.__getitem__, default=None)
