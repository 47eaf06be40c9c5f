"""Declarative service files: ``idp provision DIR`` and IDP_PROVISION_DIR at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_helpers import storage
from conftest import (
    OWNER_PASSWORD,
    Account,
    Server,
    free_port,
    start_server,
    stop_server,
    unique_slug,
)
from sqlalchemy import func, select
from sso_helpers import (
    EMAIL_FORMAT,
    Browser,
    SamlService,
    onelogin_accepts,
    onelogin_auth,
    posted_message,
)

from idp.store.models import Event, Organization, SamlCertificate, Service

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "services"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def saml_table(svc: str, **fields: Any) -> dict[str, Any]:
    """A valid [services.saml] table for an SP that never really receives anything."""
    return {
        "enabled": True,
        "entity_id": f"https://{svc}.sp.test/metadata",
        "acs_url": f"http://127.0.0.1:9/{svc}/acs",
        "name_id_format": EMAIL_FORMAT,
        "sign_assertions": True,
        "sign_response": False,
        "attribute_mapping": {"email": "mail", "groups": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"},
        **fields,
    }


def service_table(svc: str, saml: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid [[services]] table, with a saml table unless ``saml`` is {}."""
    table = {
        "slug": svc,
        "name": f"App {svc}",
        "service_type": "web",
        "redirect_uris": ["https://app.test/callback"],
        **fields,
    }
    if saml != {}:
        table["saml"] = saml or saml_table(svc)
    return table


