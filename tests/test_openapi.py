"""GET /api/openapi.json: every /api route documented, schemas valid, responses conforming."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from admin_helpers import service_payload
from conftest import Account, Server, add_user
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from idp.app import create_app
from idp.settings import load_settings

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def doc(server: Server) -> dict[str, Any]:
    """The document as the running server serves it."""
    response = requests.get(f"{server.url}/api/openapi.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_every_api_route_is_documented_with_its_methods(
    server: Server, doc: dict[str, Any]
) -> None:
    app = create_app(load_settings(server.env))
    served: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api" or rule.rule.startswith("/api/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            served.setdefault(path, set()).update((rule.methods or set()) - IGNORED_METHODS)
    documented = {
        path: {method.upper() for method in operations} for path, operations in doc["paths"].items()
    }
    assert served == documented
    assert "/api/organizations/{org}/services/{svc}/api-keys/{key_id}" in documented


def test_document_structure(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, operations in doc["paths"].items():
        names = {p[1:-1] for p in path.split("/") if p.startswith("{")}
        for operation in operations.values():
            in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert in_path == names, path


def test_component_schemas_are_valid_json_schema(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    for name, schema in components.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:  # pragma: no cover - the message names the schema
            pytest.fail(f"component {name} is not valid JSON Schema: {exc.message}")
    prefix = "#/components/schemas/"
    for ref in _refs(doc):
        assert ref.startswith(prefix) and ref[len(prefix) :] in components, ref


def _conforms(doc: dict[str, Any], method: str, path: str, response: requests.Response) -> None:
    """The response matches what the document says this operation answers."""
    operation = doc["paths"][path][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    if documented is None:
        assert response.status_code >= 400, (method, path, response.status_code)
        documented = operation["responses"]["default"]
    content = documented.get("content")
    if content is None:
        assert response.content == b"", (method, path)
        return
    assert response.headers["Content-Type"].startswith("application/json")
    schema = {**content["application/json"]["schema"], "components": doc["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [e.message for e in validator.iter_errors(response.json())]
    assert not errors, (method, path, response.status_code, errors)


def test_responses_match_the_document(
    server: Server, owner: Account, org: str, doc: dict[str, Any]
) -> None:
    base = "/api/organizations/{org}/services"
    token = owner.token

    def call(method: str, template: str, **kwargs: Any) -> requests.Response:
        concrete = template.format(org=org, **kwargs.pop("ids", {}))
        response = server.api(
            method, concrete.removeprefix("/api"), kwargs.pop("as_", token), **kwargs
        )
        _conforms(doc, method, template, response)
        return response

    body = service_payload(google_scopes=["openid"])
    slug = body["slug"]
    ids = {"svc": slug}
    assert call("POST", base, json=body).status_code == 201
    assert call("POST", base, json=body).status_code == 409
    assert call("POST", base, json={"slug": "-"}).status_code == 400
    assert call("GET", base).status_code == 200
    assert call("GET", base, as_=None).status_code == 401
    assert call("PATCH", base + "/{svc}", ids=ids, json={"name": "New"}).status_code == 200
    plan_body = {"name": "pro", "price_cents": 0, "currency": "EUR", "features": ["a"]}
    plan = call("POST", base + "/{svc}/plans", ids=ids, json=plan_body).json()["plan"]
    assert call("GET", base + "/{svc}/plans", ids=ids).status_code == 200
    plan_ids = {**ids, "plan_id": plan["id"]}
    patched = call("PATCH", base + "/{svc}/plans/{plan_id}", ids=plan_ids, json={})
    assert patched.status_code == 200
    subscriber = add_user(server, owner.token, org)
    subscribed = call(
        "POST",
        base + "/{svc}/subscriptions",
        ids=ids,
        json={"email": subscriber.email, "plan_id": plan["id"]},
    )
    assert subscribed.status_code == 201, subscribed.text
    sub = subscribed.json()
    assert call("GET", base + "/{svc}/subscriptions", ids=ids).status_code == 200
    assert call("DELETE", base + "/{svc}/plans/{plan_id}", ids=plan_ids).status_code == 409
    sub_ids = {**ids, "subscription_id": sub["id"]}
    assert call("DELETE", base + "/{svc}/subscriptions/{subscription_id}", ids=sub_ids).ok
    assert call("DELETE", base + "/{svc}/plans/{plan_id}", ids=plan_ids).status_code == 204
    for expires in (None, 30):
        created = call(
            "POST",
            base + "/{svc}/api-keys",
            ids=ids,
            json={"name": "k", "permissions": ["read:service"], "expires_in_days": expires},
        ).json()
        key_ids = {**ids, "key_id": created["id"]}
        assert call("GET", base + "/{svc}", ids=ids, as_=created["key"]).status_code == 200
        assert call("GET", base + "/{svc}/api-keys/{key_id}", ids=key_ids).status_code == 200
        assert call("GET", base + "/{svc}/api-keys", ids=ids, params={"limit": 1}).ok
    assert call("GET", base + "/{svc}/api-keys", ids=ids, params={"limit": 0}).status_code == 400
    member = add_user(server, owner.token, org)
    assert call("DELETE", base + "/{svc}", ids=ids, as_=member.token).status_code == 403
    assert call("DELETE", base + "/{svc}/api-keys/{key_id}", ids=key_ids).status_code == 204
    assert call("DELETE", base + "/{svc}", ids=ids).status_code == 204
    assert call("GET", base + "/{svc}", ids=ids).status_code == 404


def test_organization_and_account_answers_match_the_document(
    server: Server, owner: Account, org: str, doc: dict[str, Any]
) -> None:
    def call(method: str, template: str, **kwargs: Any) -> requests.Response:
        concrete = template.format(org=org, **kwargs.pop("ids", {}))
        response = server.api(
            method, concrete.removeprefix("/api"), kwargs.pop("as_", owner.token), **kwargs
        )
        _conforms(doc, method, template, response)
        return response

    assert call("GET", "/api/organizations").status_code == 200
    assert call("GET", "/api/organizations/{org}").status_code == 200
    users = "/api/organizations/{org}/users"
    body = {"email": "Doc.User@example.test", "groups": ["eng"], "password": "doc-password-1"}
    created = call("POST", users, json=body)
    assert created.status_code == 201
    assert call("POST", users, json=body).status_code == 409
    assert call("POST", users, json={"email": "not-an-email"}).status_code == 400
    assert call("GET", users).status_code == 200
    user_ids = {"user_id": created.json()["id"]}
    assert call("GET", users + "/{user_id}", ids=user_ids).status_code == 200
    assert call("GET", users + "/{user_id}", ids={"user_id": "nobody"}).status_code == 404
    patched = call("PATCH", users + "/{user_id}", ids=user_ids, json={"disabled": True})
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    member = add_user(server, owner.token, org)
    assert call("GET", users, as_=member.token).status_code == 200
    assert call("POST", users, as_=member.token, json={"email": "x@example.test"}).status_code == (
        403
    )
    refused = call("POST", "/api/organizations", as_=member.token, json={"slug": "x", "name": "x"})
    assert refused.status_code == 403
    assert call("DELETE", users + "/{user_id}", ids=user_ids).status_code == 204
    login = call(
        "POST",
        "/api/auth/login",
        as_=None,
        json={"email": member.email, "password": member.password, "organization": org},
    )
    assert login.status_code == 200 and login.json()["user"]["organization"] == org
    assert call("DELETE", "/api/organizations/{org}", as_=member.token).status_code == 403
    assert call("DELETE", "/api/organizations/{org}").status_code == 204
    assert call("GET", "/api/organizations/{org}").status_code == 404
