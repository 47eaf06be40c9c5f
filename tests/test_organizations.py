"""Organizations, their accounts and login tokens, over HTTP against a running server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import Account, Server, add_user, unique_slug


def test_login_returns_token_and_user(server: Server, owner: Account) -> None:
    response = server.api(
        "POST", "/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"] and body["expires_at"].endswith("Z")
    assert body["user"]["email"] == owner.email
    assert body["user"]["role"] == "operator" and body["user"]["organization"] is None
    assert "password" not in response.text


def test_login_with_organization_signs_in_its_account(server: Server, owner: Account) -> None:
    body = {"email": owner.email, "password": owner.password, "organization": "acme"}
    response = server.api("POST", "/auth/login", json=body)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert (user["email"], user["organization"], user["role"]) == (owner.email, "acme", "owner")
    assert "password" not in response.text


def test_wrong_password_and_unknown_email_answer_alike(server: Server, owner: Account) -> None:
    wrong = server.api("POST", "/auth/login", json={"email": owner.email, "password": "nope-nope"})
    unknown = server.api("POST", "/auth/login", json={"email": "ghost@x.test", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_wrong_password_unknown_email_and_unknown_org_answer_alike(
    server: Server, owner: Account
) -> None:
    attempts = [
        {"email": owner.email, "password": "nope-nope", "organization": "acme"},
        {"email": "ghost@x.test", "password": "nope-nope", "organization": "acme"},
        {"email": owner.email, "password": owner.password, "organization": "no-such-org"},
    ]
    answers = [server.api("POST", "/auth/login", json=body) for body in attempts]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert answers[0].json() == answers[1].json() == answers[2].json()


def test_logout_revokes_token(server: Server, owner: Account) -> None:
    token = server.login(owner.email, owner.password)
    assert server.api("GET", "/organizations/acme", token).status_code == 200
    assert server.api("POST", "/auth/logout", token).status_code == 204
    response = server.api("GET", "/organizations/acme", token)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_email_is_case_insensitive(server: Server, owner: Account) -> None:
    token = server.login(owner.email.upper(), owner.password)
    assert server.api("GET", "/organizations/acme", token).status_code == 200
    token = server.login(owner.email.upper(), owner.password, "acme")
    assert server.api("GET", "/organizations/acme", token).status_code == 200


def test_operator_creates_an_organization_without_accounts(server: Server, owner: Account) -> None:
    slug = unique_slug("neworg")
    response = server.api("POST", "/organizations", owner.token, json={"slug": slug, "name": "New"})
    assert response.status_code == 201
    org = response.json()
    assert set(org) == {"id", "slug", "name", "created_at"}
    users = server.api("GET", f"/organizations/{slug}/users", owner.token)
    assert users.status_code == 200 and users.json() == {"users": []}
    first = add_user(server, owner.token, slug, role="owner")
    assert server.api("GET", f"/organizations/{slug}", first.token).status_code == 200


def test_accounts_cannot_create_organizations(server: Server, owner: Account) -> None:
    account_owner = server.login(owner.email, owner.password, "acme")
    body = {"slug": unique_slug("nope"), "name": "Nope"}
    response = server.api("POST", "/organizations", account_owner, json=body)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert server.api("GET", f"/organizations/{body['slug']}", owner.token).status_code == 404


def test_organization_slug_taken(server: Server, owner: Account, org: str) -> None:
    response = server.api("POST", "/organizations", owner.token, json={"slug": org, "name": "x"})
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


def test_racing_organization_creates_give_one_success(server: Server, owner: Account) -> None:
    slug = unique_slug("race")

    def create(_: int) -> int:
        body = {"slug": slug, "name": "Race"}
        return server.api("POST", "/organizations", owner.token, json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(create, range(8)))
    assert codes == [201] + [409] * 7


def test_invalid_organization_has_details(server: Server, owner: Account) -> None:
    response = server.api("POST", "/organizations", owner.token, json={"slug": "-Bad-", "extra": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert set(body["details"]) == {"slug", "name", "extra"}


def test_unauthenticated_and_garbage_tokens(server: Server) -> None:
    assert server.api("GET", "/organizations/acme").status_code == 401
    assert server.api("GET", "/organizations/acme", "idpt_garbage").status_code == 401
    assert server.api("GET", "/organizations/acme", "x" * 5000).status_code == 401


def test_other_organization_and_unknown_org_are_not_found(
    server: Server, owner: Account, org: str
) -> None:
    outsider = add_user(server, owner.token, "acme")
    elsewhere = server.api("GET", f"/organizations/{org}", outsider.token)
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"] == "not_found"
    users = server.api("GET", f"/organizations/{org}/users", outsider.token)
    assert users.status_code == 404
    assert server.api("GET", "/organizations/no-such-org", owner.token).status_code == 404
    assert server.api("GET", "/organizations/no-such-org", outsider.token).status_code == 404
    listed = server.api("GET", "/organizations", outsider.token).json()["organizations"]
    assert [o["slug"] for o in listed] == ["acme"]


def test_account_roles(server: Server, owner: Account, org: str) -> None:
    admin = add_user(server, owner.token, org, role="admin")
    member = add_user(server, owner.token, org, role="member")
    path = f"/organizations/{org}/users"
    newcomer = f"{unique_slug('new')}@example.test"
    assert (
        server.api(
            "POST", path, member.token, json={"email": newcomer, "role": "member"}
        ).status_code
        == 403
    )
    assert (
        server.api("POST", path, admin.token, json={"email": newcomer, "role": "owner"}).status_code
        == 403
    )
    created = server.api("POST", path, admin.token, json={"email": newcomer, "role": "admin"})
    assert created.status_code == 201
    assert created.json()["role"] == "admin"
    again = server.api("POST", path, owner.token, json={"email": newcomer, "role": "member"})
    assert again.status_code == 409
    listed = server.api("GET", path, member.token).json()["users"]
    assert {u["email"] for u in listed} == {admin.email, member.email, newcomer}


def test_users_create_and_list(server: Server, owner: Account, org: str) -> None:
    path = f"/organizations/{org}/users"
    body = {
        "email": "Jane.Doe@Example.test",
        "name": "Jane Doe",
        "given_name": "Jane",
        "family_name": "Doe",
        "groups": ["eng", "ops"],
        "password": "jane-password-1",
    }
    created = server.api("POST", path, owner.token, json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user == {
        "id": user["id"],
        "email": "jane.doe@example.test",
        "name": "Jane Doe",
        "given_name": "Jane",
        "family_name": "Doe",
        "groups": ["eng", "ops"],
        "role": "member",
        "disabled": False,
        "mfa": {"totp": False, "passkeys": 0},
    }
    assert server.login("jane.doe@example.test", "jane-password-1", org)
    again = server.api("POST", path, owner.token, json={"email": "jane.doe@example.test"})
    assert again.status_code == 409
    users = server.api("GET", path, owner.token).json()["users"]
    assert user in users
    assert server.api("GET", f"{path}/{user['id']}", owner.token).json() == user


def test_same_email_in_another_org_is_a_new_account(
    server: Server, owner: Account, org: str
) -> None:
    person = add_user(server, owner.token, "acme")
    body = {"email": person.email, "password": "other-password", "role": "member"}
    created = server.api("POST", f"/organizations/{org}/users", owner.token, json=body)
    assert created.status_code == 201
    acme_users = server.api("GET", "/organizations/acme/users", owner.token).json()["users"]
    acme_id = next(u["id"] for u in acme_users if u["email"] == person.email)
    assert created.json()["id"] != acme_id
    assert server.login(person.email, person.password, "acme")
    assert server.login(person.email, "other-password", org)
    wrong = {"email": person.email, "password": "other-password", "organization": "acme"}
    assert server.api("POST", "/auth/login", json=wrong).status_code == 401
    elsewhere = server.api("GET", f"/organizations/{org}/users/{acme_id}", owner.token)
    assert elsewhere.status_code == 404


def test_json_errors_for_unknown_routes_methods_and_bodies(server: Server, owner: Account) -> None:
    assert server.api("GET", "/nothing-here").json()["error"] == "not_found"
    response = server.api("DELETE", "/auth/login")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    not_json = server.api("POST", "/organizations", owner.token, data=b"{oops")
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_request"
    huge = server.api("POST", "/organizations", owner.token, data=b"x" * (1024 * 1024 + 1))
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"
