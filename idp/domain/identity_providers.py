"""An organization's upstream OpenID Providers, and how their identities bind to accounts.

Binding rules (the account-takeover cases they exist for are in the tests):
- an upstream identity is ``(provider, sub)``; once bound, it always reaches its account,
  whatever its email becomes upstream;
- a first sign-in links to an existing account only when the ID token says the email is
  verified and its domain is one the provider may vouch for (``allowed_domains``): never
  by email alone;
- otherwise a new account when ``jit`` is on, unless the email already has an account here
  (refused: never a second account with that email);
- otherwise refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.domain import accounts
from idp.domain.errors import Forbidden, NotFound
from idp.saml.authn_context import MFA, UNSPECIFIED
from idp.settings import Settings
from idp.store.models import (
    Account,
    IdentityProvider,
    Organization,
    UpstreamIdentity,
    new_id,
    utcnow,
)

DEFAULT_SCOPES = ("openid", "email", "profile")
FIELDS = (
    "name",
    "issuer",
    "client_id",
    "scopes",
    "allowed_domains",
    "jit",
    "default_role",
    "enabled",
)
DEFAULTS: dict[str, Any] = {
    "scopes": list(DEFAULT_SCOPES),
    "allowed_domains": [],
    "jit": False,
    "default_role": "member",
    "enabled": True,
}


def provider_json(provider: IdentityProvider, redirect_uri: str) -> dict[str, Any]:
    """{slug, name, issuer, client_id, has_client_secret, scopes, allowed_domains, jit,
    default_role, enabled, redirect_uri}: never the secret."""
    return {
        "slug": provider.slug,
        "name": provider.name,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "has_client_secret": provider.client_secret_encrypted is not None,
        "scopes": list(provider.scopes),
        "allowed_domains": list(provider.allowed_domains),
        "jit": provider.jit,
        "default_role": provider.default_role,
        "enabled": provider.enabled,
        "redirect_uri": redirect_uri,
    }


def find(session: Session, org: Organization, slug: str) -> IdentityProvider:
    """The organization's provider with this slug, or NotFound."""
    provider = session.scalar(
        select(IdentityProvider).where(
            IdentityProvider.organization_id == org.id, IdentityProvider.slug == slug
        )
    )
    if provider is None:
        raise NotFound(f"Organization '{org.slug}' has no identity provider '{slug}'")
    return provider


def listing(
    session: Session, org: Organization, enabled_only: bool = False
) -> list[IdentityProvider]:
    """The organization's providers, by slug."""
    query = select(IdentityProvider).where(IdentityProvider.organization_id == org.id)
    if enabled_only:
        query = query.where(IdentityProvider.enabled)
    return list(session.scalars(query.order_by(IdentityProvider.slug)))


def put(
    session: Session,
    settings: Settings,
    actor: audit.Actor,
    org: Organization,
    slug: str,
    fields: dict[str, Any],
) -> tuple[IdentityProvider, str | None]:
    """Create or replace the provider (a missing client_secret keeps the stored one); returns
    it and "created", "updated", or None when it already was as given."""
    provider = session.scalar(
        select(IdentityProvider)
        .where(IdentityProvider.organization_id == org.id, IdentityProvider.slug == slug)
        .with_for_update()
    )
    created = provider is None
    if provider is None:
        provider = IdentityProvider(id=new_id(), organization_id=org.id, slug=slug)
        session.add(provider)
    before = None if created else _public(provider)
    wanted: dict[str, Any] = {name: fields.get(name, DEFAULTS.get(name)) for name in FIELDS}
    wanted["allowed_domains"] = sorted({d.lower() for d in wanted["allowed_domains"]})
    secret: str = fields.get("client_secret") or ""
    new_secret = bool(secret) and secret != client_secret(provider, settings)
    if before == {**wanted, "slug": slug} and not new_secret:
        return provider, None
    for name, value in wanted.items():
        setattr(provider, name, value)
    if new_secret:
        provider.client_secret_encrypted = keys.encrypt_client_secret(
            provider.id, secret, settings.secret_key
        )
    session.flush()
    action = "identity_provider.create" if created else "identity_provider.update"
    after = {**_public(provider), "client_secret_changed": new_secret}
    _record(session, actor, org, provider, action, before, after)
    return provider, "created" if created else "updated"


def remove(
    session: Session, actor: audit.Actor, org: Organization, provider: IdentityProvider
) -> None:
    """Delete the provider; its identities are unlinked (the sign-ins they made end because
    each remembers the provider it came through)."""
    before = _public(provider)
    session.execute(delete(UpstreamIdentity).where(UpstreamIdentity.provider_id == provider.id))
    session.delete(provider)
    session.flush()
    _record(session, actor, org, provider, "identity_provider.delete", before, None)


def client_secret(provider: IdentityProvider, settings: Settings) -> str:
    """The provider's client secret, decrypted ("" when none is stored)."""
    stored = provider.client_secret_encrypted
    return "" if stored is None else keys.decrypt_client_secret(provider.id, stored, settings)


