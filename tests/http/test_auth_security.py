"""HTTP-level security of the account endpoints and credentials, against the shop."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion import App, Runtime
from bastion.auth import create_user
from bastion.testing import BastionClient
from examples.shop.app import app as shop

PASSWORD = "correct horse battery staple"
SECRET = "test-secret-key-that-is-long-enough-for-every-hmac-0123456789abcdef"


@pytest.fixture
def bastion_app() -> App:
    return shop


@pytest.fixture
def bastion_settings_overrides() -> dict[str, Any]:
    return {"shop": {"seed_demo_data": False}, "app": {"secret_key": SECRET}}


async def register(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "N"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def tokens(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: httpx.AsyncClient, email: str) -> str:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_admin(runtime: Runtime, email: str = "root@example.com") -> None:
    with runtime.database.transaction() as session:
        create_user(session, runtime.passwords, email=email, password=PASSWORD, roles=["admin"])


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "sub": "1",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "bastion",
        "aud": "bastion-api",
        "jti": "abc",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


# -- JWT access tokens ---------------------------------------------------------------


async def test_a_valid_access_token_authenticates(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    pair = await tokens(client, "ann@example.com")
    assert pair["token_type"] == "bearer"
    assert 0 < pair["expires_in"] <= 900
    me = await client.get("/api/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "ann@example.com"


def _unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, default=lambda d: int(d.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def _rsa_signed() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jwt.encode(claims(), pem, algorithm="RS256")


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda good: good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"), "token_invalid"),
        (lambda good: jwt.encode(claims(), "another-key-" * 4, algorithm="HS256"), "token_invalid"),
        (lambda good: _unsigned(claims()), "token_invalid"),
        (lambda good: _rsa_signed(), "token_invalid"),
        (lambda good: jwt.encode(claims(aud="other"), SECRET, algorithm="HS256"), "token_invalid"),
        (lambda good: jwt.encode(claims(iss="other"), SECRET, algorithm="HS256"), "token_invalid"),
        (lambda good: jwt.encode(claims(jti=None), SECRET, algorithm="HS256"), "token_invalid"),
        (lambda good: jwt.encode(claims(), SECRET, algorithm="HS512"), "token_invalid"),
        (
            lambda good: jwt.encode(
                claims(
                    iat=datetime.now(UTC) - timedelta(hours=1),
                    exp=datetime.now(UTC) - timedelta(minutes=1),
                ),
                SECRET,
                algorithm="HS256",
            ),
            "token_expired",
        ),
        (lambda good: "not-a-jwt", "token_invalid"),
    ],
    ids=[
        "tampered",
        "wrong-key",
        "alg-none",
        "key-confusion-rs256",
        "wrong-audience",
        "wrong-issuer",
        "no-jti",
        "other-hmac-algorithm",
        "expired",
        "garbage",
    ],
)
async def test_bad_access_tokens_are_refused(
    client: BastionClient, make_token: Any, code: str
) -> None:
    await register(client, "ann@example.com")
    good = (await tokens(client, "ann@example.com"))["access_token"]
    response = await client.get("/api/v1/me", headers=bearer(make_token(good)))
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_expires_after_its_lifetime(client: BastionClient, clock: Any) -> None:
    await register(client, "ann@example.com")
    access = (await tokens(client, "ann@example.com"))["access_token"]
    assert (await client.get("/api/v1/me", headers=bearer(access))).status_code == 200
    clock.shift(minutes=16)
    response = await client.get("/api/v1/me", headers=bearer(access))
    assert response.json()["code"] == "token_expired"


async def test_a_non_bearer_authorization_header_is_refused(client: BastionClient) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


# -- refresh tokens ----------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    first = await tokens(client, "ann@example.com")
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/v1/me", headers=bearer(rotated["access_token"]))).is_success

    reused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_reused"
    # The thief's copy and the owner's newer token died together.
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert after.status_code == 401
    assert after.json()["code"] == "token_invalid"


async def test_unknown_refresh_token_and_revocation(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    pair = await tokens(client, "ann@example.com")
    unknown = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
    assert unknown.json()["code"] == "token_invalid"
    revoked = await client.post(
        "/api/v1/auth/revoke", json={"refresh_token": pair["refresh_token"]}
    )
    assert revoked.status_code == 204
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.json()["code"] == "token_invalid"


# -- sessions and CSRF -------------------------------------------------------------


def _session_cookie(response: httpx.Response) -> str:
    cookie = response.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    assert name == "bastion_session"
    return rest.split(";", 1)[0]


async def test_login_issues_a_new_session_id(runtime: Runtime) -> None:
    credentials = {"email": "ann@example.com", "password": PASSWORD}
    planted = "attacker-chosen-session-id"
    async with BastionClient(runtime.asgi()) as client:
        await register(client, "ann@example.com")
        first = await client.post(
            "/api/v1/auth/login", json=credentials, headers={"Cookie": f"bastion_session={planted}"}
        )
        first_id = _session_cookie(first)
        assert first_id != planted
        second = await client.post(
            "/api/v1/auth/login",
            json=credentials,
            headers={"Cookie": f"bastion_session={first_id}"},
        )
        second_id = _session_cookie(second)
        assert second_id not in (first_id, planted)
    # Neither the planted id nor the one replaced at the second login is a session.
    for stale in (planted, first_id):
        async with BastionClient(runtime.asgi(), cookies={"bastion_session": stale}) as other:
            assert (await other.get("/api/v1/me")).status_code == 401
    async with BastionClient(runtime.asgi(), cookies={"bastion_session": second_id}) as owner:
        assert (await owner.get("/api/v1/me")).status_code == 200


def _cookie(response: httpx.Response) -> str:
    return next(v for k, v in response.headers.multi_items() if k == "set-cookie")


async def test_cookie_flags_in_development(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    response = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    cookie = _cookie(response).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "secure" not in cookie


async def test_cookie_is_secure_in_production(make_runtime: Any) -> None:
    runtime = make_runtime(env="production")
    await runtime.startup()
    async with BastionClient(runtime.asgi(), base_url="https://shop.example") as http:
        await register(http, "ann@example.com")
        response = await http.post(
            "/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
        )
    cookie = _cookie(response).lower()
    assert "secure" in cookie
    assert "httponly" in cookie


async def test_production_refuses_an_insecure_cookie(make_runtime: Any) -> None:
    from bastion.settings import SettingsError

    with pytest.raises(SettingsError, match="session_cookie_secure"):
        make_runtime(env="production", auth={"session_cookie_secure": False})


async def test_csrf_is_required_for_cookie_sessions_only(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    csrf = await login(client, "ann@example.com")
    body = {"name": "ci", "scopes": ["read:public"]}
    refused = await client.post("/api/v1/api-keys", json=body)
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    wrong = await client.post("/api/v1/api-keys", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.json()["code"] == "csrf_failed"
    accepted = await client.post("/api/v1/api-keys", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201
    # Reads need no token.
    assert (await client.get("/api/v1/me")).status_code == 200

    pair = await tokens(client, "ann@example.com")
    client.cookies.clear()
    with_bearer = await client.post(
        "/api/v1/api-keys", json=body, headers=bearer(pair["access_token"])
    )
    assert with_bearer.status_code == 201


async def test_logout_ends_the_session(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    csrf = await login(client, "ann@example.com")
    session_id = client.cookies.get("bastion_session")
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    client.cookies.set("bastion_session", session_id or "")
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_sessions_expire_when_idle(client: BastionClient, clock: Any) -> None:
    await register(client, "ann@example.com")
    await login(client, "ann@example.com")
    clock.shift(hours=11)
    assert (await client.get("/api/v1/me")).status_code == 200
    clock.shift(hours=11)  # idle timer restarted at the previous request
    assert (await client.get("/api/v1/me")).status_code == 200
    clock.shift(hours=13)
    assert (await client.get("/api/v1/me")).status_code == 401


# -- API keys ----------------------------------------------------------------------


async def test_api_keys_are_shown_once_scoped_and_private(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    await register(client, "bob@example.com")
    ann = (await tokens(client, "ann@example.com"))["access_token"]
    bob = (await tokens(client, "bob@example.com"))["access_token"]
    made = await client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["read:public"]}, headers=bearer(ann)
    )
    assert made.status_code == 201
    key = made.json()["key"]
    assert key.startswith("bk_")

    me = await client.get("/api/v1/me", headers={"X-API-Key": key})
    assert me.json()["email"] == "ann@example.com"
    listed = (await client.get("/api/v1/api-keys", headers=bearer(ann))).json()
    assert [entry["id"] for entry in listed] == [made.json()["id"]]
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is not None

    # Bob can neither see nor delete Ann's key: 404, not 403.
    assert (await client.get("/api/v1/api-keys", headers=bearer(bob))).json() == []
    stolen = await client.delete(f"/api/v1/api-keys/{made.json()['id']}", headers=bearer(bob))
    assert stolen.status_code == 404
    assert stolen.json()["code"] == "not_found"

    # A scope the owner does not hold is refused.
    too_wide = await client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["write:all"]}, headers=bearer(ann)
    )
    assert too_wide.status_code == 422
    assert too_wide.json()["errors"][0]["code"] == "unknown_scope"

    deleted = await client.delete(f"/api/v1/api-keys/{made.json()['id']}", headers=bearer(ann))
    assert deleted.status_code == 204
    after = await client.get("/api/v1/me", headers={"X-API-Key": key})
    assert after.status_code == 401
    assert after.json()["code"] == "token_invalid"
    forged = await client.get("/api/v1/me", headers={"X-API-Key": key[:-4] + "AAAA"})
    assert forged.status_code == 401


# -- authorization ------------------------------------------------------------------


async def test_catalog_writes_need_write_all(client: BastionClient, runtime: Runtime) -> None:
    await register(client, "ann@example.com")
    make_admin(runtime)
    user = (await tokens(client, "ann@example.com"))["access_token"]
    admin = (await tokens(client, "root@example.com"))["access_token"]
    body = {"name": "Lamp", "price_cents": 1000, "stock": 1, "category_id": 1}
    anonymous = await client.post("/api/v1/products", json=body)
    assert anonymous.status_code == 401
    refused = await client.post("/api/v1/products", json=body, headers=bearer(user))
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    allowed = await client.post("/api/v1/products", json=body, headers=bearer(admin))
    assert allowed.json().get("code") not in ("permission_denied", "not_authenticated")


# -- ban -------------------------------------------------------------------------------


async def test_a_ban_locks_the_user_out_on_the_next_request(
    client: BastionClient, runtime: Runtime
) -> None:
    await register(client, "ann@example.com")
    make_admin(runtime)
    pair = await tokens(client, "ann@example.com")
    key = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "ci", "scopes": ["read:public"]},
            headers=bearer(pair["access_token"]),
        )
    ).json()["key"]
    async with BastionClient(runtime.asgi()) as browser:
        await login(browser, "ann@example.com")
        assert (await browser.get("/api/v1/me")).status_code == 200

        admin = (await tokens(client, "root@example.com"))["access_token"]
        me = (await client.get("/api/v1/me", headers=bearer(pair["access_token"]))).json()
        short = await client.post(
            f"/api/v1/admin/users/{me['id']}/ban", json={"reason": "x"}, headers=bearer(admin)
        )
        assert short.status_code == 422
        banned = await client.post(
            f"/api/v1/admin/users/{me['id']}/ban",
            json={"reason": "fraud"},
            headers=bearer(admin),
        )
        assert banned.status_code == 200, banned.text
        assert banned.json()["revoked"] == {"refresh_tokens": 1, "api_keys": 1, "sessions": 1}

        by_token = await client.get("/api/v1/me", headers=bearer(pair["access_token"]))
        assert by_token.json()["code"] == "account_banned"
        assert (await client.get("/api/v1/me", headers={"X-API-Key": key})).status_code == 401
        assert (await browser.get("/api/v1/me")).status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 401
        relogin = await client.post(
            "/api/v1/auth/token", json={"email": "ann@example.com", "password": PASSWORD}
        )
        assert relogin.json()["code"] == "account_banned"
        wrong = await client.post(
            "/api/v1/auth/token", json={"email": "ann@example.com", "password": "wrong" * 3}
        )
        assert wrong.json()["code"] == "invalid_credentials"

        unbanned = await client.post(
            f"/api/v1/admin/users/{me['id']}/unban",
            json={"reason": "appeal granted"},
            headers=bearer(admin),
        )
        assert unbanned.status_code == 200
        assert (await tokens(client, "ann@example.com"))["access_token"]


async def test_only_admins_ban(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    user = (await tokens(client, "ann@example.com"))["access_token"]
    response = await client.post(
        "/api/v1/admin/users/1/ban", json={"reason": "because"}, headers=bearer(user)
    )
    assert response.status_code == 403


# -- login hardening and limits ---------------------------------------------------------


async def test_unknown_email_and_wrong_password_look_the_same(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": "not the password"}
    )
    assert unknown.status_code == wrong.status_code == 401

    def comparable(response: httpx.Response) -> dict[str, Any]:
        body: dict[str, Any] = response.json()
        body.pop("request_id")
        return body

    assert comparable(unknown) == comparable(wrong)
    assert comparable(wrong)["code"] == "invalid_credentials"


async def test_the_sixth_failed_login_is_rate_limited(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    body = {"email": "Ann@Example.com", "password": "wrong password!"}
    for _ in range(5):
        response = await client.post(
            "/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert response.status_code == 401
    # Spoofing X-Forwarded-For from an untrusted peer changes nothing.
    sixth = await client.post(
        "/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert sixth.status_code == 429
    assert sixth.json()["code"] == "rate_limited"
    assert int(sixth.headers["retry-after"]) > 0
    # Even the right password waits: the limit is per email and address.
    right = await client.post(
        "/api/v1/auth/token", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert right.status_code == 429


async def test_rate_limit_headers_are_present(client: BastionClient) -> None:
    response = await client.get("/api/v1/categories")
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert name in response.headers


# -- account endpoints ------------------------------------------------------------------


async def test_registration_queues_a_welcome_email_and_validates(
    client: BastionClient, runtime: Runtime
) -> None:
    from sqlalchemy import select

    from bastion.jobs import JobRow

    user = await register(client, "Ann@Example.com")
    assert user["email"] == "ann@example.com"
    assert user["roles"] == ["user"]
    with runtime.database.read_transaction() as session:
        emails = session.scalars(select(JobRow).where(JobRow.name == "bastion.send_email")).all()
        assert [(j.args["template"], j.args["to"]) for j in emails] == [
            ("welcome", ["ann@example.com"])
        ]
    taken = await client.post(
        "/api/v1/auth/register", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "email_taken"
    weak = await client.post(
        "/api/v1/auth/register", json={"email": "bob@example.com", "password": "password123"}
    )
    assert weak.json()["code"] == "weak_password"
    bad = await client.post("/api/v1/auth/register", json={"email": "nope", "password": PASSWORD})
    assert bad.status_code == 422


async def test_language_preference_sets_the_error_locale(client: BastionClient) -> None:
    await register(client, "ann@example.com")
    access = (await tokens(client, "ann@example.com"))["access_token"]
    saved = await client.patch(
        "/api/v1/me/preferences", json={"language": "es", "theme": "dark"}, headers=bearer(access)
    )
    assert saved.status_code == 200
    assert saved.json()["language"] == "es"
    invalid = await client.patch(
        "/api/v1/me/preferences", json={"theme": "neon"}, headers=bearer(access)
    )
    assert invalid.status_code == 422
    assert invalid.json()["title"] == "Error de validación"
    # ?lang= still wins over the saved preference.
    explicit = await client.patch(
        "/api/v1/me/preferences?lang=tr", json={"theme": "neon"}, headers=bearer(access)
    )
    assert explicit.json()["title"] != "Error de validación"


async def test_me_needs_a_caller(client: BastionClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
