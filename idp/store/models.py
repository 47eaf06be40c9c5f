"""Database tables, as SQLAlchemy 2 declarative models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"  # organization and service slugs


def new_id() -> str:
    """A random identifier for a new row."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC, to the microsecond."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Organization(Base):
    """A tenant: owns its accounts and its services."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Account(Base):
    """A person's account in one organization: profile, role, groups and password.

    The same email in two organizations names two unrelated accounts. ``generation`` grows
    whenever the account's sign-ins must end (password change, disabling, factor reset): a
    sign-in remembers the generation it was made under and is void once it differs.
    """

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("organization_id", "email", name="uq_accounts_org_email"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TotpFactor(Base):
    """An account's confirmed TOTP authenticator; the seed is encrypted at rest."""

    __tablename__ = "totp_factors"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class Passkey(Base):
    """A WebAuthn credential (passkey or security key) registered by an account."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[str] = mapped_column(Text)  # base64url COSE key
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(default=list)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class RecoveryCode(Base):
    """One of an account's one-time recovery codes, hashed like a password."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdentityProvider(Base):
    """An organization's upstream OpenID Provider ("Continue with ..." on its login page)."""

    __tablename__ = "identity_providers"
    __table_args__ = (
        UniqueConstraint("organization_id", "slug", name="uq_identity_providers_org_slug"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    issuer: Mapped[str] = mapped_column(String(2048))
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    allowed_domains: Mapped[list[str]] = mapped_column(default=list)
    jit: Mapped[bool] = mapped_column(Boolean, default=False)
    default_role: Mapped[str] = mapped_column(String(16), default="member")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UpstreamIdentity(Base):
    """An upstream identity, ``(provider, sub)``, bound to one account."""

    __tablename__ = "upstream_identities"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject", name="uq_upstream_identities_provider_subject"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider_id: Mapped[str] = mapped_column(
        ForeignKey("identity_providers.id", ondelete="CASCADE")
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class Operator(Base):
    """A platform operator: outside every organization, with owner rights in all of them."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthToken(Base):
    """A bearer token from POST /api/auth/login (an account's or an operator's), as a digest."""

    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    operator_id: Mapped[str | None] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class PlatformKey(Base):
    """A platform API key (the main backend's), stored as the SHA-256 digest of the key."""

    __tablename__ = "platform_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Service(Base):
    """An application of an organization; each has its own SAML IdP."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("organization_id", "slug", name="uq_services_org_slug"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    service_type: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    github_scopes: Mapped[list[str]] = mapped_column(default=list)
    google_scopes: Mapped[list[str]] = mapped_column(default=list)
    microsoft_scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Plan(Base):
    """A subscription plan of a service."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("service_id", "name", name="uq_plans_service_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    features: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subscription(Base):
    """An account's subscription to a plan; at most one active per account and service."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index(
            "uq_subscriptions_active",
            "service_id",
            "account_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]


class ApiKey(Base):
    """A service-to-service key, stored as the SHA-256 digest of the full key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_id: Mapped[str] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[list[str]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SamlConfig(Base):
    """The Service Provider a service's IdP serves, and how to answer it."""

    __tablename__ = "saml_configs"

    service_id: Mapped[str] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)
    entity_id: Mapped[str] = mapped_column(String(1024))
    acs_url: Mapped[str] = mapped_column(String(2048))
    name_id_format: Mapped[str] = mapped_column(String(128))
    attribute_mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sign_assertions: Mapped[bool] = mapped_column(Boolean)
    sign_response: Mapped[bool] = mapped_column(Boolean)
    sp_certificate: Mapped[str | None] = mapped_column(Text)
    want_authn_requests_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    slo_url: Mapped[str | None] = mapped_column(String(2048))
    allowed_groups: Mapped[list[str]] = mapped_column(default=list)
    require_subscription: Mapped[bool] = mapped_column(Boolean, default=False)
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    acs_urls: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    sp_encryption_certificate: Mapped[str | None] = mapped_column(Text)
    encrypt_assertions: Mapped[bool] = mapped_column(Boolean, default=False)
    content_encryption: Mapped[str | None] = mapped_column(String(64))  # from SP metadata
    attribute_values: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    preset: Mapped[str | None] = mapped_column(String(64))
    sp_metadata_url: Mapped[str | None] = mapped_column(String(2048))
    sent: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what the admin sent, to re-merge
    metadata_refreshed_at: Mapped[datetime | None]
    metadata_error: Mapped[str | None] = mapped_column(Text)
    metadata_next_refresh_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SamlCertificate(Base):
    """An IdP signing certificate; the private key is encrypted at rest.

    At most one per service is active (signs) and at most one is next (published in metadata
    beside the active one, ready to be activated: a staged rollover).
    """

    __tablename__ = "saml_certificates"
    __table_args__ = (
        Index(
            "uq_saml_certificates_active",
            "service_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
        Index(
            "uq_saml_certificates_next",
            "service_id",
            unique=True,
            sqlite_where=text("is_next"),
            postgresql_where=text("is_next"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    service_id: Mapped[str] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    certificate_pem: Mapped[str] = mapped_column(Text)
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_next: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def status(self) -> str:
        """active, next or inactive."""
        return "active" if self.is_active else "next" if self.is_next else "inactive"


class InstanceSecret(Base):
    """A random secret of this installation (the persistent-NameID key), encrypted at rest."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """The audit trail: admin changes, logins and SSO outcomes (read newest created_at first)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_org", "organization_id", "created_at", "id"),
        Index("ix_events_service_action", "service_id", "action", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str | None] = mapped_column(String(36))  # no FK: the trail outlives
    service_id: Mapped[str | None] = mapped_column(String(36))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(36))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
