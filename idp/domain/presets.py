"""Ready-made SAML settings for the Service Providers organizations connect most often.

A preset holds only what is the same for every tenant of its SP (its fixed entity ID and ACS
URL when it has them, the NameID format it requires, the attribute names it reads, the signing
flags); ``needs`` says what the admin must still send and where the SP's console shows it.
``PUT …/saml`` with ``"preset": NAME`` fills the fields the request leaves out (:func:`apply`).

Each preset was taken from its vendor's public documentation, listed in ``docs``. Where the
documentation is silent, the choice and its reason are in a comment. Common to all of them:

- ``sign_assertions`` and ``sign_response`` are both true: every one of these SPs accepts a
  signed assertion inside a signed response, and some require one or the other.
- ``want_authn_requests_signed`` is left at its default (false): verifying an SP's signed
  requests needs that SP's certificate, which differs per tenant (``sp_certificate``).
- ``slo_url`` is left out: where an SP supports single logout its endpoint is per tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from idp.domain.errors import Invalid
from idp.saml.constants import NAMEID_EMAIL, NAMEID_PERSISTENT

# Attribute names several SPs share (the WS-Federation claim types).
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
AWS_ROLE = "https://aws.amazon.com/SAML/Attributes/Role"
AWS_ROLE_SESSION_NAME = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
AWS_SESSION_DURATION = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
AWS_ACCESS_CONTROL = "https://aws.amazon.com/SAML/Attributes/AccessControl:"  # + the tag key


@dataclass(frozen=True)
class Preset:
    """One SP's ready-made settings: the fields every tenant shares, and what is left to send."""

    name: str
    title: str
    docs: tuple[str, ...]  # the vendor documentation the settings were taken from
    fields: Mapping[str, Any]  # ConfigureSaml fields, the same for every tenant of the SP
    needs: str  # what the admin must still send, from where, and how the SP reads this IdP


def _fields(**fields: Any) -> Mapping[str, Any]:
    """Read-only fields: the presets are shared by every request."""
    return MappingProxyType(
        {
            key: MappingProxyType(dict(value)) if isinstance(value, dict) else value
            for key, value in fields.items()
        }
    )


SALESFORCE = Preset(
    name="salesforce",
    title="Salesforce",
    docs=(
        "https://help.salesforce.com/apex/HTViewHelpDoc?id=xcloud.sso_service_provider_configuration.htm",
        "https://help.salesforce.com/apex/HTViewHelpDoc?id=xcloud.sso_saml_idp_prereqs.htm",
        "https://help.salesforce.com/apex/HTViewHelpDoc?id=xcloud.sso_jit_requirements.htm",
        "https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_samlssoconfig.htm",
    ),
    fields=_fields(
        enabled=True,
        # Salesforce finds the user by the Subject's NameID ("SAML Identity Location") as a
        # Username or a Federation ID, whatever its format; the email is the identifier both
        # sides already share.
        name_id_format=NAMEID_EMAIL,
        # The names of standard Just-in-Time provisioning: the User. prefix and the field name.
        attribute_mapping={
            "email": "User.Email",
            "given_name": "User.FirstName",
            "family_name": "User.LastName",
        },
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url as Salesforce shows them in Setup > Single Sign-On "
        "Settings, in the SAML Single Sign-On Setting for this IdP: entity_id is its Entity ID "
        "(https://saml.salesforce.com or https://MYDOMAIN.my.salesforce.com, whichever the "
        "setting uses) and acs_url its Login URL under Endpoints "
        "(https://MYDOMAIN.my.salesforce.com?so=ORGANIZATION-ID); slo_url is its Logout URL "
        "when single logout is on. Salesforce reads this IdP's metadata (New from Metadata "
        "URL). It signs its AuthnRequests with the setting's Request Signing Certificate: "
        "paste that certificate as sp_certificate (with want_authn_requests_signed true) to "
        "have them verified. Set SAML Identity Type to Username when the usernames are the "
        "email addresses, else to Federation ID holding each user's email. Just-in-Time "
        "provisioning also needs User.ProfileId: add it as an attribute_values constant (a "
        "profile name such as Standard User is accepted); it needs User.Username to create "
        "users, which the mapping cannot send beside User.Email, so let it update existing "
        "users only."
    ),
)

