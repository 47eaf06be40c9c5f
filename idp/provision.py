"""Declarative services: TOML files describing organizations, services and their SAML setup.

One file describes one organization and any number of its services (see docs/provisioning.md):

    [organization]            slug, name                      (the API's CreateOrganization)
    [[services]]              slug, name, service_type, ...   (the API's CreateService)
    [services.saml]           enabled, entity_id, acs_url, ...(the API's ConfigureSaml)
    [services.saml.attribute_mapping]

Every table is checked with the admin API's own schemas, so a file is refused for exactly what
the API would refuse, with the same reasons. A file is applied in one transaction: a bad file
changes nothing. Only differences are written (each one audited as the provisioner), so applying
the same files again changes nothing. A SAML service without an active signing certificate gets
one. Nothing a file does not mention is deleted, unless ``prune``: then services of the
declared organizations that no file declares, and SAML setups of declared services whose file
has no ``saml`` table, are deleted. Organizations and accounts are never deleted.

The rules (slug taken, service limit, SAML settings, certificates) are the domain's
(:mod:`idp.domain`), the same the admin API applies.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import audit, keys
from idp.api.errors import ApiError
from idp.api.openapi import COMPONENTS
from idp.api.saml import resolve_settings
from idp.api.validation import validate
from idp.domain import identity_providers, organizations, saml_setup, services
from idp.domain.errors import Conflict, DomainError, NotFound
from idp.sessions import Store, connect
from idp.settings import Settings
from idp.store.db import Database
from idp.store.models import SLUG_PATTERN, Organization, Service

ACTOR = audit.PROVISIONER
FILE_SCHEMA = {
    "type": "object",
    "required": ["organization"],
    "additionalProperties": False,
    "properties": {
        "organization": {"type": "object"},
        "services": {"type": "array", "items": {"type": "object"}},
        "identity_providers": {"type": "array", "items": {"type": "object"}},
    },
}

SLUG = re.compile(SLUG_PATTERN)
Announce = Callable[[str], None]


class FileError(Exception):
    """A file that cannot be applied: each problem is a key of the file and a reason."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        super().__init__(f"{path}: {problems}")
        self.path = path
        self.problems = problems

    def lines(self) -> list[str]:
        """One line per problem: file, key, reason."""
        return [
            f"{self.path}: {key}: {reason}" if key else f"{self.path}: {reason}"
            for key, reason in self.problems
        ]


class Collision(Exception):
    """A concurrent apply created what this one was about to create."""


@dataclass(frozen=True)
class ServiceDecl:
    """One ``[[services]]`` table: its key in the file, its fields, its ``saml`` table if any."""

    key: str
    fields: dict[str, Any]
    saml: dict[str, Any] | None

    @property
    def slug(self) -> str:
        """The service's slug."""
        slug: str = self.fields["slug"]
        return slug


@dataclass(frozen=True)
class Declaration:
    """A checked file: the organization it describes, its services and its upstream
    identity providers (slug -> PutIdentityProvider fields)."""

    path: Path
    organization: dict[str, Any]
    services: list[ServiceDecl]
    identity_providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def org(self) -> str:
        """The organization's slug."""
        slug: str = self.organization["slug"]
        return slug


@dataclass
class Report:
    """What a run changed (one line per change) and the errors of the files it refused."""

    files: int = 0
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _checked(
    value: Any, schema_name: str, key: str, problems: list[tuple[str, str]]
) -> dict[str, Any] | None:
    """The value if it satisfies an API schema; else its problems, keyed by where in the file."""
    schema = FILE_SCHEMA if schema_name == "file" else COMPONENTS[schema_name]
    details = _violations(value, schema)
    for name, reason in details.items():
        where = key if name == "body" else f"{key}.{name}" if key else name
        problems.append((where, reason))
    return None if details else dict(value)


def _violations(value: Any, schema: dict[str, Any]) -> dict[str, str]:
    """The reason per field why a value breaks a schema; empty when it satisfies it."""
    try:
        validate(value, schema)
    except ApiError as exc:  # the API's 400 error: its details hold the reasons
        return exc.details or {"body": exc.message}
    return {}


