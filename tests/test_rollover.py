"""Staged signing-key rollover over HTTP: the next certificate is published in the metadata
beside the active one without signing, then activated; SPs that loaded the metadata once
(pysaml2, python3-saml's metadata parser) accept Responses on both sides of the switch, while
SPs that trust only one certificate follow which key really signs. Also: the API's refusals,
who may stage and activate, the audit trail, and the rollover-due gauge and ``idp check``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from admin_helpers import client, new_key
from conftest import Account, Server, add_user, free_port, start_server, stop_server
from lxml import etree
from metrics_helpers import scrape, value
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from saml2.client import Saml2Client
from saml2.sigver import SignatureError
from sso_helpers import (
    Browser,
    PostedMessage,
    SamlService,
    onelogin_accepts,
    onelogin_rejects,
    onelogin_request,
    posted_message,
    pysaml2_accepts,
    pysaml2_redirect,
    pysaml2_sp,
    saml_service,
)
from sso_v2_helpers import create_org
from test_cli import idp
from test_metadata import der_base64

from idp.saml import constants as c

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
NS = {"md": MD_NS, "ds": c.DS_NS}
SHORT_VALIDITY_DAYS = 20  # below the 30 days at which a rollover is due


# -- helpers -----------------------------------------------------------------------------------


def stage(service: SamlService, token: str | None = None) -> Any:
    """POST …/saml/certificate {"activate": false} (as ``token``, else the service's token)."""
    return service.server.api(
        "POST",
        f"/organizations/{service.org}/services/{service.svc}/saml/certificate",
        token or service.token,
        json={"activate": False},
    )


def activate(service: SamlService, certificate_id: str, token: str | None = None) -> Any:
    """POST …/saml/certificate/{id}/activate."""
    return service.server.api(
        "POST",
        f"/organizations/{service.org}/services/{service.svc}/saml/certificate/"
        f"{certificate_id}/activate",
        token or service.token,
    )


def listed(service: SamlService) -> list[tuple[str, str]]:
    """GET …/saml/certificates: (id, status) of every certificate, in the order given."""
    response = service.api("GET", "/saml/certificates")
    assert response.status_code == 200, response.text
    certificates = response.json()["certificates"]
    for certificate in certificates:
        assert certificate["is_active"] == (certificate["status"] == "active"), certificate
    return [(cert["id"], cert["status"]) for cert in certificates]


def active_id(service: SamlService) -> str:
    response = service.api("GET", "/saml/certificate")
    assert response.status_code == 200, response.text
    certificate_id: str = response.json()["id"]
    return certificate_id


def published(service: SamlService, metadata: str | None = None) -> list[str]:
    """The signing certificates the IdP metadata lists (base64 DER), in document order; and
    no KeyDescriptor for any other use."""
    root = etree.fromstring((metadata or service.metadata()).encode())
    descriptors = root.findall(".//md:IDPSSODescriptor/md:KeyDescriptor", NS)
    assert all(d.get("use") == "signing" for d in descriptors)
    return [
        "".join(d.findtext(".//ds:X509Certificate", namespaces=NS).split()) for d in descriptors
    ]


def trusting_only(metadata: str, certificate_pem: str) -> str:
    """The IdP metadata with every signing KeyDescriptor but ``certificate_pem``'s removed:
    what an SP that trusts only that certificate has loaded."""
    root = etree.fromstring(metadata.encode())
    keep = der_base64(certificate_pem)
    for descriptor in root.findall(".//md:IDPSSODescriptor/md:KeyDescriptor", NS):
        body = "".join(descriptor.findtext(".//ds:X509Certificate", namespaces=NS).split())
        if body != keep:
            descriptor.getparent().remove(descriptor)
    assert published_count(root) == 1
    return etree.tostring(root).decode()


def published_count(root: etree._Element) -> int:
    return len(root.findall(".//md:IDPSSODescriptor/md:KeyDescriptor", NS))


def python3_saml_from_metadata(service: SamlService, metadata: str) -> OneLogin_Saml2_Settings:
    """A strict python3-saml SP whose whole IdP side comes from the metadata (parsed with
    OneLogin_Saml2_IdPMetadataParser), built once."""
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(metadata)
    sp_settings = service.onelogin_settings()
    del sp_settings["idp"]
    return OneLogin_Saml2_Settings(
        OneLogin_Saml2_IdPMetadataParser.merge_settings(sp_settings, parsed)
    )


def python3_saml_accepts(
    settings: OneLogin_Saml2_Settings, service: SamlService, message: PostedMessage, request_id: str
) -> None:
    request = onelogin_request(service.config["acs_url"], post={"SAMLResponse": message.value})
    response = OneLogin_Saml2_Response(settings, message.value)
    assert response.is_valid(request, request_id=request_id, raise_exceptions=False), (
        response.get_error()
    )


def pysaml2_login(
    sp: Saml2Client, service: SamlService, browser: Browser, member: Account
) -> tuple[PostedMessage, str]:
    """SP-initiated SSO by ``sp`` (HTTP-Redirect), signing in when asked: the posted Response
    and the AuthnRequest's ID."""
    request_id, url = pysaml2_redirect(sp, service)
    page = browser.sso(url, member.email, member.password)
    assert page.status_code == 200, page.text[:2000]
    return posted_message(page.text), request_id


def pysaml2_rejects(sp: Saml2Client, message: PostedMessage, request_id: str) -> None:
    with pytest.raises(SignatureError):
        pysaml2_accepts(sp, message, request_id)


def audit_events(service: SamlService, certificate_id: str) -> list[dict[str, Any]]:
    """The organization's audit events about one certificate, oldest first."""
    response = service.server.api(
        "GET", f"/organizations/{service.org}/audit-events", service.token, params={"limit": 100}
    )
    assert response.status_code == 200, response.text
    events = response.json()["audit_events"]
    return [e for e in reversed(events) if e["resource_id"] == certificate_id]


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """Another server on the same database and Redis, with ``env``."""
    port = free_port()
    server = start_server({**env, "IDP_BASE_URL": f"http://127.0.0.1:{port}"}, port, log)
    try:
        yield server
    finally:
        stop_server(server)


# -- the zero-outage rollover ------------------------------------------------------------------


def test_staged_rollover_keeps_metadata_sps_working_and_switches_the_signing_key(
    server: Server, owner: Account, tmp_path: Path
) -> None:
    service = saml_service(server, owner.token, owner.org, sign_response=True)
    old_pem, old_id = service.certificate, active_id(service)
    member = add_user(server, owner.token, owner.org)
    browser = Browser(server)

    staged = stage(service)
    assert staged.status_code == 201, staged.text
    new = staged.json()
    assert (new["status"], new["is_active"]) == ("next", False)
    assert new["id"] != old_id and new["public_key"] != old_pem
    new_pem, new_id = new["public_key"], new["id"]
    assert listed(service) == [(new_id, "next"), (old_id, "active")]
    assert active_id(service) == old_id  # GET …/certificate: still the old one

    metadata = service.metadata()
    assert published(service, metadata) == [der_base64(old_pem), der_base64(new_pem)]

    # SPs that load the metadata now, once, and keep it across the switch
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(metadata)["idp"]
    assert "x509cert" not in parsed
    assert ["".join(cert.split()) for cert in parsed["x509certMulti"]["signing"]] == [
        der_base64(old_pem),
        der_base64(new_pem),
    ]
    onelogin_sp = python3_saml_from_metadata(service, metadata)
    assert not onelogin_sp.get_idp_data().get("x509cert")  # no single trusted certificate
    assert len(onelogin_sp.get_idp_data()["x509certMulti"]["signing"]) == 2
    (tmp_path / "both").mkdir()
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    both_sp = pysaml2_sp(service, tmp_path / "both", metadata=metadata)
    old_sp = pysaml2_sp(service, tmp_path / "old", metadata=trusting_only(metadata, old_pem))
    new_sp = pysaml2_sp(service, tmp_path / "new", metadata=trusting_only(metadata, new_pem))

    # before activation: only the old key signs
    message, request_id = pysaml2_login(both_sp, service, browser, member)
    assert pysaml2_accepts(both_sp, message, request_id).ava["email"] == [member.email]
    python3_saml_accepts(onelogin_sp, service, message, request_id)
    onelogin_accepts(service, message, request_id, certificate=old_pem)
    onelogin_rejects(service, message, request_id, certificate=new_pem)
    pysaml2_accepts(old_sp, message, request_id)
    pysaml2_rejects(new_sp, message, request_id)

    switched = activate(service, new_id)
    assert switched.status_code == 200, switched.text
    assert switched.json() == {**new, "status": "active", "is_active": True}
    assert listed(service) == [(new_id, "active"), (old_id, "inactive")]
    assert active_id(service) == new_id
    assert published(service) == [der_base64(new_pem)]

    # after activation: only the new key signs, and the same metadata SPs still accept
    message, request_id = pysaml2_login(both_sp, service, browser, member)
    assert pysaml2_accepts(both_sp, message, request_id).ava["email"] == [member.email]
    python3_saml_accepts(onelogin_sp, service, message, request_id)
    onelogin_accepts(service, message, request_id, certificate=new_pem)
    onelogin_rejects(service, message, request_id, certificate=old_pem)
    pysaml2_accepts(new_sp, message, request_id)
    pysaml2_rejects(old_sp, message, request_id)


# -- the API's rules ---------------------------------------------------------------------------


def test_activation_rules_restaging_and_plain_generation(server: Server, owner: Account) -> None:
    service = saml_service(server, owner.token, owner.org)
    first = active_id(service)
    other = saml_service(server, owner.token, owner.org)  # another service, same organization
    foreign = saml_service(server, owner.token, create_org(server, owner.token))
    other_next = stage(other).json()["id"]
    foreign_next = stage(foreign).json()["id"]
    other_before, foreign_before = listed(other), listed(foreign)

    # the active one again: 200, nothing changes
    again = activate(service, first)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["status"]) == (first, "active")
    assert listed(service) == [(first, "active")]

    # a second staging replaces the previous next one
    replaced = stage(service).json()["id"]
    restaged = stage(service)
    assert restaged.status_code == 201, restaged.text
    assert restaged.json()["status"] == "next"
    staged = restaged.json()["id"]
    assert listed(service) == [(staged, "next"), (replaced, "inactive"), (first, "active")]
    by_id = {
        cert["id"]: cert for cert in service.api("GET", "/saml/certificates").json()["certificates"]
    }
    assert published(service) == [
        der_base64(by_id[first]["public_key"]),
        der_base64(by_id[staged]["public_key"]),
    ]

    # an inactive one: 409; another service's or organization's, or no such id: 404
    refused = activate(service, replaced)
    assert (refused.status_code, refused.json()["error"]) == (409, "conflict"), refused.text
    for certificate_id in (other_next, foreign_next, "no-such-certificate", "x" * 200):
        missing = activate(service, certificate_id)
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found"), (
            certificate_id,
            missing.text,
        )
    # this service's next certificate through the other services' routes: 404 too
    assert activate(other, staged).status_code == 404
    assert activate(foreign, staged).status_code == 404
    assert listed(service) == [(staged, "next"), (replaced, "inactive"), (first, "active")]
    assert listed(other) == other_before and listed(foreign) == foreign_before

    # the seed's plain POST …/certificate: a new active one, the next one retired too
    service.rotate()
    fresh = active_id(service)
    assert listed(service) == [
        (fresh, "active"),
        (staged, "inactive"),
        (replaced, "inactive"),
        (first, "inactive"),
    ]
    assert published(service) == [der_base64(service.certificate)]
    assert activate(service, staged).status_code == 409
    assert listed(service)[0] == (fresh, "active")