SAML_CLASS_PREFIX = "urn:oasis:names:tc:SAML:2.0:ac:classes:"
AMR_KINDS = {  # RFC 8176 methods by kind of factor: something known, held, inherent
    "known": frozenset({"pwd", "pin", "kba"}),
    "held": frozenset({"hwk", "swk", "otp", "sms", "tel", "sc"}),
    "inherent": frozenset({"fpt", "face", "iris", "retina", "vbm"}),
}


def upstream_class(acr: object, amr: object) -> tuple[str, bool]:
    """The class an upstream sign-in is asserted with, and whether it was multi-factor.

    A SAML class URI in ``acr`` wins; else REFEDS MFA when ``amr`` holds ``mfa`` or methods
    of two kinds; else unspecified."""
    methods = {m for m in amr if isinstance(m, str)} if isinstance(amr, list) else set()
    kinds = {kind for kind, known in AMR_KINDS.items() if methods & known}
    multi = "mfa" in methods or len(kinds) > 1 or acr == MFA
    if isinstance(acr, str) and (acr.startswith(SAML_CLASS_PREFIX) or acr == MFA):
        return acr, multi
    return (MFA if multi else UNSPECIFIED), multi


@dataclass(frozen=True)
class Upstream:
    """What a verified ID token says about the person."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    given_name: str | None
    family_name: str | None


def bind(
    session: Session, org: Organization, provider: IdentityProvider, who: Upstream
) -> tuple[Account, str]:
    """The account this upstream identity signs in, and how it was reached: "returning",
    "linked" or "created". Forbidden with what to ask an administrator otherwise."""
    identity = session.scalar(
        select(UpstreamIdentity).where(
            UpstreamIdentity.provider_id == provider.id, UpstreamIdentity.subject == who.subject
        )
    )
    if identity is not None:
        account = session.get(Account, identity.account_id)
        if account is None or account.disabled:
            raise Forbidden("Your account here is disabled. Ask an administrator to enable it.")
        session.execute(
            update(UpstreamIdentity)
            .where(UpstreamIdentity.id == identity.id)
            .values(last_used_at=utcnow())
        )
        return account, "returning"
    existing = accounts.by_email(session, org.id, who.email) if who.email else None
    if existing is not None and _vouched(provider, who):
        return _link(session, provider, existing, who.subject), "linked"
    if existing is None and provider.jit and who.email and who.email_verified:
        return _link(
            session, provider, _new_account(session, org, provider, who), who.subject
        ), "created"
    raise Forbidden(_refusal(provider, existing is not None))


def record_binding(
    session: Session, org: Organization, provider: IdentityProvider, account: Account, how: str
) -> None:
    """Record a new binding: oidc.link (an existing account) or oidc.account.created."""
    action = "oidc.link" if how == "linked" else "oidc.account.created"
    after = {"provider": provider.slug, "email": account.email, "role": account.role}
    audit.record(
        session,
        audit.IDP,
        action,
        "user",
        account.id,
        organization_id=org.id,
        user_id=account.id,
        after=after,
    )


def _vouched(provider: IdentityProvider, who: Upstream) -> bool:
    """True when the provider may vouch for this email: verified, in an allowed domain."""
    if not (who.email and who.email_verified):
        return False
    domain = who.email.rsplit("@", 1)[-1].lower()
    return domain in provider.allowed_domains


def _link(session: Session, provider: IdentityProvider, account: Account, subject: str) -> Account:
    if account.disabled:
        raise Forbidden("Your account here is disabled. Ask an administrator to enable it.")
    session.add(UpstreamIdentity(provider_id=provider.id, account_id=account.id, subject=subject))
    session.flush()
    return account


def _new_account(
    session: Session, org: Organization, provider: IdentityProvider, who: Upstream
) -> Account:
    assert who.email is not None
    account = Account(
        organization_id=org.id,
        email=accounts.normalize_email(who.email),
        name=who.name,
        given_name=who.given_name,
        family_name=who.family_name,
        role=provider.default_role,
        groups=[],
        disabled=False,
        password_hash=None,
    )
    session.add(account)
    session.flush()
    return account


def _refusal(provider: IdentityProvider, email_taken: bool) -> str:
    if email_taken:
        return (
            f"An account with your email already exists here, and {provider.name} may not sign "
            "in to it. Ask an administrator to link your identity to that account."
        )
    return (
        f"You have no account here that {provider.name} may sign in to. Ask an administrator "
        "to create one for you."
    )


def _public(provider: IdentityProvider) -> dict[str, Any]:
    return {name: getattr(provider, name) for name in FIELDS} | {"slug": provider.slug}


def _record(
    session: Session,
    actor: audit.Actor,
    org: Organization,
    provider: IdentityProvider,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    audit.record(
        session,
        actor,
        action,
        "identity_provider",
        provider.id,
        organization_id=org.id,
        before=before,
        after=after,
    )
