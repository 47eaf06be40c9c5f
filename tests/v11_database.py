"""A database as v1.1 left it (schema revision 0001), filled with plain SQL.

v1.1 had global ``users`` with ``memberships`` (role and groups per organization), login tokens
of users, and service API keys that could hold ``write:users``. ``build`` writes one of each
kind of row the 0002 migration has to carry over, and returns what a test needs to check it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import JSON, bindparam, create_engine, text

from idp import keys
from idp.auth import Passwords
from idp.settings import Settings
from idp.store.db import alembic_config
from idp.store.models import Service, UTCDateTime

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
ACS_PORT = 9  # as in sso_helpers: nothing listens, the browser never posts to the SP
TIMESTAMPS = ("created_at", "updated_at", "expires_at", "valid_from", "valid_until")
JSONS = (
    "groups", "redirect_uris", "github_scopes", "google_scopes", "microsoft_scopes",
    "features", "permissions", "attribute_mapping",
)


@dataclass
class V11:
    """What ``build`` stored: ids, passwords, the secrets of the key and the token."""

    alpha: str = "v11-alpha"  # organization slugs
    beta: str = "v11-beta"
    app: str = "portal"  # alpha's SAML service
    shop: str = "shop"  # beta's service, with the plan multi subscribes to
    ids: dict[str, str] = field(default_factory=dict)
    multi_email: str = "multi@v11.test"  # admin of alpha (eng), member of beta (sales)
    multi_password: str = "multi-password-v11"
    single_email: str = "single@v11.test"  # owner of beta
    single_password: str = "single-password-v11"
    api_key: str = ""  # alpha/portal's key, with read:users and write:users
    token: str = ""  # multi's v1.1 login token
    certificate: str = ""  # alpha/portal's signing certificate (PEM)
    saml: dict[str, Any] = field(default_factory=dict)  # alpha/portal's SAML configuration


def _new_id() -> str:
    return str(uuid.uuid4())


def build(url: str, settings: Settings) -> V11:
    """Migrate an empty database to 0001 and insert v1.1 rows with plain SQL."""
    command.upgrade(alembic_config(url), "0001")
    data = V11()
    ids = data.ids
    for name in ("alpha", "beta", "multi", "single", "portal", "shop", "plan", "sub_shop",
                 "sub_portal", "plan_portal", "key"):
        ids[name] = _new_id()
    passwords = Passwords(1, 64)
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    later = start + timedelta(hours=1)
    data.api_key = f"idpk_{secrets.token_hex(5)}.{secrets.token_urlsafe(32)}"
    data.token = f"idpt_{secrets.token_urlsafe(32)}"
    data.saml = {
        "enabled": True,
        "entity_id": "https://portal.v11-sp.test/metadata",
        "acs_url": f"http://127.0.0.1:{ACS_PORT}/v11-portal/acs",
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "email", "groups": "groups"},
        "sign_assertions": True,
        "sign_response": False,
    }
    certificate = keys.new_certificate(
        settings, data.alpha, Service(id=ids["portal"], slug=data.app)
    )
    data.certificate = certificate.certificate_pem
    service = {
        "redirect_uris": [], "github_scopes": [], "google_scopes": [], "microsoft_scopes": [],
        "service_type": "web", "created_at": start, "updated_at": start,
    }
    rows: list[tuple[str, dict[str, Any]]] = [
        ("organizations", {"id": ids["alpha"], "slug": data.alpha, "name": "Alpha",
                           "created_at": start}),
        ("organizations", {"id": ids["beta"], "slug": data.beta, "name": "Beta",
                           "created_at": start}),
        ("users", {"id": ids["multi"], "email": data.multi_email, "name": "Multi Person",
                   "given_name": "Multi", "family_name": "Person",
                   "password_hash": passwords.hash(data.multi_password), "created_at": start}),
        ("users", {"id": ids["single"], "email": data.single_email, "name": None,
                   "given_name": None, "family_name": None,
                   "password_hash": passwords.hash(data.single_password), "created_at": start}),
        # multi joined alpha first: that account keeps the user's id
        ("memberships", {"organization_id": ids["alpha"], "user_id": ids["multi"],
                         "role": "admin", "groups": ["eng"], "created_at": start}),
        ("memberships", {"organization_id": ids["beta"], "user_id": ids["multi"],
                         "role": "member", "groups": ["sales", "emea"], "created_at": later}),
        ("memberships", {"organization_id": ids["beta"], "user_id": ids["single"],
                         "role": "owner", "groups": [], "created_at": start}),
        ("services", {"id": ids["portal"], "organization_id": ids["alpha"], "slug": data.app,
                      "name": "Portal", "client_id": secrets.token_hex(16), **service}),
        ("services", {"id": ids["shop"], "organization_id": ids["beta"], "slug": data.shop,
                      "name": "Shop", "client_id": secrets.token_hex(16), **service}),
        ("plans", {"id": ids["plan"], "service_id": ids["shop"], "name": "pro",
                   "price_cents": 900, "currency": "usd", "features": ["sso"],
                   "created_at": start, "updated_at": start}),
        ("plans", {"id": ids["plan_portal"], "service_id": ids["portal"], "name": "basic",
                   "price_cents": 100, "currency": "usd", "features": [],
                   "created_at": start, "updated_at": start}),
        # the same user subscribed in both organizations: each moves to that org's account
        ("subscriptions", {"id": ids["sub_shop"], "service_id": ids["shop"],
                           "user_id": ids["multi"], "plan_id": ids["plan"], "status": "active",
                           "created_at": later, "cancelled_at": None}),
        ("subscriptions", {"id": ids["sub_portal"], "service_id": ids["portal"],
                           "user_id": ids["multi"], "plan_id": ids["plan_portal"],
                           "status": "active", "created_at": later, "cancelled_at": None}),
        ("api_keys", {"id": ids["key"], "service_id": ids["portal"], "name": "backend",
                      "prefix": data.api_key.split(".", 1)[0],
                      "key_hash": hashlib.sha256(data.api_key.encode()).hexdigest(),
                      "permissions": ["read:users", "write:users", "read:service"],
                      "expires_at": None, "last_used_at": None, "created_at": start}),
        ("auth_tokens", {"token_hash": hashlib.sha256(data.token.encode()).hexdigest(),
                         "user_id": ids["multi"], "created_at": datetime.now(UTC),
                         "expires_at": datetime.now(UTC) + timedelta(days=1)}),
        ("saml_configs", {"service_id": ids["portal"], **data.saml, "sp_certificate": None,
                          "want_authn_requests_signed": False, "slo_url": None,
                          "created_at": start, "updated_at": start}),
        ("saml_certificates", {"id": certificate.id, "service_id": ids["portal"],
                               "certificate_pem": certificate.certificate_pem,
                               "private_key_encrypted": certificate.private_key_encrypted,
                               "valid_from": certificate.valid_from,
                               "valid_until": certificate.valid_until, "is_active": True,
                               "created_at": start}),
    ]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table, row in rows:
                conn.execute(_insert(table, row), row)
    finally:
        engine.dispose()
    return data


def _insert(table: str, row: dict[str, Any]) -> Any:
    """INSERT INTO table (...) VALUES (...), timestamps and JSON bound with the column types
    v1.1 used (naive UTC text on SQLite, timestamptz and json on PostgreSQL)."""
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({values})")  # noqa: S608
    typed = [bindparam(n, type_=UTCDateTime()) for n in row if n in TIMESTAMPS and row[n]]
    typed += [bindparam(n, type_=JSON()) for n in row if n in JSONS]
    return statement.bindparams(*typed)
