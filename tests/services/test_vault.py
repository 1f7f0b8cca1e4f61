"""vault.client and vault.credentials against a real OpenBao dev server (no mocks)."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from vault_fixtures import BaoServer, bao, bao_fresh, setup_approle  # noqa: F401

import vault


def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def put(server: BaoServer, path: str, **data: str) -> int:
    resp = server.root().secrets.kv.v2.create_or_update_secret(path, secret=data)
    return int(resp["data"]["version"])


@pytest.fixture
async def root_client(bao: BaoServer) -> AsyncIterator[vault.VaultClient]:  # noqa: F811
    client = vault.VaultClient(bao.addr, vault.TokenAuth(bao.root_token))
    await client.login()
    yield client
    await client.close()


def store_for(client: vault.VaultClient, prefix: str, *operators: str) -> vault.CredentialStore:
    return vault.CredentialStore(client, operators, path_template=prefix + "/{operator_id}")


# --- reading ------------------------------------------------------------------------


async def test_kv_read_and_first_poll(
        bao: BaoServer, root_client: vault.VaultClient) -> None:  # noqa: F811
    prefix = unique()
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-pw",
        system_type="VMA")
    store = store_for(root_client, prefix, "roshan", "ghost")
    assert store.current("roshan") is None
    assert "not polled yet" in store.status("roshan")

    assert await store.poll() == ["roshan"]
    assert store.current("roshan") == vault.Credentials("smppd-roshan", "rosh-pw", "VMA", 1)
    assert store.password_source("roshan")() == "rosh-pw"
    assert store.status("roshan") == "ok: version 1"
    assert store.vault_reachable is True
    # never written: no credentials, and a status that says why
    assert store.current("ghost") is None and store.password("ghost") is None
    assert store.status("ghost").startswith("no credentials: never read from Vault")
    assert "not found" in store.status("ghost")
    with pytest.raises(KeyError, match="unknown operator"):
        store.current("nobody")


async def test_poll_detects_a_new_version(
        bao: BaoServer, root_client: vault.VaultClient) -> None:  # noqa: F811
    prefix = unique()
    put(bao, f"{prefix}/mtn", system_id="smppd-mtn", password="pw-one")
    store = store_for(root_client, prefix, "mtn")
    assert await store.poll() == ["mtn"]
    assert await store.poll() == []  # nothing moved
    put(bao, f"{prefix}/mtn", system_id="smppd-mtn", password="pw-two")
    assert await store.poll() == ["mtn"]
    assert store.version("mtn") == 2 and store.password("mtn") == "pw-two"
    assert await store.poll() == []
    assert await store.refresh("mtn") is False


async def test_explicit_previous_version_and_fall_back(
        bao: BaoServer, root_client: vault.VaultClient) -> None:  # noqa: F811
    prefix = unique()
    put(bao, f"{prefix}/awcc", system_id="smppd-awcc", password="old-pw")
    put(bao, f"{prefix}/awcc", system_id="smppd-awcc", password="new-pw")
    store = store_for(root_client, prefix, "awcc")
    assert await store.refresh("awcc") is True
    assert store.version("awcc") == 2

    previous = await store.read_version("awcc", 1)
    assert (previous.password, previous.version) == ("old-pw", 1)
    assert store.version("awcc") == 2  # reading does not change what is current
    with pytest.raises(vault.SecretNotFound):
        await store.read_version("awcc", 7)

    # the SMSC refuses version 2: back to 1, and polling does not offer 2 again
    assert (await store.fall_back("awcc")).version == 1
    assert store.password("awcc") == "old-pw"
    assert store.status("awcc") == ("fell back to version 1: version 2 was refused "
                                    "by the SMSC")
    assert await store.poll() == []
    assert store.version("awcc") == 1
    # a newer version is offered again
    put(bao, f"{prefix}/awcc", system_id="smppd-awcc", password="fixed-pw")
    assert await store.poll() == ["awcc"]
    assert store.status("awcc") == "ok: version 3"
    put(bao, f"{prefix}/new", system_id="smppd-new", password="new-pw")
    fresh = store_for(root_client, prefix, "new", "unread")
    with pytest.raises(vault.VaultError, match="no credentials to fall back from"):
        await fresh.fall_back("unread")
    await fresh.refresh("new")
    with pytest.raises(vault.VaultError, match="version 1 has no previous version"):
        await fresh.fall_back("new")


async def test_bad_secret_is_reported_without_its_value(
        bao: BaoServer, root_client: vault.VaultClient) -> None:  # noqa: F811
    prefix = unique()
    put(bao, f"{prefix}/salaam", system_id="smppd-salaam", password="far-too-long-pw")
    put(bao, f"{prefix}/etisalat", password="etis-pw")
    store = store_for(root_client, prefix, "salaam", "etisalat")
    assert await store.poll() == []
    assert "longer than 8" in store.status("salaam")
    assert "far-too-long-pw" not in store.status("salaam")
    assert "'system_id' is missing" in store.status("etisalat")


async def test_cas_write(bao: BaoServer, root_client: vault.VaultClient) -> None:  # noqa: F811
    path = f"{unique()}/op"
    assert await root_client.kv_write("secret", path, {"a": "1"}, cas=0) == 1
    assert await root_client.kv_write("secret", path, {"a": "2"}, cas=1) == 2
    with pytest.raises(vault.CasConflict) as info:
        await root_client.kv_write("secret", path, {"a": "3"}, cas=1)
    assert info.value.expected == 1 and "check-and-set conflict" in str(info.value)
    assert await root_client.kv_current_version("secret", path) == 2


# --- auth ---------------------------------------------------------------------------


async def approle_client(bao: BaoServer, tmp_path: Path, prefix: str,  # noqa: F811
                         clock: Any = None, **role_options: object) -> vault.VaultClient:
    role = unique()
    role_id, secret_file = setup_approle(bao, role, prefix, tmp_path, **role_options)
    kwargs = {"clock": clock} if clock is not None else {}
    client = vault.VaultClient(bao.addr, vault.AppRoleAuth(role_id, secret_file), **kwargs)
    await client.login()
    return client


async def test_approle_login_reads_only_its_paths(bao: BaoServer, tmp_path: Path) -> None:  # noqa: F811
    prefix = unique()
    put(bao, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-pw")
    put(bao, f"{unique()}/roshan", system_id="other", password="other")
    client = await approle_client(bao, tmp_path, prefix)
    try:
        ttl = client.token_ttl_remaining()
        assert ttl is not None and 55 <= ttl <= 60
        store = store_for(client, prefix, "roshan")
        assert await store.poll() == ["roshan"]
        assert store.password("roshan") == "rosh-pw"
        with pytest.raises(vault.VaultAuthError, match="permission denied"):
            await client.kv_read("secret", "elsewhere/roshan")
        assert await client.kv_list("secret", prefix) == ["roshan"]
    finally:
        await client.close()


async def test_approle_bad_secret_id(bao: BaoServer, tmp_path: Path) -> None:  # noqa: F811
    role_id, secret_file = setup_approle(bao, unique(), unique(), tmp_path)
    secret_file.write_text("not-the-secret-id")
    async with vault.VaultClient(bao.addr, vault.AppRoleAuth(role_id, secret_file)) as client:
        with pytest.raises(vault.VaultAuthError) as info:
            await client.login()
        assert "not-the-secret-id" not in str(info.value)
        assert client.token_ttl_remaining() is None
    missing = vault.VaultClient(bao.addr, vault.AppRoleAuth(role_id, tmp_path / "absent"))
    with pytest.raises(vault.VaultAuthError, match="cannot read the AppRole secret_id file"):
        await missing.login()
    await missing.close()


async def test_token_renewal_at_two_thirds(bao: BaoServer, tmp_path: Path,  # noqa: F811
                                           clock: Any) -> None:
    client = await approle_client(bao, tmp_path, unique(), clock)
    try:
        assert await client.renew_if_due() == "none"
        assert client.renewal_due_in() == pytest.approx(40, abs=1)
        clock.advance(41)
        assert client.token_ttl_remaining() == pytest.approx(19, abs=1)
        assert await client.renew_if_due() == "renewed"
        assert (client.renewals, client.logins) == (1, 1)
        assert client.token_ttl_remaining() == pytest.approx(60, abs=1)
        # the server agrees: the token was renewed
        lookup = bao.root().auth.token.lookup(client._hvac.token)["data"]
        assert lookup["last_renewal_time"]
    finally:
        await client.close()


async def test_refused_renewal_logs_in_again(bao: BaoServer, tmp_path: Path,  # noqa: F811
                                             clock: Any) -> None:
    prefix = unique()
    put(bao, f"{prefix}/mtn", system_id="smppd-mtn", password="mtn-pw")
    client = await approle_client(bao, tmp_path, prefix, clock)
    try:
        bao.root().auth.token.revoke(client._hvac.token)
        clock.advance(45)
        assert await client.renew_if_due() == "relogin"
        assert client.logins == 2
        assert (await client.kv_read("secret", f"{prefix}/mtn"))[1] == 1
    finally:
        await client.close()


async def test_near_max_ttl_logs_in_again(bao: BaoServer, tmp_path: Path,  # noqa: F811
                                          clock: Any) -> None:
    role = unique()
    role_id, secret_file = setup_approle(bao, role, unique(), tmp_path)
    client = vault.VaultClient(bao.addr, vault.AppRoleAuth(role_id, secret_file), clock=clock)
    try:
        await client.login()
        # the role's max TTL shrinks: the next renewal is capped far below what was asked
        bao.root().auth.approle.create_or_update_approle(role, token_ttl="5s",
                                                         token_max_ttl="10s")
        clock.advance(45)
        assert await client.renew_if_due() == "relogin"
        assert (client.renewals, client.logins) == (1, 2)
    finally:
        await client.close()


async def test_token_auth(bao: BaoServer) -> None:  # noqa: F811
    with pytest.raises(vault.VaultAuthError, match="SMPPD_NO_SUCH_VAR"):
        vault.TokenAuth.from_env("SMPPD_NO_SUCH_VAR", {})
    auth = vault.TokenAuth.from_env("T", {"T": bao.root_token})
    assert bao.root_token not in repr(auth)
    async with vault.VaultClient(bao.addr, auth) as client:
        await client.login()
        assert client.token_ttl_remaining() == math.inf  # the dev root token never expires
        assert await client.renew_if_due() == "none"
    async with vault.VaultClient(bao.addr, vault.TokenAuth("s.bogus")) as client:
        with pytest.raises(vault.VaultAuthError):
            await client.login()


# --- Vault down ---------------------------------------------------------------------


async def test_vault_down_keeps_cached_credentials(bao_fresh: BaoServer) -> None:  # noqa: F811
    prefix = unique()
    put(bao_fresh, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-v1")
    put(bao_fresh, f"{prefix}/mtn", system_id="smppd-mtn", password="mtn-pw")
    async with vault.VaultClient(bao_fresh.addr, vault.TokenAuth(bao_fresh.root_token)) as client:
        await client.login()
        store = vault.CredentialStore(client, ["roshan", "mtn", "awcc"],
                                      path_template=prefix + "/{operator_id}")
        assert await store.poll() == ["roshan", "mtn"]
        put(bao_fresh, f"{prefix}/roshan", system_id="smppd-roshan", password="rosh-v2")
        assert await store.poll() == ["roshan"]

        bao_fresh.stop()  # mid-run

        assert await store.poll() == []
        assert store.vault_reachable is False
        assert store.password("roshan") == "rosh-v2" and store.password("mtn") == "mtn-pw"
        assert "using cached credentials" in store.status("mtn")
        assert "vault unreachable" in store.status("mtn")
        assert store.current("awcc") is None
        assert store.status("awcc").startswith("no credentials: never read from Vault "
                                               "(vault unreachable")
        with pytest.raises(vault.VaultUnavailable):
            await store.refresh("roshan")
        assert store.password("roshan") == "rosh-v2"
        # a refused rotation still falls back, to the version held in memory
        assert (await store.fall_back("roshan")).password == "rosh-v1"
        with pytest.raises(vault.VaultUnavailable, match="unreachable"):
            await client.kv_current_version("secret", f"{prefix}/mtn")


# --- secrets stay secret ------------------------------------------------------------


async def test_secrets_never_in_logs_or_reprs(bao_fresh: BaoServer, tmp_path: Path,  # noqa: F811
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = unique()
    passwords = ["Pw1secrt", "Pw2secrt", "Pw3secrt"]
    for password in passwords[:2]:
        put(bao_fresh, f"{prefix}/roshan", system_id="smppd-roshan", password=password)
    role_id, secret_file = setup_approle(bao_fresh, "smppd", prefix, tmp_path)
    secret_id = secret_file.read_text().strip()
    client = vault.VaultClient(bao_fresh.addr, vault.AppRoleAuth(role_id, secret_file))
    texts: list[str] = []
    try:
        await client.login()
        token = client._hvac.token
        store = store_for(client, prefix, "roshan", "mtn")
        await store.poll()
        put(bao_fresh, f"{prefix}/roshan", system_id="smppd-roshan", password=passwords[2])
        await store.poll()
        creds = store.current("roshan")
        assert creds is not None
        texts += [repr(creds), str(creds), repr(store), repr(client), repr(client.auth),
                  str(store.statuses())]
        await store.fall_back("roshan")
        bao_fresh.stop()
        await store.poll()
        for call in (store.refresh("roshan"), client.login()):
            try:
                await call
            except vault.VaultError as exc:
                texts.append(str(exc))
                texts.append(repr(exc))
        texts.append(str(store.statuses()))
    finally:
        await client.close()
    texts.append(caplog.text)
    texts += [str(r.__dict__) for r in caplog.records]
    everything = "\n".join(texts)
    assert "smppd-roshan" in everything  # the test does see the records
    for secret in [*passwords, secret_id, token, bao_fresh.root_token]:
        assert secret not in everything
