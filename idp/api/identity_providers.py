"""An organization's upstream OpenID Providers: /organizations/{org}/identity-providers."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, url_for

from idp.api import access
from idp.api.access import Need
from idp.api.errors import not_found
from idp.api.openapi import component, operation, ref
from idp.api.shapes import text
from idp.domain import identity_providers as providers
from idp.runtime import runtime
from idp.store.models import SLUG_PATTERN

bp = Blueprint("identity_providers", __name__)
SLUG = re.compile(SLUG_PATTERN)

ISSUER = {"type": "string", "format": "endpoint-url", "maxLength": 2048}
DOMAIN = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^(?=.{1,253}$)([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$",
    "x-reason": "must be a domain name such as example.com",
}
SCOPE = {"type": "string", "pattern": r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$"}
FIELDS = {
    "name": text(200),
    "issuer": ISSUER,
    "client_id": text(512),
    "client_secret": {**text(1024), "type": ["string", "null"]},
    "scopes": {
        "type": "array",
        "items": SCOPE,
        "maxItems": 20,
        "uniqueItems": True,
        "contains": {"const": "openid"},
        "x-reason": "must include openid",
    },
    "allowed_domains": {"type": "array", "items": DOMAIN, "maxItems": 100, "uniqueItems": True},
    "jit": {"type": "boolean"},
    "default_role": {"type": "string", "enum": ["member", "admin"]},
    "enabled": {"type": "boolean"},
}

component(
    "PutIdentityProvider",
    {
        "type": "object",
        "required": ["name", "issuer", "client_id"],
        "additionalProperties": False,
        "properties": FIELDS,
    },
)
component(
    "IdentityProvider",
    {
        "type": "object",
        "required": [
            "slug",
            "name",
            "issuer",
            "client_id",
            "has_client_secret",
            "scopes",
            "allowed_domains",
            "jit",
            "default_role",
            "enabled",
            "redirect_uri",
        ],
        "properties": {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "issuer": {"type": "string"},
            "client_id": {"type": "string"},
            "has_client_secret": {"type": "boolean"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "allowed_domains": {"type": "array", "items": {"type": "string"}},
            "jit": {"type": "boolean"},
            "default_role": {"type": "string"},
            "enabled": {"type": "boolean"},
            "redirect_uri": {"type": "string"},
        },
    },
)
component(
    "IdentityProviderList",
    {
        "type": "object",
        "required": ["identity_providers"],
        "properties": {"identity_providers": {"type": "array", "items": ref("IdentityProvider")}},
    },
)
PATH = "/organizations/<org>/identity-providers/<slug>"


def redirect_uri() -> str:
    """The redirect URI to register at every upstream provider."""
    return runtime().settings.base_url.rstrip("/") + url_for("upstream.callback")


@operation(
    bp,
    "PUT",
    PATH,
    summary="Create or replace an upstream OpenID Provider (owner/admin); 201 when new",
    body="PutIdentityProvider",
    also_ok=(201,),
    response=ref("IdentityProvider"),
)
def put_provider(org: str, slug: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The client secret is stored encrypted and never returned; a PUT without it keeps it."""
    rt = runtime()
    if not SLUG.fullmatch(slug):  # no provider can have this name
        raise not_found("Identity provider names are slugs: lower-case letters, digits, dashes")
    with rt.db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        provider, done = providers.put(
            session, rt.settings, access.actor(), organization, slug, payload
        )
        answer = providers.provider_json(provider, redirect_uri())
    rt.store.announce_change(org)
    return answer, 201 if done == "created" else 200


@operation(
    bp,
    "GET",
    PATH,
    summary="Get an upstream OpenID Provider (any account of the organization)",
    response=ref("IdentityProvider"),
)
def get_provider(org: str, slug: str) -> dict[str, Any]:
    """Never the client secret: ``has_client_secret`` says whether one is stored."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ)
        return providers.provider_json(providers.find(session, organization, slug), redirect_uri())


@operation(
    bp,
    "GET",
    "/organizations/<org>/identity-providers",
    summary="List the organization's upstream OpenID Providers",
    response=ref("IdentityProviderList"),
)
def list_providers(org: str) -> dict[str, Any]:
    """Any account of the organization."""
    with runtime().db.read() as session:
        organization = access.organization(session, org, Need.READ)
        listed = providers.listing(session, organization)
        return {"identity_providers": [providers.provider_json(p, redirect_uri()) for p in listed]}


@operation(
    bp,
    "DELETE",
    PATH,
    summary="Delete an upstream OpenID Provider: its identities are unlinked, and the "
    "sign-ins made through it end",
    ok=204,
)
def delete_provider(org: str, slug: str) -> tuple[str, int]:
    """Owners and admins."""
    rt = runtime()
    with rt.db.write() as session:
        organization = access.organization(session, org, Need.MANAGE)
        providers.remove(
            session, access.actor(), organization, providers.find(session, organization, slug)
        )
    rt.store.announce_change(org)
    return "", 204
