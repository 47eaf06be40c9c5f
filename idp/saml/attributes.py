"""The user's attributes, named by the SP's ``attribute_mapping``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from idp.saml import constants as c

NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
USER_FIELDS = frozenset(
    {"id", "email", "name", "given_name", "family_name", "role", "groups", "plan", "features"}
)


@dataclass(frozen=True)
class UserInfo:
    """What the IdP may assert about a user for one service.

    ``role`` and ``groups`` come from the membership in the service's organization, ``plan``
    and ``features`` from the user's active subscription to the service (None/empty if none).
    """

    id: str
    email: str
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    role: str | None = None
    groups: tuple[str, ...] = ()
    plan: str | None = None
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribute:
    """One SAML attribute: its name, NameFormat and values (never empty)."""

    name: str
    name_format: str
    values: tuple[str, ...]


def attributes(user: UserInfo, mapping: Mapping[str, str]) -> list[Attribute]:
    """The attributes to assert, in mapping order; fields without a value are left out.

    Names containing ``:`` get the ``uri`` NameFormat, others ``basic``; ``groups`` and
    ``features`` are multi-valued. Characters XML cannot carry (control characters) are dropped.
    """
    found = []
    for field, name in mapping.items():
        value: str | tuple[str, ...] | None = getattr(user, field)
        values = (value,) if isinstance(value, str) else (value or ())
        values = tuple(clean for v in values if (clean := NOT_XML_CHARACTERS.sub("", v)))
        if values:
            name_format = c.ATTRNAME_URI if ":" in name else c.ATTRNAME_BASIC
            found.append(Attribute(name, name_format, values))
    return found
