"""Each service's IdP (its SAML setup and signing key) and what it asserts about users.

Both are cached per worker, so a warm SSO request touches no database: an entry is kept
until the change counter in Redis moves (every configuration change announces itself, see
``Store.announce_change``) or is older than MAX_AGE_S, a backstop for changes made while
Redis was unreachable.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from idp import keys
from idp.domain.sso import AccessRules
from idp.runtime import Runtime
from idp.saml import IdpEndpoints, SigningKey, SpConfig, UserInfo
from idp.saml.attributes import AttributeValue
from idp.saml.config import AES256_GCM, AcsUrl
from idp.store.models import (
    SLUG_PATTERN,
    Account,
    IdentityProvider,
    Organization,
    Plan,
    SamlCertificate,
    SamlConfig,
    Service,
    Subscription,
)

MAX_AGE_S = 30.0
MAX_ENTRIES = 10_000
SLUG = re.compile(SLUG_PATTERN)
T = TypeVar("T")


@dataclass(frozen=True)
class Provider:
    """One service's IdP as the SAML routes need it."""

    org_id: str
    org_slug: str
    org_name: str
    service_id: str
    service_slug: str
    service_name: str
    endpoints: IdpEndpoints
    sp: SpConfig | None
    access: AccessRules
    enabled: bool
    certificate: SamlCertificate | None  # the active one: it signs
    next_certificate: SamlCertificate | None  # staged: in metadata, not signing yet
    updated_at: datetime | None

    @property
    def scope(self) -> str:
        """The key of this service's change counter: "org/svc"."""
        return f"{self.org_slug}/{self.service_slug}"

    def signing_key(self, rt: Runtime) -> SigningKey:
        """The active certificate's loaded key (cached per process by idp.keys)."""
        assert self.certificate is not None
        return keys.signing_key(self.certificate, rt.settings)


_lock = threading.Lock()


def _cached(rt: Runtime, key: tuple[str, ...], version: int, load: Callable[[], T]) -> T:
    """The cached value for a key at this change counter, loading it when stale."""
    cache: dict[tuple[str, ...], tuple[int, float, Any]] = rt.provider_cache
    entry = cache.get(key)
    now = time.monotonic()
    if entry is not None and entry[0] == version and now - entry[1] < MAX_AGE_S:
        value: T = entry[2]
        return value
    value = load()
    with _lock:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key] = (version, now, value)
    return value


def find(rt: Runtime, org_slug: str, service_slug: str, version: int) -> Provider | None:
    """The service's IdP, or None when the organization or service does not exist."""
    if not (SLUG.match(org_slug) and SLUG.match(service_slug)):
        return None
    return _cached(
        rt, ("provider", org_slug, service_slug), version, lambda: _load(rt, org_slug, service_slug)
    )


def _load(rt: Runtime, org_slug: str, service_slug: str) -> Provider | None:
    """Read the organization, service, SAML config and active and next certificates in one
    query."""
    active, staged = aliased(SamlCertificate), aliased(SamlCertificate)
    query = (
        select(Organization, Service, SamlConfig, active, staged)
        .join(Service, Service.organization_id == Organization.id)
        .outerjoin(SamlConfig, SamlConfig.service_id == Service.id)
        .outerjoin(active, and_(active.service_id == Service.id, active.is_active))
        .outerjoin(staged, and_(staged.service_id == Service.id, staged.is_next))
        .where(Organization.slug == org_slug, Service.slug == service_slug)
    )
    with rt.db.read() as session:
        row = session.execute(query).first()
    if row is None:
        return None
    org, service, config, certificate, next_certificate = row
    return Provider(
        org_id=org.id,
        org_slug=org.slug,
        org_name=org.name,
        service_id=service.id,
        service_slug=service.slug,
        service_name=service.name,
        endpoints=IdpEndpoints.of(rt.settings.base_url, org.slug, service.slug),
        sp=_sp_config(config) if config is not None else None,
        access=_access(config),
        enabled=bool(config and config.enabled),
        certificate=certificate,
        next_certificate=next_certificate,
        updated_at=config.updated_at if config is not None else None,
    )


def _sp_config(config: SamlConfig) -> SpConfig:
    return SpConfig(
        entity_id=config.entity_id,
        acs_url=config.acs_url,
        name_id_format=config.name_id_format,
        attribute_mapping=dict(config.attribute_mapping),
        sign_assertions=config.sign_assertions,
        sign_response=config.sign_response,
        sp_certificate=config.sp_certificate,
        want_authn_requests_signed=config.want_authn_requests_signed,
        slo_url=config.slo_url,
        acs_urls=tuple(
            AcsUrl(entry["url"], entry["index"], bool(entry.get("is_default")))
            for entry in config.acs_urls or ()
        ),
        encrypt_assertions=bool(config.encrypt_assertions),
        encryption_certificate=config.sp_encryption_certificate,
        content_encryption=config.content_encryption or AES256_GCM,
        attribute_values=tuple(
            AttributeValue(entry["name"], entry["value"], tuple(entry.get("groups") or ()))
            for entry in config.attribute_values or ()
        ),
    )


def _access(config: SamlConfig | None) -> AccessRules:
    if config is None:
        return AccessRules((), False)
    return AccessRules(
        tuple(config.allowed_groups or ()), config.require_subscription, config.require_mfa
    )


def upstream_alive(rt: Runtime, org_id: str, provider_id: str, version: int) -> bool:
    """True while the organization's upstream provider exists and is enabled."""
    key = ("upstream", org_id)
    return provider_id in _cached(rt, key, version, lambda: _enabled_upstreams(rt, org_id))


def _enabled_upstreams(rt: Runtime, org_id: str) -> frozenset[str]:
    query = select(IdentityProvider.id).where(
        IdentityProvider.organization_id == org_id, IdentityProvider.enabled
    )
    with rt.db.read() as session:
        return frozenset(session.scalars(query))


@dataclass(frozen=True)
class Member:
    """An enabled account of a service's organization as SSO needs it."""

    user: UserInfo
    generation: int  # sign-ins made under another generation are void
    subscribed: bool  # holds an active subscription to this service


def member(rt: Runtime, provider: Provider, account_id: str, version: int) -> Member | None:
    """What the IdP asserts about an account: profile, role and groups, plan and features.

    None when the account does not exist, is disabled, or belongs to another organization.
    """
    key = ("account", provider.service_id, account_id)
    return _cached(rt, key, version, lambda: _load_member(rt, provider, account_id))


def _load_member(rt: Runtime, provider: Provider, account_id: str) -> Member | None:
    query = (
        select(Account, Plan.name, Plan.features)
        .outerjoin(
            Subscription,
            and_(
                Subscription.account_id == Account.id,
                Subscription.service_id == provider.service_id,
                Subscription.status == "active",
            ),
        )
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .where(
            Account.id == account_id,
            Account.organization_id == provider.org_id,
            Account.disabled.is_(False),
        )
    )
    with rt.db.read() as session:
        row = session.execute(query).first()
    if row is None:
        return None
    account, plan, features = row
    user = UserInfo(
        id=account.id,
        email=account.email,
        name=account.name,
        given_name=account.given_name,
        family_name=account.family_name,
        role=account.role,
        groups=tuple(account.groups or ()),
        plan=plan,
        features=tuple(features or ()),
    )
    return Member(user, account.generation, plan is not None)