def load(path: Path) -> Declaration:
    """Read and check one file; raise FileError naming each bad key and why."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FileError(path, [("", f"cannot be read as TOML: {exc}")]) from None
    problems: list[tuple[str, str]] = []
    if _checked(document, "file", "", problems) is None:
        raise FileError(path, problems)
    organization = _checked(
        document["organization"], "CreateOrganization", "organization", problems
    )
    services: list[ServiceDecl] = []
    seen: dict[str, str] = {}
    for index, table in enumerate(document.get("services", [])):
        key = f"services[{index}]"
        table = dict(table)
        raw_saml = table.pop("saml", None)
        fields = _checked(table, "CreateService", key, problems)
        saml = None
        if raw_saml is not None:
            saml = _checked(raw_saml, "ConfigureSaml", f"{key}.saml", problems)
            if saml is None:
                continue
        if fields is None:
            continue
        if fields["slug"] in seen:
            problems.append((f"{key}.slug", f"is already declared by {seen[fields['slug']]}"))
            continue
        seen[fields["slug"]] = key
        services.append(ServiceDecl(key, fields, saml))
    upstream = _identity_providers(document.get("identity_providers", []), problems)
    if problems or organization is None:
        raise FileError(path, problems)
    organization["name"] = organization["name"].strip()  # as the API stores it
    return Declaration(path, organization, services, upstream)


def _identity_providers(
    tables: list[dict[str, Any]], problems: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """``[[identity_providers]]`` tables: ``slug`` and the API's fields; the client secret
    may be named by ``client_secret_env`` (an environment variable) instead of written down."""
    declared: dict[str, dict[str, Any]] = {}
    for index, table in enumerate(tables):
        key = f"identity_providers[{index}]"
        table = dict(table)
        slug = table.pop("slug", None)
        variable = table.pop("client_secret_env", None)
        if isinstance(variable, str):
            if variable not in os.environ:
                problems.append((f"{key}.client_secret_env", f"{variable} is not set"))
                continue
            table["client_secret"] = os.environ[variable]
        if not isinstance(slug, str) or not SLUG.fullmatch(slug) or slug in declared:
            problems.append((f"{key}.slug", "must be a slug, declared once"))
            continue
        fields = _checked(table, "PutIdentityProvider", key, problems)
        if fields is not None:
            declared[slug] = fields
    return declared


def _organization(session: Session, decl: Declaration, changes: list[str]) -> Organization:
    """The declared organization, created or renamed as the file says."""
    org = organizations.by_slug(session, decl.org)
    name = decl.organization["name"]
    if org is None:
        try:
            org = organizations.create(session, ACTOR, decl.org, name)
        except Conflict:  # created meanwhile by a concurrent apply
            raise Collision from None
        changes.append("organization created (no accounts yet)")
    elif organizations.rename(session, ACTOR, org, name):
        changes.append(f"organization renamed to '{name}'")
    return org


def _service(
    session: Session, settings: Settings, org: Organization, decl: ServiceDecl, path: Path
) -> tuple[Service, list[str]]:
    """The declared service, created or updated as the file says; returns it and its changes."""
    service = services.by_slug(session, org, decl.slug)
    if service is None:
        try:
            service = services.create(session, ACTOR, org, decl.fields, settings.max_services)
        except Conflict:  # created meanwhile by a concurrent apply
            raise Collision from None
        except DomainError as exc:
            raise _refused(path, decl.key, exc) from None
        return service, ["service created"]
    if service.service_type != decl.fields["service_type"]:
        reason = f"cannot change once the service exists (it is '{service.service_type}')"
        raise FileError(path, [(f"{decl.key}.service_type", reason)])
    changed = services.differences(service, decl.fields)
    if not changed:
        return service, []
    services.update(session, ACTOR, org, service, changed)
    return service, [f"service updated ({', '.join(sorted(changed))})"]


def _refused(path: Path, key: str, exc: DomainError) -> FileError:
    """A refusal of the domain as the file's problems: one per field it names, else one."""
    if not exc.details:
        return FileError(path, [(key, exc.message)])
    return FileError(path, [(f"{key}.{name}", reason) for name, reason in exc.details.items()])


def _saml(
    session: Session,
    settings: Settings,
    org: Organization,
    service: Service,
    decl: ServiceDecl,
    path: Path,
) -> list[str]:
    """Bring the service's SAML setup to the declared one; make a certificate if none is active."""
    changes = []
    assert decl.saml is not None
    try:
        resolved = resolve_settings(decl.saml, settings)  # a preset, the SP's metadata
        done = saml_setup.configure(session, ACTOR, org, service, resolved, unless_same=True)
    except DomainError as exc:
        raise _refused(path, f"{decl.key}.saml", exc) from None
    except ApiError as exc:  # the merged settings break the API's rules
        details = exc.details or {"body": exc.message}
        problems = [(f"{decl.key}.saml.{name}", reason) for name, reason in details.items()]
        raise FileError(path, problems) from None
    if done is not None:
        changes.append("SAML configured" if done == "created" else "SAML configuration updated")
    if saml_setup.active_certificate(session, service) is None:
        certificate = saml_setup.new_certificate(settings, org, service)
        saml_setup.rotate(session, ACTOR, org, service, certificate)
        changes.append(
            f"signing certificate created (SHA-256 {keys.fingerprint(certificate.certificate_pem)})"
        )
    return changes


def apply(db: Database, settings: Settings, decl: Declaration) -> dict[str, list[str]]:
    """Apply one checked file in one transaction; returns the changes per scope ("org/svc").

    A concurrent apply of the same file (several hosts starting at once) can collide on a new
    organization's or service's slug: the file is then applied once more, on top of what the
    other one did.
    """
    for attempt in (1, 2):
        try:
            return _apply_once(db, settings, decl)
        except (IntegrityError, Collision):
            if attempt == 2:
                raise FileError(decl.path, [("", "collided with a concurrent change")]) from None
    raise AssertionError("unreachable")