def render(organization: dict[str, Any], services: list[dict[str, Any]]) -> str:
    """A service file (JSON strings, booleans and arrays are valid TOML values)."""

    def pairs(table: dict[str, Any]) -> list[str]:
        return [f"{key} = {json.dumps(value)}" for key, value in table.items()]

    lines = ["[organization]", *pairs(organization)]
    for service in services:
        service = dict(service)
        saml = service.pop("saml", None)
        lines += ["", "[[services]]", *pairs(service)]
        if saml is not None:
            saml = dict(saml)
            mapping = saml.pop("attribute_mapping", None)
            lines += ["[services.saml]", *pairs(saml)]
            if mapping is not None:
                lines += ["[services.saml.attribute_mapping]", *pairs(mapping)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "services"
    directory.mkdir()
    return directory


def write(
    directory: Path, filename: str, org: str, *services: dict[str, Any], **org_fields: Any
) -> Path:
    """Write a file declaring organization ``org`` and these services."""
    path = directory / filename
    path.write_text(render({"slug": org, "name": f"Org {org}", **org_fields}, list(services)))
    return path


def provision(server: Server, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``idp provision`` against the server's database and Redis."""
    return server.cli("provision", str(directory), *args, check=False)


def own(server: Server, owner: Account, org: str) -> None:
    """Give the provisioned organization an owner account with the module's owner's email
    (files create no accounts)."""
    server.cli("bootstrap", "--org", org, "--email", owner.email, "--password", OWNER_PASSWORD)


def get(server: Server, owner: Account, path: str) -> Any:
    response = server.api("GET", path, owner.token)
    assert response.status_code == 200, response.text
    return response.json()


def service_id(server: Server, org: str, svc: str) -> str | None:
    with storage(server) as session:
        return session.scalar(
            select(Service.id)
            .join(Organization)
            .where(Organization.slug == org, Service.slug == svc)
        )


def event_count(server: Server) -> int:
    with storage(server) as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def org_exists(server: Server, slug: str) -> bool:
    with storage(server) as session:
        return session.scalar(select(Organization).where(Organization.slug == slug)) is not None


# -- the shipped example -------------------------------------------------------------------


def test_the_shipped_example_applies_once_then_changes_nothing(
    server: Server, owner: Account
) -> None:
    first = provision(server, EXAMPLES)
    assert first.returncode == 0, first.stderr
    for change in (
        "acme/salesforce: service created",
        "acme/salesforce: SAML configured",
        "acme/salesforce: signing certificate created",
    ):
        assert change in first.stdout
    config = get(server, owner, "/organizations/acme/services/salesforce/saml")
    assert config["entity_id"] == "https://saml.salesforce.com"
    assert config["acs_url"].startswith("https://acme.my.salesforce.com?so=00D")
    assert config["name_id_format"] == EMAIL_FORMAT
    assert config["attribute_mapping"]["email"] == "User.Email"
    assert config["has_certificate"] is True
    certificate = get(server, owner, "/organizations/acme/services/salesforce/saml/certificate")
    metadata = Browser(server).get(f"{server.url}/saml/acme/salesforce/metadata")
    assert metadata.status_code == 200
    events = event_count(server)

    again = provision(server, EXAMPLES)
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout
    assert "created" not in again.stdout
    assert event_count(server) == events
    same = get(server, owner, "/organizations/acme/services/salesforce/saml/certificate")
    assert same["id"] == certificate["id"]


# -- round trips -----------------------------------------------------------------------------


def test_a_provisioned_service_signs_users_in(
    server: Server, owner: Account, workdir: Path
) -> None:
    org, svc = unique_slug("prov"), unique_slug("app")
    write(workdir, "org.toml", org, service_table(svc))
    result = provision(server, workdir)
    assert result.returncode == 0, result.stderr
    assert f"{org}: organization created (no accounts yet)" in result.stdout
    own(server, owner, org)
    config = get(server, owner, f"/organizations/{org}/services/{svc}/saml")
    certificate = get(server, owner, f"/organizations/{org}/services/{svc}/saml/certificate")
    service = SamlService(server, owner.token, org, svc, config, certificate["public_key"])
    auth = onelogin_auth(service)
    page = Browser(server).sso(auth.login(), owner.email, owner.password)
    response = onelogin_accepts(service, posted_message(page.text), auth.get_last_request_id())
    assert response.get_nameid() == owner.email
    assert response.get_attributes()["mail"] == [owner.email]


def test_files_and_the_api_end_in_the_same_state(
    server: Server, owner: Account, workdir: Path
) -> None:
    org, by_file, by_api = unique_slug("prov"), unique_slug("file"), unique_slug("api")
    saml = saml_table("same", name_id_format=PERSISTENT, slo_url="https://same.sp.test/slo")
    fields = {"github_scopes": ["read:user"], "redirect_uris": ["https://same.test/cb"]}
    write(workdir, "org.toml", org, service_table(by_file, saml, name="Same", **fields))
    assert provision(server, workdir).returncode == 0
    own(server, owner, org)
    body = {"slug": by_api, "name": "Same", "service_type": "web", **fields}
    assert server.api("POST", f"/organizations/{org}/services", owner.token, json=body).ok
    put = server.api("PUT", f"/organizations/{org}/services/{by_api}/saml", owner.token, json=saml)
    assert put.status_code == 200, put.text
    assert server.api(
        "POST", f"/organizations/{org}/services/{by_api}/saml/certificate", owner.token
    ).ok

    def state(svc: str) -> tuple[Any, ...]:
        service = get(server, owner, f"/organizations/{org}/services/{svc}")
        kept = {
            k: v
            for k, v in service["service"].items()
            if k in ("name", "service_type", "redirect_uris")
        }
        return (
            kept,
            service["provider_grants"],
            get(server, owner, f"/organizations/{org}/services/{svc}/saml"),
        )

    assert state(by_file) == state(by_api)


def test_a_changed_file_updates_only_what_changed_and_serves_it_at_once(
    server: Server, owner: Account, workdir: Path
) -> None:
    org, svc = unique_slug("prov"), unique_slug("app")
    write(workdir, "org.toml", org, service_table(svc))
    assert provision(server, workdir).returncode == 0
    own(server, owner, org)
    metadata = f"{server.url}/saml/{org}/{svc}/metadata"
    assert Browser(server).get(metadata).status_code == 200  # now cached by a worker
    certificate = get(server, owner, f"/organizations/{org}/services/{svc}/saml/certificate")

    write(
        workdir, "org.toml", org, service_table(svc, saml_table(svc, enabled=False), name="Renamed")
    )
    result = provision(server, workdir)
    assert result.returncode == 0, result.stderr
    assert f"{org}/{svc}: service updated (name)" in result.stdout
    assert f"{org}/{svc}: SAML configuration updated" in result.stdout
    assert "certificate" not in result.stdout
    assert Browser(server).get(metadata).status_code == 404  # announced: no stale cache
    assert (
        get(server, owner, f"/organizations/{org}/services/{svc}")["service"]["name"] == "Renamed"
    )
    same = get(server, owner, f"/organizations/{org}/services/{svc}/saml/certificate")
    assert same["id"] == certificate["id"]

    trail = get(server, owner, f"/organizations/{org}/audit-events")["audit_events"]
    update, configure = (
        next(e for e in trail if e["action"] == action)
        for action in ("service.update", "saml.configure")
    )
    for event in (update, configure):
        assert event["actor"] == {"type": "provision", "id": None}
    assert (update["summary"]["before"]["name"], update["summary"]["after"]["name"]) == (
        f"App {svc}",
        "Renamed",
    )
    assert configure["summary"]["before"]["enabled"] is True
    assert configure["summary"]["after"]["enabled"] is False


def test_a_service_made_through_the_api_is_taken_over_not_duplicated(
    server: Server, owner: Account, org: str, workdir: Path
) -> None:
    svc = unique_slug("app")
    body = {"slug": svc, "name": "Made by API", "service_type": "web", "redirect_uris": []}
    assert server.api("POST", f"/organizations/{org}/services", owner.token, json=body).ok
    write(workdir, "org.toml", org, service_table(svc), name=org)
    result = provision(server, workdir)
    assert result.returncode == 0, result.stderr
    assert "service updated (name, redirect_uris)" in result.stdout
    assert "service created" not in result.stdout
    services = get(server, owner, f"/organizations/{org}/services")["services"]
    assert [s["slug"] for s in services] == [svc]
    assert get(server, owner, f"/organizations/{org}/services/{svc}/saml")["has_certificate"]


def test_concurrent_applies_create_everything_once(server: Server, workdir: Path) -> None:
    org = unique_slug("race")
    write(workdir, "org.toml", org, service_table("a"))
    assert provision(server, workdir).returncode == 0
    new = "bcdefgh"  # a long transaction: the runs overlap; "a" is left out to lock nothing
    write(workdir, "org.toml", org, *(service_table(svc) for svc in new))
    command = [sys.executable, "-m", "idp", "provision", str(workdir)]
    runs = [
        subprocess.Popen(
            command, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    created = "".join(out for out, _ in outputs)
    for svc in new:
        assert created.count(f"{org}/{svc}: service created") == 1
        assert created.count(f"{org}/{svc}: signing certificate created") == 1
    with storage(server) as session:
        services = session.scalars(
            select(Service.slug).join(Organization).where(Organization.slug == org)
        ).all()
        active = session.scalars(
            select(SamlCertificate.service_id)
            .join(Service)
            .join(Organization)
            .where(Organization.slug == org, SamlCertificate.is_active)
        ).all()
    assert sorted(services) == list("a" + new)
    assert len(active) == len(set(active)) == 8


# -- refused files -------------------------------------------------------------------------


def test_a_bad_file_names_the_key_with_the_api_reason_and_changes_nothing(
    server: Server, owner: Account, org: str, workdir: Path
) -> None:
    bad_org, good_org = unique_slug("bad"), unique_slug("good")
    insecure = saml_table("b", acs_url="http://sp.example.com/acs")
    path = write(workdir, "bad.toml", bad_org, service_table("a"), service_table("b", insecure))
    write(workdir, "good.toml", good_org, service_table("c"))
    result = provision(server, workdir)
    assert result.returncode == 1
    svc = unique_slug("app")
    body = {"slug": svc, "name": svc, "service_type": "web", "redirect_uris": []}
    assert server.api("POST", f"/organizations/{org}/services", owner.token, json=body).ok
    api = server.api("PUT", f"/organizations/{org}/services/{svc}/saml", owner.token, json=insecure)
    assert api.status_code == 400
    reason = api.json()["details"]["acs_url"]
    assert f"{path}: services[1].saml.acs_url: {reason}" in result.stderr
    assert not org_exists(server, bad_org)  # not even the valid first service's organization
    assert org_exists(server, good_org)  # the other file still applied
    assert f"good.toml: {good_org}/c: service created" in result.stdout


@pytest.mark.parametrize(
    ("service", "key", "reason"),
    [
        (
            service_table("x", saml_table("x", sign_assertions=False)),
            "services[0].saml.sign_response",
            "must be true when sign_assertions is false",
        ),
        (
            service_table("x", saml_table("x", want_authn_requests_signed=True)),
            "services[0].saml.want_authn_requests_signed",
            "can be true only with an sp_certificate",
        ),
        (
            service_table("x", saml_table("x", attribute_mapping={"password": "pw"})),
            "services[0].saml.attribute_mapping",
            "keys must be user fields",
        ),
        (service_table("x", service_type="desktop"), "services[0].service_type", "must be one of"),
        (service_table("Not A Slug", {}), "services[0].slug", "lowercase letters"),
        (service_table("x", colour="blue"), "services[0].colour", "is not a known field"),
        (
            service_table("x", saml_table("x", entityid="typo")),
            "services[0].saml.entityid",
            "is not a known field",
        ),
        (
            {"slug": "x", "name": "X", "service_type": "web"},
            "services[0].redirect_uris",
            "is required",
        ),
    ],
)
def test_every_api_rule_applies_to_files(
    server: Server, workdir: Path, service: dict[str, Any], key: str, reason: str
) -> None:
    org = unique_slug("bad")
    path = write(workdir, "bad.toml", org, service)
    result = provision(server, workdir)
    assert result.returncode == 1
    line = next((line for line in result.stderr.splitlines() if f"{path}: {key}: " in line), None)
    assert line is not None and reason in line, result.stderr
    assert not org_exists(server, org)


def test_unreadable_and_contradictory_files_are_refused(server: Server, workdir: Path) -> None:
    org = unique_slug("prov")
    (workdir / "a-broken.toml").write_text('[organization]\nslug = "x\n')
    (workdir / "b-no-org.toml").write_text('[[services]]\nslug = "x"\n')
    write(workdir, "c-first.toml", org, service_table("dup"))
    write(workdir, "d-again.toml", org, service_table("dup"))
    write(workdir, "e-renamed.toml", org, service_table("other"), name="Another name")
    write(workdir, "f-twice.toml", unique_slug("prov"), service_table("y"), service_table("y"))
    result = provision(server, workdir)
    assert result.returncode == 1
    errors = result.stderr
    assert f"{workdir / 'a-broken.toml'}: cannot be read as TOML" in errors
    assert f"{workdir / 'b-no-org.toml'}: organization: is required" in errors
    assert (
        f"d-again.toml: services[0].slug: is already declared in {workdir / 'c-first.toml'}"
        in errors
    )
    assert "e-renamed.toml: organization.name: differs from" in errors
    assert "f-twice.toml: services[1].slug: is already declared by services[0]" in errors
    assert f"c-first.toml: {org}/dup: service created" in result.stdout


def test_a_service_type_cannot_change_and_the_service_limit_holds(
    server: Server, workdir: Path
) -> None:
    org = unique_slug("prov")
    write(workdir, "org.toml", org, service_table("app", {}))
    assert provision(server, workdir).returncode == 0
    write(workdir, "org.toml", org, service_table("app", {}, service_type="api"))
    result = provision(server, workdir)
    assert result.returncode == 1
    assert (
        "services[0].service_type: cannot change once the service exists (it is 'web')"
        in result.stderr
    )
    eleven = [service_table("app", {}), *(service_table(f"app{i}", {}) for i in range(1, 11))]
    write(workdir, "org.toml", org, *eleven)
    result = provision(server, workdir)
    assert result.returncode == 1
    assert (
        f"services[10]: Organization '{org}' already has the maximum of 10 services"
        in result.stderr
    )
    with storage(server) as session:
        count = session.scalar(
            select(func.count())
            .select_from(Service)
            .join(Organization)
            .where(Organization.slug == org)
        )
    assert count == 1  # the file's first ten were not kept either


# -- pruning ---------------------------------------------------------------------------------


def test_nothing_is_deleted_without_prune(server: Server, workdir: Path) -> None:
    org = unique_slug("prov")
    write(workdir, "org.toml", org, service_table("keep"), service_table("drop"))
    assert provision(server, workdir).returncode == 0
    write(workdir, "org.toml", org, service_table("keep", {}))
    result = provision(server, workdir)
    assert result.returncode == 0
    assert "nothing to change" in result.stdout
    with storage(server) as session:
        slugs = session.scalars(
            select(Service.slug).join(Organization).where(Organization.slug == org)
        ).all()
    assert sorted(slugs) == ["drop", "keep"]


def test_prune_deletes_what_no_file_declares_in_declared_organizations(
    server: Server, owner: Account, org: str, workdir: Path
) -> None:
    untouched = unique_slug("api")  # an organization no file names keeps everything
    body = {"slug": untouched, "name": "x", "service_type": "web", "redirect_uris": []}
    assert server.api("POST", f"/organizations/{org}/services", owner.token, json=body).ok
    declared = unique_slug("prov")
    write(workdir, "org.toml", declared, service_table("keep"), service_table("drop"))
    assert provision(server, workdir).returncode == 0
    keep_id = service_id(server, declared, "keep")
    write(workdir, "org.toml", declared, service_table("keep", {}))

    (workdir / "broken.toml").write_text("not toml at all")
    refused = provision(server, workdir, "--prune")
    assert refused.returncode == 1
    assert "nothing pruned" in refused.stderr
    (workdir / "broken.toml").unlink()

    result = provision(server, workdir, "--prune")
    assert result.returncode == 0, result.stderr
    assert f"prune: {declared}/drop: service deleted (pruned)" in result.stdout
    assert f"prune: {declared}/keep: SAML configuration deleted (pruned)" in result.stdout
    with storage(server) as session:
        slugs = session.scalars(
            select(Service.slug).join(Organization).where(Organization.slug == declared)
        ).all()
        active = session.scalar(
            select(func.count())
            .select_from(SamlCertificate)
            .where(SamlCertificate.service_id == keep_id, SamlCertificate.is_active)
        )
    assert slugs == ["keep"] and active == 0
    own(server, owner, declared)
    trail = get(server, owner, f"/organizations/{declared}/audit-events")["audit_events"]
    pruned = [e for e in trail if e["action"] in ("service.delete", "saml.delete")]
    assert sorted(e["action"] for e in pruned) == ["saml.delete", "service.delete"]
    assert all(e["actor"]["type"] == "provision" for e in pruned)
    assert get(server, owner, f"/organizations/{org}/services/{untouched}")
    assert "nothing to change" in provision(server, workdir, "--prune").stdout


# -- at start-up -----------------------------------------------------------------------------


@pytest.fixture
def started_with(server: Server, tmp_path: Path) -> Iterator[Any]:
    """Start another server on the same stores with IDP_PROVISION_DIR set."""
    running: list[Server] = []

    def start(directory: Path) -> Server:
        port = free_port()
        env = {
            **server.env,
            "IDP_BASE_URL": f"http://127.0.0.1:{port}",
            "IDP_PROVISION_DIR": str(directory),
        }
        running.append(start_server(env, port, tmp_path / f"server-{port}.log"))
        return running[-1]

    yield start
    for other in running:
        stop_server(other)


def test_start_up_applies_the_directory_before_serving(started_with: Any, workdir: Path) -> None:
    org, svc, broken = unique_slug("boot"), unique_slug("app"), unique_slug("bad")
    write(workdir, "good.toml", org, service_table(svc))
    write(workdir, "bad.toml", broken, service_table("x", saml_table("x", acs_url="ftp://x")))
    other = started_with(workdir)
    assert Browser(other).get(f"{other.url}/saml/{org}/{svc}/metadata").status_code == 200
    lines = [json.loads(line) for line in other.log().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert f"provisioned good.toml: {org}/{svc}: signing certificate created" in " ".join(messages)
    refused = [line for line in lines if line["level"] == "error"]
    assert any(
        "bad.toml: services[0].saml.acs_url: must be an absolute https URL" in line["message"]
        for line in refused
    )
    assert not org_exists(other, broken)


def test_start_up_stops_when_the_directory_is_missing(server: Server, tmp_path: Path) -> None:
    port = free_port()
    env = {**server.env, "IDP_PROVISION_DIR": str(tmp_path / "missing")}
    result = subprocess.run(
        [sys.executable, "-m", "idp", "serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"idp: IDP_PROVISION_DIR {tmp_path / 'missing'} is not a directory" in result.stderr
