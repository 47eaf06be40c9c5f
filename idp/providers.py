"""Each service's IdP: its SAML setup and signing key, cached per worker.

A worker keeps what it loaded from the database until the service's change counter in
Redis moves (every admin change announces itself, see ``Store.announce_change``) or the
entry is older than MAX_AGE_S, a backstop for changes made while Redis was unreachable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select

from idp import keys
from idp.runtime import Runtime
from idp.saml import IdpEndpoints, SigningKey, SpConfig, UserInfo
from idp.store.models import (
    Membership,
    Organization,
    Plan,
    SamlCertificate,
    SamlConfig,
    Service,
    Subscription,
    User,
)

MAX_AGE_S = 30.0
MAX_ENTRIES = 10_000


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
    enabled: bool
    certificate: SamlCertificate | None
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


def find(rt: Runtime, org_slug: str, service_slug: str) -> Provider | None:
    """The service's IdP, or None when the organization or service does not exist."""
    scope = f"{org_slug}/{service_slug}"
    version = rt.store.config_version(scope)
    cache: dict[str, tuple[int, float, Provider | None]] = rt.provider_cache
    cached = cache.get(scope)
    if cached is not None and cached[0] == version and time.monotonic() - cached[1] < MAX_AGE_S:
        return cached[2]
    provider = _load(rt, org_slug, service_slug)
    with _lock:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[scope] = (version, time.monotonic(), provider)
    return provider


def _load(rt: Runtime, org_slug: str, service_slug: str) -> Provider | None:
    """Read the organization, service, SAML config and active certificate in one query."""
    query = (
        select(Organization, Service, SamlConfig, SamlCertificate)
        .join(Service, Service.organization_id == Organization.id)
        .outerjoin(SamlConfig, SamlConfig.service_id == Service.id)
        .outerjoin(
            SamlCertificate,
            and_(SamlCertificate.service_id == Service.id, SamlCertificate.is_active),
        )
        .where(Organization.slug == org_slug, Service.slug == service_slug)
    )
    with rt.db.read() as session:
        row = session.execute(query).first()
    if row is None:
        return None
    org, service, config, certificate = row
    return Provider(
        org_id=org.id,
        org_slug=org.slug,
        org_name=org.name,
        service_id=service.id,
        service_slug=service.slug,
        service_name=service.name,
        endpoints=IdpEndpoints.of(rt.settings.base_url, org.slug, service.slug),
        sp=_sp_config(config) if config is not None else None,
        enabled=bool(config and config.enabled),
        certificate=certificate,
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
    )


def user_info(rt: Runtime, provider: Provider, user_id: str) -> UserInfo | None:
    """What the IdP asserts about a member: profile, role and groups, plan and features.

    None when the user does not exist or is not a member of the service's organization.
    """
    query = (
        select(User, Membership.role, Membership.groups, Plan.name, Plan.features)
        .join(
            Membership,
            and_(Membership.user_id == User.id, Membership.organization_id == provider.org_id),
        )
        .outerjoin(
            Subscription,
            and_(
                Subscription.user_id == User.id,
                Subscription.service_id == provider.service_id,
                Subscription.status == "active",
            ),
        )
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .where(User.id == user_id)
    )
    with rt.db.read() as session:
        row = session.execute(query).first()
    if row is None:
        return None
    user, role, groups, plan, features = row
    return UserInfo(
        id=user.id,
        email=user.email,
        name=user.name,
        given_name=user.given_name,
        family_name=user.family_name,
        role=role,
        groups=tuple(groups or ()),
        plan=plan,
        features=tuple(features or ()),
    )
