"""The user's attributes, named by the SP's ``attribute_mapping``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
class AttributeValue:
    """A value added to an attribute: for every account, or for accounts in any of ``groups``
    (a constant such as an AWS role ARN, per group)."""

    name: str
    value: str
    groups: tuple[str, ...] = ()

    def applies_to(self, user: UserInfo) -> bool:
        """True for an account this value is asserted for."""
        return not self.groups or bool(set(self.groups) & set(user.groups))


@dataclass(frozen=True)
class Attribute:
    """One SAML attribute: its name, NameFormat and values (never empty)."""

    name: str
    name_format: str
    values: tuple[str, ...]


def attributes(
    user: UserInfo, mapping: Mapping[str, str], extra: Sequence[AttributeValue] = ()
) -> list[Attribute]:
    """The attributes to assert: the mapped fields in mapping order, then the added values
    that apply to the user (merged into a mapped attribute of the same name); attributes
    without a value are left out.

    Names containing ``:`` get the ``uri`` NameFormat, others ``basic``; ``groups`` and
    ``features`` are multi-valued. Characters XML cannot carry (control characters) are dropped.
    """
    found: dict[str, list[str]] = {}
    for field, name in mapping.items():
        value: str | tuple[str, ...] | None = getattr(user, field)
        found.setdefault(name, []).extend((value,) if isinstance(value, str) else (value or ()))
    for added in extra:
        if added.applies_to(user):
            found.setdefault(added.name, []).append(added.value)
    return [
        Attribute(name, c.ATTRNAME_URI if ":" in name else c.ATTRNAME_BASIC, values)
        for name, raw in found.items()
        if (values := _clean(raw))
    ]


def _clean(values: list[str]) -> tuple[str, ...]:
    """The values XML can carry, without repeats, in order."""
    cleaned = (NOT_XML_CHARACTERS.sub("", value) for value in values)
    return tuple(dict.fromkeys(value for value in cleaned if value))
