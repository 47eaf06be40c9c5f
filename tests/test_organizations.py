"""Organizations, members, users and login tokens, over HTTP against a running server."""

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
    assert "password" not in response.text


def test_wrong_password_and_unknown_email_answer_alike(server: Server, owner: Account) -> None:
    wrong = server.api("POST", "/auth/login", json={"email": owner.email, "password": "nope-nope"})
    unknown = server.api("POST", "/auth/login", json={"email": "ghost@x.test", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


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


def test_create_organization_makes_caller_owner(server: Server, owner: Account) -> None:
    slug = unique_slug("neworg")
    response = server.api("POST", "/organizations", owner.token, json={"slug": slug, "name": "New"})
    assert response.status_code == 201
    org = response.json()
    assert set(org) == {"id", "slug", "name", "created_at"}
    members = server.api("GET", f"/organizations/{slug}/members", owner.token).json()["members"]
    assert members == [{"user_id": members[0]["user_id"], "email": owner.email, "role": "owner"}]


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


def test_non_member_is_forbidden_and_unknown_org_not_found(
    server: Server, owner: Account, org: str
) -> None:
    outsider = add_user(server, owner.token, "acme")
    assert server.api("GET", f"/organizations/{org}", outsider.token).status_code == 403
    assert server.api("GET", "/organizations/no-such-org", owner.token).status_code == 404


def test_members_roles(server: Server, owner: Account, org: str) -> None:
    admin = add_user(server, owner.token, org, role="admin")
    member = add_user(server, owner.token, org, role="member")
    newcomer = add_user(server, owner.token, "acme")
    path = f"/organizations/{org}/members"
    assert (
        server.api(
            "POST", path, member.token, json={"email": newcomer.email, "role": "member"}
        ).status_code
        == 403
    )
    assert (
        server.api(
            "POST", path, admin.token, json={"email": newcomer.email, "role": "owner"}
        ).status_code
        == 403
    )
    created = server.api("POST", path, admin.token, json={"email": newcomer.email, "role": "admin"})
    assert created.status_code == 201
    assert created.json()["role"] == "admin"
    again = server.api("POST", path, owner.token, json={"email": newcomer.email, "role": "member"})
    assert again.status_code == 409
    missing = server.api(
        "POST", path, owner.token, json={"email": "ghost@x.test", "role": "member"}
    )
    assert missing.status_code == 404
    listed = server.api("GET", path, member.token).json()["members"]
    assert {m["email"] for m in listed} == {owner.email, admin.email, member.email, newcomer.email}


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
    }
    assert server.login("jane.doe@example.test", "jane-password-1")
    again = server.api("POST", path, owner.token, json={"email": "jane.doe@example.test"})
    assert again.status_code == 409
    users = server.api("GET", path, owner.token).json()["users"]
    assert user in users


def test_existing_user_is_attached_without_changing_password(
    server: Server, owner: Account, org: str
) -> None:
    person = add_user(server, owner.token, "acme")
    body = {"email": person.email, "password": "hijacked-password", "role": "member"}
    attached = server.api("POST", f"/organizations/{org}/users", owner.token, json=body)
    assert attached.status_code == 201
    assert server.login(person.email, person.password)


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
