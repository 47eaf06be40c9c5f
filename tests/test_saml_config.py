"""sso.services.saml: configuration and signing certificates, against a running server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from admin_helpers import client, fails, new_key, new_service, storage
from conftest import Account, Server, add_user
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml_core_helpers import key_pair
from sqlalchemy import select

from idp.client import SsoApiError, SsoClient
from idp.sessions import Store, connect
from idp.store.models import Event, SamlCertificate, SamlConfig

EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def sp_config(**fields: Any) -> dict[str, Any]:
    """A valid ConfigureSamlPayload (the seed's Salesforce example); ``fields`` override it."""
    return {
        "enabled": True,
        "entity_id": "https://salesforce.example.com",
        "acs_url": "https://salesforce.example.com/saml/acs",
        "name_id_format": EMAIL,
        "attribute_mapping": {
            "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "id": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        },
        "sign_assertions": True,
        "sign_response": True,
        **fields,
    }


ECHOED_DEFAULTS = {  # what getConfig echoes for the optional fields left out
    "has_certificate": False,
    "sp_certificate": None,
    "want_authn_requests_signed": False,
    "slo_url": None,
    "allowed_groups": [],
    "require_subscription": False,
    "require_mfa": False,
    "acs_urls": [],
    "sp_encryption_certificate": None,
    "encrypt_assertions": False,
    "attribute_values": [],
    "preset": None,
    "sp_metadata_url": None,
    "metadata_refreshed_at": None,
    "metadata_error": None,
}


def sp_certificate_pem() -> str:
    """A self-signed certificate such as an SP publishes."""
    return key_pair("sp.example.com")[1].decode()


@dataclass
class SamlService:
    """A fresh organization and service, and the owner's client."""

    org: str
    svc: str
    service_id: str
    sso: SsoClient


@pytest.fixture
def target(server: Server, owner: Account, org: str) -> SamlService:
    """A new service in a new organization, not yet configured for SAML."""
    sso = client(server, owner)
    service = new_service(sso, org)
    return SamlService(org, service["slug"], service["id"], sso)


@pytest.fixture
def configured(target: SamlService) -> SamlService:
    """The service, configured with sp_config()."""
    target.sso.services.saml.configure(target.org, target.svc, sp_config())
    return target


def certificates(server: Server, service_id: str) -> list[SamlCertificate]:
    """Every certificate row of a service, oldest first, read from the server's database."""
    with storage(server) as session:
        query = select(SamlCertificate).where(SamlCertificate.service_id == service_id)
        rows = list(session.scalars(query.order_by(SamlCertificate.created_at)))
        session.expunge_all()
        return rows


def events(server: Server, service_id: str, prefix: str = "saml.") -> list[Event]:
    """The audit events of a service whose action starts with ``prefix``, oldest first."""
    with storage(server) as session:
        query = select(Event).where(Event.service_id == service_id, Event.action.startswith(prefix))
        rows = list(session.scalars(query.order_by(Event.id)))
        session.expunge_all()
        return rows


# -- configure / getConfig / deleteConfig --------------------------------------------


def test_configure_then_get_config_echoes_every_field(target: SamlService) -> None:
    saml = target.sso.services.saml
    answer = saml.configure(target.org, target.svc, sp_config())
    assert answer == {"message": "SAML configuration updated successfully"}
    assert saml.get_config(target.org, target.svc) == {**sp_config(), **ECHOED_DEFAULTS}


def test_configure_takes_the_optional_fields_and_replaces_the_whole_config(
    target: SamlService,
) -> None:
    saml = target.sso.services.saml
    cert = sp_certificate_pem()
    extended = sp_config(
        sp_certificate=cert,
        want_authn_requests_signed=True,
        slo_url="https://salesforce.example.com/saml/slo",
        name_id_format=PERSISTENT,
        sign_response=False,
        enabled=False,
        allowed_groups=["sales", "support"],
        require_subscription=True,
        require_mfa=True,
    )
    saml.configure(target.org, target.svc, extended)
    echoed = {**ECHOED_DEFAULTS, **extended, "has_certificate": False}
    assert saml.get_config(target.org, target.svc) == echoed

    saml.configure(target.org, target.svc, sp_config(attribute_mapping={}))
    config = saml.get_config(target.org, target.svc)
    assert config["attribute_mapping"] == {}
    assert (config["sp_certificate"], config["want_authn_requests_signed"]) == (None, False)
    assert config["slo_url"] is None and config["enabled"] is True
    assert (config["allowed_groups"], config["require_subscription"]) == ([], False)
    assert config["require_mfa"] is False


def test_sp_certificate_is_kept_as_the_certificate_alone(target: SamlService) -> None:
    cert = sp_certificate_pem()
    pasted = "Bag Attributes: friendlyName sp\r\n" + cert.replace("\n", "\r\n") + "\n\n"
    target.sso.services.saml.configure(target.org, target.svc, sp_config(sp_certificate=pasted))
    assert target.sso.services.saml.get_config(target.org, target.svc)["sp_certificate"] == cert


def test_loopback_http_endpoints_are_accepted(target: SamlService) -> None:
    saml = target.sso.services.saml
    for acs in ("http://localhost:8080/acs", "http://127.0.0.5/acs", "http://[::1]:9000/acs"):
        saml.configure(target.org, target.svc, sp_config(acs_url=acs, slo_url=acs))
        assert saml.get_config(target.org, target.svc)["acs_url"] == acs


def test_get_config_before_configure_is_not_found(target: SamlService) -> None:
    error = fails(
        lambda: target.sso.services.saml.get_config(target.org, target.svc), 404, "not_found"
    )
    assert "not configured" in error.message


def test_delete_config_removes_it_and_deactivates_every_certificate(
    server: Server, configured: SamlService
) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    saml.generate_certificate(org, svc)
    saml.generate_certificate(org, svc)
    answer = saml.delete_config(org, svc)
    assert answer == {"message": "SAML configuration deleted successfully"}
    fails(lambda: saml.get_config(org, svc), 404, "not_found")
    fails(lambda: saml.get_certificate(org, svc), 404, "not_found")
    rows = certificates(server, configured.service_id)
    assert len(rows) == 2 and not any(row.is_active for row in rows)
    with storage(server) as session:
        assert session.get(SamlConfig, configured.service_id) is None
    fails(lambda: saml.generate_certificate(org, svc), 409, "conflict")
    fails(lambda: saml.delete_config(org, svc), 404, "not_found")

    saml.configure(org, svc, sp_config())
    assert saml.get_config(org, svc)["has_certificate"] is False


# -- certificates --------------------------------------------------------------------


def test_generate_certificate_before_configure_is_a_conflict(
    server: Server, target: SamlService
) -> None:
    saml = target.sso.services.saml
    error = fails(lambda: saml.generate_certificate(target.org, target.svc), 409, "conflict")
    assert "not configured" in error.message
    assert certificates(server, target.service_id) == []


def test_get_certificate_without_an_active_one_is_not_found(configured: SamlService) -> None:
    saml = configured.sso.services.saml
    fails(lambda: saml.get_certificate(configured.org, configured.svc), 404, "not_found")


def test_generate_certificate(server: Server, configured: SamlService) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    cert = saml.generate_certificate(org, svc)
    assert set(cert) == {"id", "public_key", "valid_from", "valid_until", "is_active", "status"}
    assert cert["is_active"] is True
    assert saml.get_certificate(org, svc) == cert
    assert saml.get_config(org, svc)["has_certificate"] is True

    parsed = x509.load_pem_x509_certificate(cert["public_key"].encode())
    public_key = parsed.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert isinstance(parsed.signature_hash_algorithm, hashes.SHA256)
    assert parsed.subject == parsed.issuer
    assert parsed.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == org
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == svc
    valid_from = datetime.fromisoformat(cert["valid_from"])
    valid_until = datetime.fromisoformat(cert["valid_until"])
    assert parsed.not_valid_before_utc == valid_from
    assert parsed.not_valid_after_utc == valid_until
    assert valid_until - valid_from == timedelta(days=3650)
    assert abs(datetime.now(UTC) - valid_from) < timedelta(minutes=5)
    assert "PRIVATE" not in json.dumps(cert)


def test_rotation_leaves_only_the_new_certificate_active(
    server: Server, configured: SamlService
) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    first = saml.generate_certificate(org, svc)
    second = saml.generate_certificate(org, svc)
    assert first["id"] != second["id"] and first["public_key"] != second["public_key"]
    first_serial = x509.load_pem_x509_certificate(first["public_key"].encode()).serial_number
    second_serial = x509.load_pem_x509_certificate(second["public_key"].encode()).serial_number
    assert first_serial != second_serial
    assert saml.get_certificate(org, svc) == second
    active = {row.id: row.is_active for row in certificates(server, configured.service_id)}
    assert active == {first["id"]: False, second["id"]: True}


def test_concurrent_generation_leaves_exactly_one_active(
    server: Server, configured: SamlService
) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    workers = 8

    def generate(_: int) -> dict[str, Any]:
        return saml.generate_certificate(org, svc)

    with ThreadPoolExecutor(workers) as pool:
        issued = list(pool.map(generate, range(workers)))
    rows = certificates(server, configured.service_id)
    assert {row.id for row in rows} == {cert["id"] for cert in issued}
    active = [row.id for row in rows if row.is_active]
    assert len(active) == 1
    assert saml.get_certificate(org, svc)["id"] == active[0]


def test_racing_first_configurations_all_succeed(target: SamlService) -> None:
    saml, org, svc = target.sso.services.saml, target.org, target.svc

    def configure(i: int) -> dict[str, Any]:
        return saml.configure(org, svc, sp_config(entity_id=f"https://sp{i}.example.com"))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(configure, range(8)))
    assert all(answer["message"] for answer in answers)
    assert saml.get_config(org, svc)["entity_id"].startswith("https://sp")


def test_racing_configure_generate_and_delete_keep_the_invariants(
    server: Server, configured: SamlService
) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    steps = [
        lambda: saml.configure(org, svc, sp_config()),
        lambda: saml.generate_certificate(org, svc),
        lambda: saml.delete_config(org, svc),
    ]

    def step(i: int) -> int:
        try:
            steps[i % len(steps)]()
        except SsoApiError as error:
            return error.status
        return 200

    with ThreadPoolExecutor(12) as pool:
        statuses = set(pool.map(step, range(36)))
    assert statuses <= {200, 404, 409}
    active = [row.id for row in certificates(server, configured.service_id) if row.is_active]
    with storage(server) as session:
        is_configured = session.get(SamlConfig, configured.service_id) is not None
    assert len(active) <= 1
    if not is_configured:
        assert active == []
    elif active:
        assert saml.get_certificate(org, svc)["id"] == active[0]


def test_certificate_of_another_service_is_untouched(
    server: Server, configured: SamlService
) -> None:
    saml, org = configured.sso.services.saml, configured.org
    other = new_service(configured.sso, org)
    saml.configure(org, other["slug"], sp_config())
    kept = saml.generate_certificate(org, other["slug"])
    saml.generate_certificate(org, configured.svc)
    saml.generate_certificate(org, configured.svc)
    saml.delete_config(org, configured.svc)
    assert saml.get_certificate(org, other["slug"]) == kept


# -- validation ----------------------------------------------------------------------


INVALID = [
    ("acs_url", {"acs_url": "http://sp.example.com/acs"}, "https"),
    ("acs_url", {"acs_url": "ftp://sp.example.com/acs"}, "https"),
    ("acs_url", {"acs_url": "/saml/acs"}, "https"),
    ("acs_url", {"acs_url": "https:///acs"}, "https"),
    ("acs_url", {"acs_url": "https://sp.example.com/acs#frag"}, "https"),
    ("acs_url", {"acs_url": "https://sp.example.com/a cs"}, "spaces"),
    ("acs_url", {"acs_url": "https://[::1/acs"}, "https"),
    ("acs_url", {"acs_url": 42}, "string"),
    ("slo_url", {"slo_url": "http://sp.example.com/slo"}, "https"),
    ("slo_url", {"slo_url": "slo"}, "https"),
    ("sign_response", {"sign_assertions": False, "sign_response": False}, "unsigned"),
    (
        "name_id_format",
        {"name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"},
        "one of",
    ),
    ("name_id_format", {"name_id_format": "email"}, "one of"),
    ("attribute_mapping", {"attribute_mapping": {"password": "pw"}}, "user fields"),
    ("attribute_mapping", {"attribute_mapping": {"email": ""}}, "non-empty"),
    ("attribute_mapping", {"attribute_mapping": {"email": "   "}}, "non-empty"),
    ("attribute_mapping", {"attribute_mapping": {"email": " mail"}}, "surrounding"),
    ("attribute_mapping", {"attribute_mapping": {"email": "mail\u0000"}}, "control"),
    ("attribute_mapping", {"attribute_mapping": {"email": 5}}, "string"),
    ("attribute_mapping", {"attribute_mapping": {"groups": ["a"]}}, "string"),
    ("attribute_mapping", {"attribute_mapping": ["email"]}, "object"),
    ("entity_id", {"entity_id": ""}, "non-empty"),
    ("entity_id", {"entity_id": "   "}, "non-empty"),
    ("entity_id", {"entity_id": "https://sp.example.com/\u0000"}, "control"),
    ("entity_id", {"entity_id": "https://sp.example.com/" + "x" * 1002}, "1024"),
    ("entity_id", {"entity_id": None}, "string"),
    ("sp_certificate", {"sp_certificate": "not a certificate"}, "PEM"),
    (
        "sp_certificate",
        {"sp_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        "PEM",
    ),
    ("want_authn_requests_signed", {"want_authn_requests_signed": True}, "sp_certificate"),
    (
        "want_authn_requests_signed",
        {"want_authn_requests_signed": True, "sp_certificate": None},
        "sp_certificate",
    ),
    ("want_authn_requests_signed", {"want_authn_requests_signed": "yes"}, "boolean"),
    ("enabled", {"enabled": "true"}, "boolean"),
    ("sign_assertions", {"sign_assertions": 1}, "boolean"),
    ("allowed_groups", {"allowed_groups": "sales"}, "array"),
    ("allowed_groups", {"allowed_groups": ["sales", "sales"]}, "repeat"),
    ("allowed_groups", {"allowed_groups": [""]}, "group name"),
    ("allowed_groups", {"allowed_groups": ["a\u0000b"]}, "group name"),
    ("require_subscription", {"require_subscription": "yes"}, "boolean"),
    ("require_mfa", {"require_mfa": 1}, "boolean"),
    ("extra", {"extra": 1}, "not a known field"),
]


@pytest.mark.parametrize(("field", "change", "reason"), INVALID)
def test_invalid_configuration_is_refused_with_details(
    configured: SamlService, field: str, change: dict[str, Any], reason: str
) -> None:
    saml = configured.sso.services.saml
    error = fails(
        lambda: saml.configure(configured.org, configured.svc, sp_config(**change)),
        400,
        "invalid_request",
    )
    assert set(error.details) == {field}, error.details
    assert reason.lower() in error.details[field].lower(), error.details
    assert saml.get_config(configured.org, configured.svc) == {**sp_config(), **ECHOED_DEFAULTS}


def test_every_missing_field_and_every_broken_rule_is_reported_at_once(target: SamlService) -> None:
    saml = target.sso.services.saml
    error = fails(lambda: saml.configure(target.org, target.svc, {}), 400, "invalid_request")
    assert error.details == {
        name: "is required"
        for name in (
            "enabled",
            "entity_id",
            "acs_url",
            "name_id_format",
            "attribute_mapping",
            "sign_assertions",
            "sign_response",
        )
    }
    broken = sp_config(
        acs_url="http://sp.example.com/acs",
        sign_assertions=False,
        sign_response=False,
        want_authn_requests_signed=True,
        name_id_format="x",
    )
    error = fails(lambda: saml.configure(target.org, target.svc, broken), 400, "invalid_request")
    assert set(error.details) == {
        "acs_url",
        "sign_response",
        "want_authn_requests_signed",
        "name_id_format",
    }


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"null", b'"text"', b"{" * 5000, b'{"enabled": tru'],
)
def test_unreadable_bodies_are_refused(
    server: Server, owner: Account, target: SamlService, body: bytes
) -> None:
    response = server.api(
        "PUT",
        f"/organizations/{target.org}/services/{target.svc}/saml",
        owner.token,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_oversized_body_is_refused(server: Server, owner: Account, target: SamlService) -> None:
    body = sp_config(entity_id="https://sp.example.com/" + "x" * (2 * 1024 * 1024))
    response = server.api(
        "PUT", f"/organizations/{target.org}/services/{target.svc}/saml", owner.token, json=body
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


# -- who may do what -----------------------------------------------------------------


def every_call(sso: SsoClient, org: str, svc: str) -> dict[str, Any]:
    """The five routes, as zero-argument calls."""
    saml = sso.services.saml
    return {
        "configure": lambda: saml.configure(org, svc, sp_config()),
        "get_config": lambda: saml.get_config(org, svc),
        "generate_certificate": lambda: saml.generate_certificate(org, svc),
        "get_certificate": lambda: saml.get_certificate(org, svc),
        "delete_config": lambda: saml.delete_config(org, svc),
    }


def test_unauthenticated_calls_are_refused(server: Server, configured: SamlService) -> None:
    for token in (None, "idpt_not-a-token", "idpk_0123456789.nope"):
        anonymous = SsoClient(server.url, token=token)
        for name, call in every_call(anonymous, configured.org, configured.svc).items():
            error = fails(call, 401, "unauthenticated")
            assert error.status == 401, name


def test_members_read_but_do_not_write(
    server: Server, owner: Account, configured: SamlService
) -> None:
    org, svc = configured.org, configured.svc
    cert = configured.sso.services.saml.generate_certificate(org, svc)
    member = client(server, add_user(server, owner.token, org, "member"))
    assert member.services.saml.get_config(org, svc)["has_certificate"] is True
    assert member.services.saml.get_certificate(org, svc) == cert
    calls = every_call(member, org, svc)
    for name in ("configure", "generate_certificate", "delete_config"):
        error = fails(calls[name], 403, "forbidden")
        assert "owner or admin" in error.message, name
    assert configured.sso.services.saml.get_certificate(org, svc) == cert


def test_admins_manage_saml(server: Server, owner: Account, target: SamlService) -> None:
    org, svc = target.org, target.svc
    admin = client(server, add_user(server, owner.token, org, "admin"))
    admin.services.saml.configure(org, svc, sp_config())
    cert = admin.services.saml.generate_certificate(org, svc)
    assert admin.services.saml.get_certificate(org, svc) == cert
    admin.services.saml.delete_config(org, svc)
    fails(lambda: admin.services.saml.get_config(org, svc), 404, "not_found")


def test_outsiders_and_unknown_names_are_not_found(
    server: Server, owner: Account, configured: SamlService
) -> None:
    stranger_org = client(server, owner).organizations.create(
        {"slug": f"other-{configured.svc}", "name": "Other"}
    )["slug"]
    outsider = client(server, add_user(server, owner.token, stranger_org, "owner"))
    for call in every_call(outsider, configured.org, configured.svc).values():
        fails(call, 404, "not_found")
    for call in every_call(configured.sso, configured.org, "no-such-service").values():
        fails(call, 404, "not_found")
    for call in every_call(configured.sso, "no-such-org", configured.svc).values():
        fails(call, 404, "not_found")


def test_api_key_permissions(server: Server, configured: SamlService) -> None:
    org, svc, sso = configured.org, configured.svc, configured.sso
    reader = client(server, new_key(sso, org, svc, "read:service"))
    writer = client(server, new_key(sso, org, svc, "write:service"))
    unrelated = client(server, new_key(sso, org, svc, "read:users", "read:subscriptions"))

    cert = writer.services.saml.generate_certificate(org, svc)
    writer.services.saml.configure(org, svc, sp_config(name_id_format=PERSISTENT))
    assert reader.services.saml.get_config(org, svc)["name_id_format"] == PERSISTENT
    assert reader.services.saml.get_certificate(org, svc) == cert

    for name, call in every_call(reader, org, svc).items():
        if name not in ("get_config", "get_certificate"):
            assert "write:service" in fails(call, 403, "forbidden").message
    for name in ("get_config", "get_certificate"):
        assert "read:service" in fails(every_call(writer, org, svc)[name], 403, "forbidden").message
    for call in every_call(unrelated, org, svc).values():
        fails(call, 403, "forbidden")

    other = new_service(sso, org)
    sso.services.saml.configure(org, other["slug"], sp_config())
    for call in every_call(writer, org, other["slug"]).values():
        fails(call, 404, "not_found")  # another service does not exist for the key
    assert (
        sso.services.saml.get_config(org, other["slug"])["entity_id"] == (sp_config()["entity_id"])
    )
    writer.services.saml.delete_config(org, svc)
    fails(lambda: reader.services.saml.get_config(org, svc), 404, "not_found")


# -- audit and change announcements --------------------------------------------------


def test_every_change_is_audited_without_key_material(
    server: Server, configured: SamlService
) -> None:
    saml, org, svc = configured.sso.services.saml, configured.org, configured.svc
    first = saml.generate_certificate(org, svc)
    second = saml.generate_certificate(org, svc)
    saml.delete_config(org, svc)
    trail = events(server, configured.service_id)
    assert [e.action for e in trail] == [
        "saml.configure",
        "saml.certificate.generate",
        "saml.certificate.generate",
        "saml.delete",
    ]
    assert all(e.actor_type == "operator" and e.actor_id for e in trail)
    assert trail[0].summary["after"]["entity_id"] == sp_config()["entity_id"]
    assert trail[1].resource_id == first["id"]
    assert trail[2].summary["before"] == {"deactivated_certificates": [first["id"]]}
    assert trail[3].summary["after"] == {"deactivated_certificates": [second["id"]]}
    encrypted = {row.private_key_encrypted for row in certificates(server, configured.service_id)}
    for event in trail:
        text = json.dumps(event.summary)
        assert "PRIVATE" not in text and not any(blob in text for blob in encrypted)
    log = server.log()
    assert "PRIVATE KEY" not in log and not any(blob in log for blob in encrypted)


def test_changes_are_announced_to_the_sso_caches(
    server: Server, redis_url: str, target: SamlService
) -> None:
    saml, org, svc = target.sso.services.saml, target.org, target.svc
    version = Store(connect(redis_url), session_ttl=60).version
    steps = [
        lambda: saml.configure(org, svc, sp_config()),
        lambda: saml.generate_certificate(org, svc),
        lambda: saml.delete_config(org, svc),
    ]
    for step in steps:
        before = version()
        step()
        assert version() == before + 1
