"""The SSO decision beyond the protocol rules: who may sign in to a service, whether the
signed-in account is the one the SP asked about, and which authentication class to assert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from idp.saml import NameId
from idp.saml.authn_context import (
    MFA,
    PASSWORD_SIGN_IN,
    SECOND_FACTOR_SIGN_IN,
    UNSPECIFIED,
    RequestedContext,
    choose_class,
)
from idp.saml.nameid import subject_matches
from idp.saml.requests import AuthnRequest

ACHIEVABLE = SECOND_FACTOR_SIGN_IN  # every class a sign-in here can reach, strongest first


@dataclass(frozen=True)
class AccessRules:
    """Who of the organization may sign in to a service."""

    allowed_groups: tuple[str, ...]  # empty: every account
    require_subscription: bool
    require_mfa: bool = False

    def admits(self, groups: tuple[str, ...], subscribed: bool) -> bool:
        """True when an account with these groups (and subscription) passes the rules."""
        if self.allowed_groups and not set(self.allowed_groups) & set(groups):
            return False
        return subscribed or not self.require_subscription


@dataclass(frozen=True)
class Request:
    """What the SP asked about the sign-in: a subject, an authentication context."""

    subject: NameId | None
    context: RequestedContext | None

    @classmethod
    def of(cls, authn: AuthnRequest) -> Request:
        """The asks of an AuthnRequest."""
        return cls(authn.subject, authn.requested_context)

    @classmethod
    def unsolicited(cls) -> Request:
        """IdP-initiated SSO asks for nothing."""
        return cls(None, None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, kept with a pending request."""
        subject = None if self.subject is None else vars(self.subject)
        context = None if self.context is None else vars(self.context)
        return {"subject": subject, "context": context}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Request:
        """The inverse of to_json (None: a request kept before asks were kept, asking nothing)."""
        if data is None:
            return cls.unsolicited()
        subject = None if data["subject"] is None else NameId(**data["subject"])
        context = data["context"]
        if context is not None:
            context = RequestedContext(context["comparison"], tuple(context["class_refs"]))
        return cls(subject, context)


def is_subject(ask: Request, issued: NameId | None, email: str) -> bool:
    """True unless the SP named a subject that the signed-in account (its NameID for this SP,
    ``issued``, or its email) is not."""
    if ask.subject is None:
        return True
    return subject_matches(ask.subject, issued or NameId("", ask.subject.format), email)


def needs_second_factor(rules: AccessRules, ask: Request) -> bool:
    """True when only a multi-factor sign-in may answer: the service requires one, or the SP
    asked for a class that a password alone does not reach."""
    return rules.require_mfa or choose_class(ask.context, PASSWORD_SIGN_IN) is None


def achieved(multi_factor: bool, upstream_class: str | None) -> tuple[str, ...]:
    """The classes a sign-in reached, the one to assert unasked first: a password (and a
    second factor), or what an upstream provider vouched for (and the account's own factor)."""
    if upstream_class is None:
        return SECOND_FACTOR_SIGN_IN if multi_factor else PASSWORD_SIGN_IN
    stepped_up = (MFA,) if multi_factor and upstream_class != MFA else ()
    return tuple(dict.fromkeys((upstream_class, *stepped_up, UNSPECIFIED)))


def authn_class(ask: Request, multi_factor: bool, upstream_class: str | None = None) -> str | None:
    """The class to assert for a sign-in, or None when the SP's ask cannot be met by it.

    Unasked, the sign-in's own class: PasswordProtectedTransport, REFEDS MFA after a second
    factor, or the upstream provider's (its SAML ``acr`` wins over what ``amr`` shows)."""
    classes = achieved(multi_factor, upstream_class)
    return classes[0] if ask.context is None else choose_class(ask.context, classes)