GOOGLE_WORKSPACE = Preset(
    name="google-workspace",
    title="Google Workspace",
    docs=(
        "https://support.google.com/a/answer/6349809",
        "https://support.google.com/a/answer/6330801",
    ),
    fields=_fields(
        enabled=True,
        # "NameID identifies the subject which is the user's primary email address."
        name_id_format=NAMEID_EMAIL,
        # Google reads no attribute to sign a user in; it keeps any it gets for the session only.
        attribute_mapping={},
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url as the Admin console shows them under Security > "
        "Authentication > SSO with third party IdP: for an SSO profile, the profile's Entity "
        "ID and ACS URL (https://accounts.google.com/samlrp/...?rpid=...); for the legacy SSO "
        "profile, google.com (google.com/a/YOUR-DOMAIN with Use a domain specific issuer) and "
        "https://www.google.com/a/YOUR-DOMAIN/acs (the primary domain, even for users of a "
        "secondary one). Google's set-up takes fields, not IdP metadata: this IdP's SSO URL "
        "(.../sso) as the sign-in page URL, a sign-out page URL, and the signing certificate "
        "uploaded as the verification certificate. Each account's email must be the user's "
        "primary Google email, exactly (Google compares the NameID case-sensitively). Google's "
        "documentation "
        "does not say that it signs its AuthnRequests: leave want_authn_requests_signed off."
    ),
)

ENTRA_ID = Preset(
    name="entra-id",
    title="Microsoft Entra ID (federated domain)",
    docs=(
        "https://learn.microsoft.com/en-us/entra/identity/hybrid/connect/how-to-connect-fed-saml-idp",
        "https://learn.microsoft.com/en-us/entra/external-id/direct-federation",
    ),
    fields=_fields(
        enabled=True,
        # The entityID of Microsoft's metadata and the Issuer of its AuthnRequests for a
        # federated domain, and the ACS (Recipient) of its sample response.
        entity_id="urn:federation:MicrosoftOnline",
        acs_url="https://login.microsoftonline.com/login.srf",
        # "Microsoft Entra ID currently supports the following NameID Format URI for SAML 2.0:
        # urn:oasis:names:tc:SAML:2.0:nameid-format:persistent."
        name_id_format=NAMEID_PERSISTENT,
        # The user's UserPrincipalName, "listed in the SAML response as an element with the
        # name IDPEmail".
        attribute_mapping={"email": "IDPEmail"},
        sign_assertions=True,  # "The assertion node itself must be signed"
        sign_response=True,  # "You can also sign the XML document"
    ),
    needs=(
        "Federates a Microsoft Entra ID domain with this IdP, so that the tenant's own users "
        "sign in to Microsoft 365 here; nothing tenant-specific goes into the SAML settings. "
        "Entra ID does not read IdP metadata: set the domain's federation (Microsoft Graph "
        "internalDomainFederation, protocol saml) with this IdP's metadata URL as issuerUri, "
        "its .../sso URL as passiveSignInUri, its .../slo URL as signOutUri and the signing "
        "certificate (base64, without the PEM lines) as signingCertificate. Each Entra user's "
        "ImmutableID (onPremisesImmutableId) must be the persistent NameID this IdP asserts "
        "for that account, and its UserPrincipalName the account's email (sent as IDPEmail). "
        "Entra ID signs its AuthnRequests only with isSignedAuthenticationRequestRequired; "
        "to verify them, paste the signing certificate of Microsoft's federation metadata as "
        "sp_certificate. For B2B guests (SAML/WS-Fed identity provider federation) send "
        "instead entity_id https://login.microsoftonline.com/TENANT-ID/ and attribute_mapping "
        '{"email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"}.'
    ),
)

