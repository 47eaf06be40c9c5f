"""SAML presets: how ``apply`` merges, what each preset holds, and the example service files.

Pure unit tests: no server, database or Redis. The contents are checked against what each
vendor's documentation (cited in the preset's ``docs``) says its SP needs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

import idp.api.saml  # noqa: F401  (registers the ConfigureSaml schema)
from idp.api.errors import ApiError
from idp.api.openapi import COMPONENTS
from idp.api.validation import validate
from idp.domain import presets
from idp.domain.errors import Invalid
from idp.saml.attributes import USER_FIELDS
from idp.saml.constants import NAMEID_EMAIL, NAMEID_FORMATS, NAMEID_PERSISTENT

EXAMPLES = Path(__file__).resolve().parent.parent / "config" / "examples" / "services"
REQUESTED = (  # the SPs the issue asks for
    "salesforce",
    "google-workspace",
    "entra-id",
    "aws-iam-identity-center",
    "atlassian-cloud",
    "slack",
    "zoom",
    "github-enterprise-cloud",
)
TENANT_FIELDS = {  # the fields a preset cannot fill for SPs whose URLs name the tenant
    "salesforce": ("entity_id", "acs_url"),
    "google-workspace": ("entity_id", "acs_url"),
    "aws-iam-identity-center": ("entity_id", "acs_url"),
    "atlassian-cloud": ("entity_id", "acs_url"),
    "slack": ("acs_url",),
    "zoom": ("entity_id", "acs_url"),
    "github-enterprise-cloud": ("entity_id", "acs_url"),
}
TENANT = {"entity_id": "https://sp.example.com/saml", "acs_url": "https://sp.example.com/acs"}


def mapping(name: str) -> dict[str, str]:
    return dict(presets.PRESETS[name].fields["attribute_mapping"])


# -- apply ----------------------------------------------------------------------------------


def test_apply_fills_what_was_not_sent() -> None:
    merged = presets.apply("slack", {"acs_url": "https://example.slack.com/sso/saml"})
    assert merged == {
        "enabled": True,
        "entity_id": "https://slack.com",
        "acs_url": "https://example.slack.com/sso/saml",
        "name_id_format": NAMEID_PERSISTENT,
        "attribute_mapping": {
            "email": "User.Email",
            "given_name": "first_name",
            "family_name": "last_name",
        },
        "sign_assertions": True,
        "sign_response": True,
    }


def test_sent_fields_win() -> None:
    sent = {
        "entity_id": "https://login.microsoftonline.com/0000-tenant/",
        "enabled": False,
        "sign_response": False,
        "allowed_groups": ["staff"],
    }
    merged = presets.apply("entra-id", sent)
    assert merged["entity_id"] == "https://login.microsoftonline.com/0000-tenant/"
    assert merged["enabled"] is False
    assert merged["sign_response"] is False
    assert merged["allowed_groups"] == ["staff"]
    assert merged["acs_url"] == "https://login.microsoftonline.com/login.srf"  # still filled


def test_a_sent_attribute_mapping_replaces_the_presets_whole() -> None:
    claim = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    merged = presets.apply("entra-id", {"attribute_mapping": {"email": claim}})
    assert merged["attribute_mapping"] == {"email": claim}
    empty = presets.apply("atlassian-cloud", {"attribute_mapping": {}})
    assert empty["attribute_mapping"] == {}


def test_apply_drops_the_preset_key_and_leaves_its_input_alone() -> None:
    sent = {"preset": "zoom", **TENANT}
    merged = presets.apply("zoom", sent)
    assert "preset" not in merged
    assert sent == {"preset": "zoom", **TENANT}


def test_apply_returns_copies_the_caller_may_change() -> None:
    merged = presets.apply("atlassian-cloud", dict(TENANT))
    merged["attribute_mapping"]["email"] = "changed"
    assert type(merged["attribute_mapping"]) is dict
    assert mapping("atlassian-cloud")["email"].endswith("/emailaddress")
    assert presets.apply("atlassian-cloud", {})["attribute_mapping"]["email"] != "changed"


def test_an_unknown_preset_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(Invalid) as refused:
        presets.apply("okta", {"acs_url": "https://sp.example.com/acs"})
    assert refused.value.details is not None
    reason = refused.value.details["preset"]
    assert reason.startswith("unknown preset; one of: ")
    for name in REQUESTED:
        assert name in reason


# -- every preset ---------------------------------------------------------------------------


def test_every_requested_sp_has_a_preset() -> None:
    assert set(REQUESTED) <= set(presets.PRESETS)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_a_preset_is_well_formed(name: str) -> None:
    preset = presets.PRESETS[name]
    assert preset.name == name
    assert preset.title
    assert preset.docs and all(url.startswith("https://") for url in preset.docs)
    assert len(preset.needs) > 100
    fields = preset.fields
    assert fields["enabled"] is True
    assert fields["name_id_format"] in NAMEID_FORMATS
    assert set(fields["attribute_mapping"]) <= USER_FIELDS
    assert fields["sign_assertions"] is True and fields["sign_response"] is True
    # Per-tenant settings are never filled in.
    for field in ("sp_certificate", "want_authn_requests_signed", "slo_url", "allowed_groups"):
        assert field not in fields
    for field in TENANT_FIELDS.get(name, ()):
        assert field not in fields
        assert field in preset.needs


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_a_preset_and_its_tenant_fields_satisfy_the_api_schema(name: str) -> None:
    tenant = {field: TENANT[field] for field in TENANT_FIELDS.get(name, ())}
    validate(presets.apply(name, tenant), COMPONENTS["ConfigureSaml"])


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_the_presets_are_read_only(name: str) -> None:
    fields: Any = presets.PRESETS[name].fields
    with pytest.raises(TypeError):
        fields["enabled"] = False
    with pytest.raises(TypeError):
        fields["attribute_mapping"]["email"] = "x"


# -- each SP's documented needs -------------------------------------------------------------


def test_salesforce_reads_the_jit_field_names() -> None:
    fields = presets.PRESETS["salesforce"].fields
    assert fields["name_id_format"] == NAMEID_EMAIL
    assert mapping("salesforce") == {
        "email": "User.Email",
        "given_name": "User.FirstName",
        "family_name": "User.LastName",
    }
    assert "User.ProfileId" in presets.PRESETS["salesforce"].needs


def test_google_workspace_identifies_users_by_their_primary_email() -> None:
    fields = presets.PRESETS["google-workspace"].fields
    assert fields["name_id_format"] == NAMEID_EMAIL
    assert mapping("google-workspace") == {}
    assert "google.com/a/" in presets.PRESETS["google-workspace"].needs


def test_entra_id_federated_domain() -> None:
    fields = presets.PRESETS["entra-id"].fields
    assert fields["entity_id"] == "urn:federation:MicrosoftOnline"
    assert fields["acs_url"] == "https://login.microsoftonline.com/login.srf"
    assert fields["name_id_format"] == NAMEID_PERSISTENT
    assert mapping("entra-id") == {"email": "IDPEmail"}
    assert fields["sign_assertions"] is True  # the assertion itself must be signed
    assert "ImmutableID" in presets.PRESETS["entra-id"].needs


def test_aws_iam_identity_center_requires_an_email_nameid() -> None:
    preset = presets.PRESETS["aws-iam-identity-center"]
    assert preset.fields["name_id_format"] == NAMEID_EMAIL
    # Its issuer and ACS URLs belong to the instance, not to IAM's SAML federation.
    assert "entity_id" not in preset.fields and "acs_url" not in preset.fields
    assert "https://aws.amazon.com/SAML/Attributes/AccessControl:" in preset.needs


def test_aws_iam_role_federation() -> None:
    preset = presets.PRESETS["aws-iam"]
    fields = preset.fields
    assert fields["entity_id"] == "urn:amazon:webservices"
    assert fields["acs_url"] == "https://signin.aws.amazon.com/saml"
    assert mapping("aws-iam") == {"email": "https://aws.amazon.com/SAML/Attributes/RoleSessionName"}
    assert "https://aws.amazon.com/SAML/Attributes/Role" in preset.needs
    assert presets.AWS_ROLE == "https://aws.amazon.com/SAML/Attributes/Role"
    assert presets.AWS_ROLE_SESSION_NAME == (
        "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
    )


def test_atlassian_cloud_expects_the_email_as_nameid() -> None:
    claims = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
    assert presets.PRESETS["atlassian-cloud"].fields["name_id_format"] == NAMEID_EMAIL
    assert mapping("atlassian-cloud") == {
        "email": claims + "emailaddress",
        "given_name": claims + "givenname",
        "family_name": claims + "surname",
        "id": claims + "name",
    }


def test_slack_wants_a_persistent_nameid_and_user_email() -> None:
    fields = presets.PRESETS["slack"].fields
    assert fields["entity_id"] == "https://slack.com"
    assert fields["name_id_format"] == NAMEID_PERSISTENT
    assert mapping("slack")["email"] == "User.Email"
    assert mapping("slack")["given_name"] == "first_name"
    assert mapping("slack")["family_name"] == "last_name"


def test_zoom_reads_the_ldap_attribute_oids() -> None:
    assert presets.PRESETS["zoom"].fields["name_id_format"] == NAMEID_EMAIL
    assert mapping("zoom") == {
        "email": "urn:oid:0.9.2342.19200300.100.1.3",
        "given_name": "urn:oid:2.5.4.42",
        "family_name": "urn:oid:2.5.4.4",
    }


def test_github_wants_a_persistent_nameid() -> None:
    assert presets.PRESETS["github-enterprise-cloud"].fields["name_id_format"] == (
        NAMEID_PERSISTENT
    )
    assert mapping("github-enterprise-cloud") == {"email": "emails", "name": "full_name"}


# -- the example files ----------------------------------------------------------------------


def example(path: Path) -> dict[str, Any]:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    [service] = document["services"]
    saml: dict[str, Any] = service["saml"]
    return saml


def test_there_is_an_example_file_per_preset() -> None:
    assert sorted(path.stem for path in EXAMPLES.glob("*.toml")) == sorted(presets.PRESETS)
    for path in EXAMPLES.glob("*.toml"):
        assert example(path)["preset"] == path.stem


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda path: path.stem)
def test_an_example_with_its_preset_satisfies_the_api_schema(path: Path) -> None:
    saml = example(path)
    merged = presets.apply(saml["preset"], saml)
    try:
        validate(merged, COMPONENTS["ConfigureSaml"])
    except ApiError as exc:  # show the reasons, not only "The request is invalid"
        pytest.fail(f"{path.name}: {exc.details}")