def test_who_may_stage_and_activate_and_the_audit_trail(server: Server, owner: Account) -> None:
    service = saml_service(server, owner.token, owner.org)
    old = active_id(service)
    member = add_user(server, owner.token, owner.org)
    sso = client(server, owner)
    writer = new_key(sso, service.org, service.svc, "write:service")
    reader = new_key(sso, service.org, service.svc, "read:service")

    # a member and a read:service key may list, not stage
    for token in (member.token, reader):
        assert (
            service.server.api(
                "GET",
                f"/organizations/{service.org}/services/{service.svc}/saml/certificates",
                token,
            ).status_code
            == 200
        )
        forbidden = stage(service, token)
        assert forbidden.status_code == 403, forbidden.text
    assert listed(service) == [(old, "active")]

    staged = stage(service, writer)
    assert staged.status_code == 201, staged.text
    new = staged.json()["id"]
    for token in (member.token, reader):
        forbidden = activate(service, new, token)
        assert forbidden.status_code == 403, forbidden.text
    assert listed(service) == [(new, "next"), (old, "active")]

    done = activate(service, new, writer)
    assert done.status_code == 200, done.text
    assert listed(service) == [(new, "active"), (old, "inactive")]

    events = audit_events(service, new)
    assert [e["action"] for e in events] == ["saml.certificate.stage", "saml.certificate.activate"]
    assert {e["actor"]["type"] for e in events} == {"api_key"}
    assert {e["resource_type"] for e in events} == {"saml_certificate"}
    assert [e["summary"]["after"]["status"] for e in events] == ["next", "active"]
    assert events[0]["summary"]["before"]["deactivated_certificates"] == []
    assert events[1]["summary"]["before"]["deactivated_certificates"] == [old]


