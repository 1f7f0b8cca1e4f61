"""Bearer tokens: hashes, constant-time comparison, roles, 401/403 problems, open routes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from control_helpers import TOKENS, Client, authed_client, authenticator, make_view, serving_app

from control.auth import Authenticator, AuthError, Token, hash_token


def test_hash_and_identify() -> None:
    auth = Authenticator([Token("ci", hashlib.sha256(b"s3cret").hexdigest().upper(),
                                frozenset({"operate"}))])
    assert hash_token("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    principal = auth.identify("Bearer s3cret")
    assert principal.name == "ci" and principal.roles == {"operate", "read"}
    assert auth.identify("bearer  s3cret ").name == "ci"
    for bad in (None, "", "Basic s3cret", "Bearer ", "Bearer wrong"):
        with pytest.raises(AuthError) as err:
            auth.identify(bad)
        assert err.value.status == 401
        assert "s3cret" not in err.value.detail


def test_roles_and_implication() -> None:
    auth = authenticator()
    assert auth.authorize("Bearer admin-token", ["read"]) is not None
    assert auth.authorize("Bearer admin-token", ["submit"]) is not None
    assert auth.authorize("Bearer operate-token", ["read"]) is not None
    with pytest.raises(AuthError) as err:
        auth.authorize("Bearer read-token", ["operate"])
    assert err.value.status == 403
    with pytest.raises(AuthError):
        auth.authorize("Bearer submit-token", ["read"])


def test_disabled_without_tokens() -> None:
    assert Authenticator([]).authorize(None, ["admin"]) is None


def test_compare_digest_used_for_every_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    authenticator().identify("Bearer read-token")  # matches the first: still compares all
    assert len(calls) == len(TOKENS)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with authed_client() as served:
        yield served


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}



async def test_http_401_403_and_open_routes(client: Client,
                                           caplog: pytest.LogCaptureFixture) -> None:
    http, url, view = client
    caplog.set_level(logging.DEBUG)
    for path in ("/healthz", "/readyz", "/v1/openapi.json"):
        async with http.get(url + path) as resp:
            assert resp.status == 200, path
    async with http.get(url + "/v1/operators") as resp:
        body = await resp.json()
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["status"] == 401 and body["title"] == "Unauthorized"
    async with http.get(url + "/v1/operators", headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 401  # metrics_public = false
    async with http.get(url + "/metrics", headers=bearer("reader")) as resp:
        assert resp.status == 200
    async with http.get(url + "/v1/operators", headers=bearer("reader")) as resp:
        assert resp.status == 200
    async with http.post(url + "/v1/operators/mtn/pause", headers=bearer("reader")) as resp:
        body = await resp.json()
        assert resp.status == 403 and body["title"] == "Forbidden"
        assert "operate" in body["detail"]
    assert not view.ops["mtn"].paused
    async with http.post(url + "/v1/operators/mtn/pause", headers=bearer("operator")) as resp:
        assert resp.status == 200 and (await resp.json())["state"] == "paused"
    async with http.get(url + "/v1/admin/rules", headers=bearer("operator")) as resp:
        assert resp.status == 403
    async with http.get(url + "/v1/admin/rules", headers=bearer("admin")) as resp:
        assert resp.status == 200
    message = {"tenant_id": "demo", "source": "SMPPD", "destination": "93791234567",
               "text": "hi"}
    async with http.post(url + "/v1/messages", json=message, headers=bearer("reader")) as resp:
        assert resp.status == 403
    async with http.post(url + "/v1/messages", json=message, headers=bearer("submitter")) as resp:
        assert resp.status == 202
    for _, (secret, _) in TOKENS.items():
        assert secret not in caplog.text


async def test_open_without_tokens() -> None:
    async with serving_app(await make_view()) as url, aiohttp.ClientSession() as http, \
            http.post(f"{url}/v1/leases/validate",
                      json={"sender": "SMPPD", "tenant_id": "demo"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"allowed": True, "reason_code": "OK", "lease": {
            "sender": "SMPPD", "tenant_id": "demo", "kind": "ALPHANUMERIC",
            "state": "ACTIVE", "quarantine_until": None}}
