"""organizations own their accounts; operators and platform keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 18:40:00

Each v1.1 membership becomes an account of its organization with the user's profile and
password hash, the membership's role and groups. The oldest membership of each user keeps the
user's id, so that account keeps its persistent and unspecified NameIDs; the user's accounts
in other organizations get new ids, and so new NameIDs (two organizations never share one).
Subscriptions move to the account of the service's organization; login tokens are dropped
(everyone signs in again); ``write:users`` is taken from service API keys.
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import idp.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = idp.store.models.UTCDateTime(timezone=True)


def _create_tables() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("email", name=op.f("uq_operators_email")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("given_name", sa.String(length=200), nullable=True),
        sa.Column("family_name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_accounts_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("organization_id", "email", name="uq_accounts_org_email"),
    )
    op.create_table(
        "platform_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_platform_keys_prefix")),
    )


def _accounts_from_memberships(bind: sa.Connection) -> dict[tuple[str, str], str]:
    """Insert one account per membership; returns (organization id, user id) -> account id."""
    users = sa.table(
        "users",
        sa.column("id"),
        sa.column("email"),
        sa.column("name"),
        sa.column("given_name"),
        sa.column("family_name"),
        sa.column("password_hash"),
    )
    memberships = sa.table(
        "memberships",
        sa.column("organization_id"),
        sa.column("user_id"),
        sa.column("role"),
        sa.column("groups", sa.JSON),
        sa.column("created_at", TIMESTAMP),
    )
    query = (
        sa.select(memberships, users)
        .join(users, users.c.id == memberships.c.user_id)
        .order_by(memberships.c.user_id, memberships.c.created_at, memberships.c.organization_id)
    )
    now = datetime.now(UTC)
    accounts: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    rows = []
    for row in bind.execute(query).mappings():
        account_id = str(uuid.uuid4()) if row["user_id"] in seen else row["user_id"]
        seen.add(row["user_id"])
        accounts[(row["organization_id"], row["user_id"])] = account_id
        rows.append(
            {
                "id": account_id,
                "organization_id": row["organization_id"],
                "email": row["email"],
                "name": row["name"],
                "given_name": row["given_name"],
                "family_name": row["family_name"],
                "role": row["role"],
                "groups": list(row["groups"] or []),
                "disabled": False,
                "password_hash": row["password_hash"],
                "generation": 0,
                "created_at": row["created_at"],
                "updated_at": now,
            }
        )
    if rows:
        names = [name for name in rows[0] if name not in ("groups", "created_at", "updated_at")]
        table = sa.table(
            "accounts",
            *(sa.column(name) for name in names),
            sa.column("groups", sa.JSON),
            sa.column("created_at", TIMESTAMP),
            sa.column("updated_at", TIMESTAMP),
        )
        op.bulk_insert(table, rows)
    return accounts


def _move_subscriptions(bind: sa.Connection, accounts: dict[tuple[str, str], str]) -> None:
    """Point each subscription at the account of its service's organization."""
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("account_id", sa.String(length=36), nullable=True))
    subscriptions = sa.table(
        "subscriptions",
        sa.column("id"),
        sa.column("user_id"),
        sa.column("account_id"),
        sa.column("service_id"),
    )
    services = sa.table("services", sa.column("id"), sa.column("organization_id"))
    query = sa.select(subscriptions.c.id, subscriptions.c.user_id, services.c.organization_id).join(
        services, services.c.id == subscriptions.c.service_id
    )
    for sub_id, user_id, org_id in list(bind.execute(query)):
        account_id = accounts.get((org_id, user_id))
        statement = (
            subscriptions.delete()
            if account_id is None
            else subscriptions.update().values(account_id=account_id)
        )
        bind.execute(statement.where(subscriptions.c.id == sub_id))
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_index("uq_subscriptions_active")
        batch.drop_index(batch.f("ix_subscriptions_user_id"))
        batch.drop_constraint(batch.f("fk_subscriptions_user_id_users"), type_="foreignkey")
        batch.drop_column("user_id")
        batch.alter_column("account_id", existing_type=sa.String(length=36), nullable=False)
        batch.create_foreign_key(
            batch.f("fk_subscriptions_account_id_accounts"),
            "accounts",
            ["account_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(batch.f("ix_subscriptions_account_id"), ["account_id"], unique=False)
        batch.create_index(
            "uq_subscriptions_active",
            ["service_id", "account_id"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )


def _new_auth_tokens() -> None:
    """Tokens named global users: drop them and make the table for accounts and operators."""
    op.drop_table("auth_tokens")
    op.create_table(
        "auth_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("operator_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_auth_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_auth_tokens_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_tokens")),
    )
    with op.batch_alter_table("auth_tokens") as batch:
        batch.create_index(batch.f("ix_auth_tokens_account_id"), ["account_id"], unique=False)
        batch.create_index(batch.f("ix_auth_tokens_operator_id"), ["operator_id"], unique=False)


def _drop_write_users(bind: sa.Connection) -> None:
    """No key creates or changes accounts any more."""
    keys = sa.table("api_keys", sa.column("id"), sa.column("permissions", sa.JSON))
    for key_id, permissions in list(bind.execute(sa.select(keys.c.id, keys.c.permissions))):
        if "write:users" in (permissions or []):
            kept = [p for p in permissions if p != "write:users"]
            bind.execute(keys.update().where(keys.c.id == key_id).values(permissions=kept))


def upgrade() -> None:
    bind = op.get_bind()
    _create_tables()
    accounts = _accounts_from_memberships(bind)
    _move_subscriptions(bind, accounts)
    _new_auth_tokens()
    _drop_write_users(bind)
    with op.batch_alter_table("saml_configs") as batch:
        batch.add_column(
            sa.Column("allowed_groups", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(
            sa.Column(
                "require_subscription", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("memberships") as batch:
        batch.drop_index(batch.f("ix_memberships_user_id"))
    op.drop_table("memberships")
    op.drop_table("users")


def downgrade() -> None:
    raise NotImplementedError("accounts cannot be merged back into global users")