AWS_IAM_IDENTITY_CENTER = Preset(
    name="aws-iam-identity-center",
    title="AWS IAM Identity Center",
    docs=(
        "https://docs.aws.amazon.com/singlesignon/latest/userguide/other-idps.html",
        "https://docs.aws.amazon.com/singlesignon/latest/userguide/how-to-connect-idp.html",
        "https://docs.aws.amazon.com/singlesignon/latest/userguide/configure-abac.html",
    ),
    fields=_fields(
        enabled=True,
        # "IAM Identity Center requires a SAML nameID format of email address", an RFC 2822
        # addr-spec. Its issuer and ACS URLs are those of the tenant's instance.
        name_id_format=NAMEID_EMAIL,
        # Users and groups come from provisioning (SCIM or by hand), not from the assertion;
        # attributes are read only for attribute-based access control (AccessControl:KEY).
        attribute_mapping={},
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url from the IAM Identity Center console, Settings > Identity "
        "source > Change identity source > External identity provider, under Service provider "
        "metadata: the IAM Identity Center issuer URL "
        "(https://REGION.signin.aws.amazon.com/platform/saml/d-...) and its ACS URL (the "
        "metadata file offered there may list several ACS URLs: send the one your sign-ins "
        "use). Under Identity provider metadata upload this IdP's metadata (download it from "
        "the metadata URL): Identity Center reads that file, not the URL, so upload it again "
        "after every certificate rotation. Identity Center takes no encrypted assertions. "
        "Users must be provisioned in Identity Center (SCIM or by hand) under the email this "
        "IdP sends as NameID. For attribute-based access control add attributes named "
        "https://aws.amazon.com/SAML/Attributes/AccessControl:TAG-KEY (attribute_values with "
        "groups for values per group, one value per account). The documentation does not say "
        "that Identity Center signs its AuthnRequests: leave want_authn_requests_signed off."
    ),
)

AWS_IAM = Preset(
    name="aws-iam",
    title="AWS IAM (SAML federation to IAM roles)",
    docs=(
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_saml_assertions.html",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/create-role-saml-IdP-tasks.html",
    ),
    fields=_fields(
        enabled=True,
        # The entityID of AWS's SP metadata (https://signin.aws.amazon.com/static/saml-metadata.xml),
        # which the Audience must name, and the non-regional sign-in endpoint the Recipient
        # must match.
        entity_id="urn:amazon:webservices",
        acs_url="https://signin.aws.amazon.com/saml",
        # AWS takes persistent, transient, emailAddress or unspecified NameIDs; persistent is
        # stable per account and reveals nothing.
        name_id_format=NAMEID_PERSISTENT,
        # RoleSessionName is required (2-64 characters of letters, digits and +=,.@-): the
        # email names the person in CloudTrail. Role is per tenant: attribute_values.
        attribute_mapping={"email": AWS_ROLE_SESSION_NAME},
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Direct federation to IAM roles through an IAM SAML identity provider in each AWS "
        "account (not IAM Identity Center). AWS sends no AuthnRequest: users start at this "
        "IdP's .../init URL. Create the IAM identity provider by uploading this IdP's "
        "metadata (IAM keeps that document, so upload it again after every certificate "
        "rotation). Send attribute_values for https://aws.amazon.com/SAML/Attributes/Role, "
        "one value ROLE-ARN,PROVIDER-ARN (for example "
        "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/Acme) "
        "per role with the groups that may assume it; each role's trust policy must allow "
        "sts:AssumeRoleWithSAML from that provider. Accounts whose email is not 2-64 "
        "characters of letters, digits and +=,.@- cannot sign in (RoleSessionName). "
        "Optionally add https://aws.amazon.com/SAML/Attributes/SessionDuration (900 to 43200 "
        "seconds) as a constant."
    ),
)