def _apply_once(db: Database, settings: Settings, decl: Declaration) -> dict[str, list[str]]:
    changes: dict[str, list[str]] = {}
    with db.write() as session:
        org_changes: list[str] = []
        org = _organization(session, decl, org_changes)
        if org_changes:
            changes[decl.org] = org_changes
        for service_decl in decl.services:
            service, done = _service(session, settings, org, service_decl, decl.path)
            if service_decl.saml is not None:
                done += _saml(session, settings, org, service, service_decl, decl.path)
            if done:
                changes[f"{decl.org}/{service.slug}"] = done
        for slug, fields in decl.identity_providers.items():
            _, outcome = identity_providers.put(session, settings, ACTOR, org, slug, fields)
            if outcome is not None:
                changes.setdefault(decl.org, []).append(f"identity provider {slug} {outcome}")
    return changes


def _prune(db: Database, org_slug: str, declared: dict[str, ServiceDecl]) -> dict[str, list[str]]:
    """Delete the organization's undeclared services, and SAML setups no file declares."""
    changes: dict[str, list[str]] = {}
    with db.write() as session:
        org = organizations.find(session, org_slug)  # applied just before
        for service in sorted(services.listing(session, org), key=lambda svc: svc.slug):
            scope = f"{org_slug}/{service.slug}"
            decl = declared.get(service.slug)
            if decl is None:
                services.remove(session, ACTOR, org, service)
                changes[scope] = ["service deleted (pruned)"]
            elif decl.saml is None and _remove_saml(session, org, service):
                changes[scope] = ["SAML configuration deleted (pruned)"]
    return changes


def _remove_saml(session: Session, org: Organization, service: Service) -> bool:
    """Delete the service's SAML setup; False when it has none."""
    try:
        saml_setup.remove(session, ACTOR, org, service)
    except NotFound:
        return False
    return True


def _files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob("*.toml") if path.is_file())


def _declarations(paths: list[Path], report: Report) -> Iterator[Declaration]:
    """The checked files; bad ones, and those that contradict an earlier file, go to errors."""
    names: dict[str, tuple[str, Path]] = {}
    owners: dict[tuple[str, str], Path] = {}
    for path in paths:
        try:
            decl = load(path)
            problems: list[tuple[str, str]] = []
            name, first = names.setdefault(decl.org, (decl.organization["name"], path))
            if name != decl.organization["name"]:
                problems.append(("organization.name", f"differs from '{name}' given in {first}"))
            for svc in decl.services:
                owner = owners.setdefault((decl.org, svc.slug), path)
                if owner != path:
                    problems.append((f"{svc.key}.slug", f"is already declared in {owner}"))
            if problems:
                raise FileError(path, problems)
        except FileError as exc:
            report.errors += exc.lines()
            continue
        yield decl


def provision(
    db: Database, settings: Settings, directory: Path, announce: Announce, prune: bool = False
) -> Report:
    """Apply every ``*.toml`` file of a directory (each in its own transaction).

    ``announce`` is called with "org" or "org/svc" after each commit that changed it, so
    every worker reloads it. ``prune`` runs only when every file was applied.
    """
    paths = _files(directory)
    report = Report(files=len(paths))
    applied: dict[str, dict[str, ServiceDecl]] = {}
    for decl in _declarations(paths, report):
        try:
            changes = apply(db, settings, decl)
        except FileError as exc:
            report.errors += exc.lines()
            continue
        applied.setdefault(decl.org, {}).update({svc.slug: svc for svc in decl.services})
        _announce(changes, announce, report, decl.path.name)
    if prune and report.errors:
        report.errors.append("nothing pruned: fix the files above first")
    elif prune:
        for org_slug, declared in applied.items():
            _announce(_prune(db, org_slug, declared), announce, report, "prune")
    return report


def _announce(
    changes: dict[str, list[str]], announce: Announce, report: Report, source: str
) -> None:
    for scope, done in changes.items():
        report.changes += [f"{source}: {scope}: {change}" for change in done]
        announce(scope)


def run(db: Database, settings: Settings, directory: Path, prune: bool = False) -> Report:
    """Provision from a directory against the configured Redis (the CLI and start-up use it).

    Changes are announced on IDP_REDIS_URL; with the embedded Redis they are not, and running
    workers pick them up within their cache's maximum age.
    """
    client = connect(settings.redis_url) if settings.redis_url else None
    store = None if client is None else Store(client, settings.session_ttl)
    try:
        return provision(db, settings, directory, store.announce_change if store else _quiet, prune)
    finally:
        if client is not None:
            client.close()


def _quiet(scope: str) -> None:
    """No Redis to announce changes on."""
