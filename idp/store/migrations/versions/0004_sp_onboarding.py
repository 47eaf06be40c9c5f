"""SP onboarding: metadata import and refresh, several ACS URLs, encrypted assertions,
attribute values, presets, and a staged next signing certificate

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 20:30:00
"""

import sqlalchemy as sa
from alembic import op

import idp.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = idp.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("saml_configs") as batch:
        batch.add_column(sa.Column("acs_urls", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("sp_encryption_certificate", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "encrypt_assertions", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("content_encryption", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("attribute_values", sa.JSON(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("preset", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("sp_metadata_url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("sent", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("metadata_refreshed_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("metadata_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("metadata_next_refresh_at", TIMESTAMP, nullable=True))
        batch.create_index(
            op.f("ix_saml_configs_metadata_next_refresh_at"), ["metadata_next_refresh_at"]
        )
    with op.batch_alter_table("saml_certificates") as batch:
        batch.add_column(
            sa.Column("is_next", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index(
        "uq_saml_certificates_next",
        "saml_certificates",
        ["service_id"],
        unique=True,
        sqlite_where=sa.text("is_next"),
        postgresql_where=sa.text("is_next"),
    )


def downgrade() -> None:
    op.drop_index("uq_saml_certificates_next", table_name="saml_certificates")
    with op.batch_alter_table("saml_certificates") as batch:
        batch.drop_column("is_next")
    with op.batch_alter_table("saml_configs") as batch:
        batch.drop_index(op.f("ix_saml_configs_metadata_next_refresh_at"))
        for column in (
            "metadata_next_refresh_at",
            "metadata_error",
            "metadata_refreshed_at",
            "sent",
            "sp_metadata_url",
            "preset",
            "attribute_values",
            "content_encryption",
            "encrypt_assertions",
            "sp_encryption_certificate",
            "acs_urls",
        ):
            batch.drop_column(column)