ATLASSIAN_CLOUD = Preset(
    name="atlassian-cloud",
    title="Atlassian Cloud (Atlassian Guard)",
    docs=(
        "https://support.atlassian.com/atlassian-cloud/kb/configure-atlassian-guard-saml-single-sign-on-and-user-provisioning-for-customer-accounts/",
        "https://learn.microsoft.com/en-us/entra/identity/saas-apps/atlassian-cloud-tutorial",
    ),
    fields=_fields(
        enabled=True,
        # Atlassian "expects the nameidentifier (Unique User Identifier) to be mapped to the
        # user's email", the same value SCIM sends as the work email.
        name_id_format=NAMEID_EMAIL,
        # The claims Atlassian's gallery applications send (Microsoft's tutorial): names from
        # givenname/surname, and under name an identifier that does not change with the email.
        attribute_mapping={
            "email": CLAIMS + "emailaddress",
            "given_name": CLAIMS + "givenname",
            "family_name": CLAIMS + "surname",
            "id": CLAIMS + "name",
        },
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url from Atlassian Administration > Security > Identity "
        "providers > your identity provider > SAML single sign-on: the Service provider entity "
        "URL (https://auth.atlassian.com/saml/ID) and the Service provider assertion consumer "
        "service URL (https://auth.atlassian.com/login/callback?connection=saml-ID). Atlassian "
        "takes this IdP's entity ID (the metadata URL), SSO URL (.../sso) and public x509 "
        "certificate typed in. Each account's email must be the email of its Atlassian "
        "account (and, with user provisioning, the work email SCIM sends). Atlassian's "
        "documentation does not say that it signs its AuthnRequests: leave "
        "want_authn_requests_signed off."
    ),
)

SLACK = Preset(
    name="slack",
    title="Slack",
    docs=("https://slack.com/help/articles/205168057-Custom-SAML-single-sign-on",),
    fields=_fields(
        enabled=True,
        entity_id="https://slack.com",
        # "the NameID must be unique, pseudo-random and will not change for the user over
        # time", in the persistent format of Slack's example.
        name_id_format=NAMEID_PERSISTENT,
        # User.Email is required; first_name and last_name are optional. (User.Username,
        # optional too, is left out: no account field is a Slack username.)
        attribute_mapping={
            "email": "User.Email",
            "given_name": "first_name",
            "family_name": "last_name",
        },
        sign_assertions=True,  # Slack "requires that the SAML response is signed"
        sign_response=True,
    ),
    needs=(
        "Send acs_url https://YOUR-WORKSPACE.slack.com/sso/saml (an Enterprise Grid "
        "organization uses the URL its SSO settings show). Slack does not read IdP "
        "metadata: enter this IdP's .../sso URL as the SAML 2.0 Endpoint URL, the metadata "
        "URL as the Identity Provider Issuer and the signing certificate as the Public "
        "Certificate. Slack signs its AuthnRequests only when Sign AuthnRequest is checked "
        "under Advanced options, which also shows Slack's certificate to paste as "
        "sp_certificate. Slack supports no single logout: leave slo_url out."
    ),
)

ZOOM = Preset(
    name="zoom",
    title="Zoom",
    docs=(
        "https://support.zoom.com/hc/en/article?id=zm_kb&sysparm_article=KB0065487",
        "https://library.zoom.com/admin-corner/account-and-endpoint-management/sso-field-guide",
    ),
    fields=_fields(
        enabled=True,
        # Zoom creates the user "with the received name ID" and accepts a persistent one or
        # the email; the email keeps each SSO user on the Zoom account of the same address.
        name_id_format=NAMEID_EMAIL,
        # Zoom reads attributes by the names set in its SAML Response Mapping; these are the
        # mail, givenName and sn names its documentation suggests.
        attribute_mapping={
            "email": "urn:oid:0.9.2342.19200300.100.1.3",
            "given_name": "urn:oid:2.5.4.42",
            "family_name": "urn:oid:2.5.4.4",
        },
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url of your approved vanity URL, as Zoom's SP metadata "
        "(https://YOUR-VANITY.zoom.us/saml/metadata/sp) lists them: entity_id is "
        "YOUR-VANITY.zoom.us or https://YOUR-VANITY.zoom.us, whichever Service Provider (SP) "
        "Entity ID is selected in Zoom's Single Sign-On settings, and acs_url its "
        "AssertionConsumerService location. Zoom does not read IdP metadata: enter this IdP's "
        ".../sso URL as the sign-in page URL, its .../slo URL as the sign-out page URL, the "
        "metadata URL as the Issuer and the signing certificate; then map email address, "
        "first name and last name to the attribute names above under SAML Response Mapping. "
        "Zoom signs its AuthnRequests only with Sign SAML request; its SP metadata holds the "
        "certificate to paste as sp_certificate."
    ),
)

