"""Alembic environment: runs the packaged migrations against the configured URL."""

from alembic import context
from sqlalchemy import text

from idp.store.db import make_engine
from idp.store.models import Base

MIGRATION_LOCK = 7_420_001  # PostgreSQL advisory lock id: one migrator at a time


def run() -> None:
    """Apply migrations online, serialized across hosts on PostgreSQL."""
    engine = make_engine(context.config.attributes["url"])
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK})
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


run()