# -- rollover due: metrics and idp check -------------------------------------------------------


def rollover_lines(output: str, service: SamlService) -> list[str]:
    """``idp check``'s WARNING lines about the service."""
    scope = f"{service.org}/{service.svc}"
    return [line for line in output.splitlines() if "WARNING" in line and scope in line]


def test_rollover_due_until_a_next_certificate_is_staged(
    server: Server, owner: Account, tmp_path: Path
) -> None:
    short_env = {**server.env, "IDP_CERT_VALID_DAYS": str(SHORT_VALIDITY_DAYS)}
    with serving(short_env, tmp_path / "short.log") as short:
        service = saml_service(short, owner.token, owner.org)  # expires in 20 days
        healthy = saml_service(short, owner.token, owner.org)
        healthy.server = server
        healthy.rotate()  # a normal, long certificate: no rollover due
    service.server = server
    labels = {"org": service.org, "service": service.svc}

    samples = scrape(server)
    days = value(samples, "idp_certificate_expiry_days", **labels)
    assert SHORT_VALIDITY_DAYS - 1 < days <= SHORT_VALIDITY_DAYS
    assert value(samples, "idp_certificate_rollover_due", **labels) == 1
    assert any(s.labels == labels for s in samples["idp_certificate_rollover_due"])
    healthy_labels = {"org": healthy.org, "service": healthy.svc}
    assert any(s.labels == healthy_labels for s in samples["idp_certificate_rollover_due"])
    assert value(samples, "idp_certificate_rollover_due", **healthy_labels) == 0
    checked = idp(server, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(rollover_lines(checked.stdout, service)) == 1, checked.stdout
    assert rollover_lines(checked.stdout, healthy) == [], checked.stdout

    # the main server makes certificates of the default validity
    staged = stage(service)
    assert staged.status_code == 201, staged.text
    samples = scrape(server)
    assert any(s.labels == labels for s in samples["idp_certificate_rollover_due"])
    assert value(samples, "idp_certificate_rollover_due", **labels) == 0
    # still the short one until activated
    assert value(samples, "idp_certificate_expiry_days", **labels) > SHORT_VALIDITY_DAYS - 1
    checked = idp(server, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert rollover_lines(checked.stdout, service) == [], checked.stdout

    assert activate(service, staged.json()["id"]).status_code == 200
    samples = scrape(server)
    assert value(samples, "idp_certificate_rollover_due", **labels) == 0
    assert value(samples, "idp_certificate_expiry_days", **labels) > 3000