GITHUB_ENTERPRISE_CLOUD = Preset(
    name="github-enterprise-cloud",
    title="GitHub Enterprise Cloud (organization or enterprise SAML SSO)",
    docs=(
        "https://docs.github.com/en/enterprise-cloud@latest/admin/managing-iam/iam-configuration-reference/saml-configuration-reference",
    ),
    fields=_fields(
        enabled=True,
        # "A persistent user identifier. Any persistent name identifier format may be used";
        # a transient one would re-link the account at every sign-in.
        name_id_format=NAMEID_PERSISTENT,
        # Both optional (GitHub uses them chiefly for Enterprise Managed Users).
        attribute_mapping={"email": "emails", "name": "full_name"},
        # "a single assertion in the response with a digital signature", on the Assertion or
        # the Response; with the Response signed, its Destination is checked against the ACS.
        sign_assertions=True,
        sign_response=True,
    ),
    needs=(
        "Send entity_id and acs_url: for an organization https://github.com/orgs/ORG and "
        "https://github.com/orgs/ORG/saml/consume, for an enterprise "
        "https://github.com/enterprises/ENTERPRISE and "
        "https://github.com/enterprises/ENTERPRISE/saml/consume (with data residency "
        "https://SUBDOMAIN.ghe.com/enterprises/SUBDOMAIN and .../saml/consume); GitHub's SP "
        "metadata is at the same URL followed by /saml/metadata. In GitHub's SAML single "
        "sign-on settings enter this IdP's .../sso URL as the Sign on URL, the metadata URL "
        "as the Issuer and the signing certificate as the Public certificate, with RSA-SHA256 "
        "and SHA256. Each member links the opaque persistent NameID to their own GitHub "
        "account at the first sign-in; this preset is not for Enterprise Managed Users, "
        "whose usernames GitHub derives from the NameID. GitHub's documentation does not say "
        "that it signs the AuthnRequests of organizations and enterprises: leave "
        "want_authn_requests_signed off."
    ),
)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        preset.name: preset
        for preset in (
            SALESFORCE,
            GOOGLE_WORKSPACE,
            ENTRA_ID,
            AWS_IAM_IDENTITY_CENTER,
            AWS_IAM,
            ATLASSIAN_CLOUD,
            SLACK,
            ZOOM,
            GITHUB_ENTERPRISE_CLOUD,
        )
    }
)


def apply(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The preset's fields with the sent ``fields`` over them: a sent field always wins, and
    a sent ``attribute_mapping`` replaces the preset's whole. A ``preset`` key in ``fields``
    is dropped. Invalid when the preset is unknown."""
    preset = PRESETS.get(name)
    if preset is None:
        known = ", ".join(PRESETS)
        raise Invalid("The request is invalid", {"preset": f"unknown preset; one of: {known}"})
    merged = {key: _copy(value) for key, value in preset.fields.items()}
    merged.update((key, value) for key, value in fields.items() if key != "preset")
    return merged


def _copy(value: Any) -> Any:
    """A plain, mutable copy of a preset value (the presets themselves stay untouched)."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value
