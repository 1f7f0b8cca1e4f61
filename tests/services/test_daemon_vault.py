"""The daemon with credentials in a real OpenBao: rotation under load, Vault down."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import e2e_helpers as e2e
from vault_fixtures import BaoServer, bao_fresh, setup_approle  # noqa: F401

OLD, NEW = "pw-one", "pw-two"


def write_kv(server: BaoServer, path: str, password: str) -> None:
    server.root().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"system_id": e2e.SYSTEM_ID, "password": password}, mount_point="secret")


def write_config(tmp_path: Path, sim, server: BaoServer, prefix: str,
                 poll_interval: float = 0.2) -> Path:
    role_id, secret_file = setup_approle(server, f"smppd-{prefix}", prefix, tmp_path)
    table = e2e.operator("alpha", sim, prefix="9370", binds=2, window=20)
    del table["password"]
    table["credentials"] = "vault"
    return e2e.write_config(tmp_path, [table], vault={
        "addr": server.addr, "auth": "approle", "role_id": role_id,
        "secret_id_file": str(secret_file), "path_template": f"{prefix}/{{operator_id}}",
        "poll_interval": poll_interval})


async def test_rotation_under_load_loses_nothing(tmp_path, bao_fresh):  # noqa: F811
    prefix = f"t{uuid.uuid4().hex[:8]}"
    write_kv(bao_fresh, f"{prefix}/alpha", OLD)
    async with e2e.running_sim([e2e.mno("alpha", tps=2000)]) as sim:
        sim.mno("alpha").set_passwords(e2e.SYSTEM_ID, [OLD])
        async with e2e.running_daemon(write_config(tmp_path, sim, bao_fresh, prefix)) as daemon:
            await e2e.wait_bound(daemon)
            assert daemon.vault is not None
            ids: list[str] = []

            async def load() -> None:
                for _ in range(40):  # ~800 messages over the rotation
                    ids.extend(await e2e.submit(daemon, 20, prefix="9370"))
                    await asyncio.sleep(0.01)

            sender = asyncio.ensure_future(load())
            # The rotation job's order: the SMSC accepts both, then Vault gets v2.
            sim.mno("alpha").set_passwords(e2e.SYSTEM_ID, [OLD, NEW])
            write_kv(bao_fresh, f"{prefix}/alpha", NEW)
            await e2e.wait_for(lambda: daemon.vault.rotations >= 1, timeout=10.0,
                               what="rotation seen")
            await sender
            await e2e.wait_bound(daemon)
            finals = await e2e.wait_final(daemon, ids, timeout=20.0)
            states = {m["state"] for m in finals.values()}
            assert states == {"DELIVERED"}, states
            assert daemon.vault.failed_rotations == 0
            assert daemon.vault.store.version("alpha") == 2
            # Retire the old password at the SMSC: binds made now must use the new one.
            sim.mno("alpha").set_passwords(e2e.SYSTEM_ID, [NEW])
            op = daemon.operators["alpha"]
            assert await op.rebind(timeout=10.0)
            assert op.bound_count == 2


async def test_vault_down_keeps_binds_and_reconnects_with_cached_credentials(
        tmp_path, bao_fresh):  # noqa: F811
    prefix = f"t{uuid.uuid4().hex[:8]}"
    write_kv(bao_fresh, f"{prefix}/alpha", OLD)
    async with e2e.running_sim([e2e.mno("alpha")]) as sim:
        sim.mno("alpha").set_passwords(e2e.SYSTEM_ID, [OLD])
        async with e2e.running_daemon(write_config(tmp_path, sim, bao_fresh, prefix)) as daemon:
            await e2e.wait_bound(daemon)
            bao_fresh.stop()
            op = daemon.operators["alpha"]
            # Reconnects after Vault is gone still bind, with the last good credentials.
            assert await op.rebind(timeout=10.0)
            ids = await e2e.submit(daemon, 20, prefix="9370")
            finals = await e2e.wait_final(daemon, ids)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
            await e2e.wait_for(lambda: daemon.vault.store.vault_reachable is False, timeout=5.0,
                               what="vault seen unreachable")
            assert "unreachable" in daemon.vault.status("alpha").lower() or \
                "vault" in daemon.vault.status("alpha").lower()


async def test_credentials_reload_endpoint_picks_up_a_new_version_now(
        tmp_path, bao_fresh):  # noqa: F811
    prefix = f"t{uuid.uuid4().hex[:8]}"
    write_kv(bao_fresh, f"{prefix}/alpha", OLD)
    async with e2e.running_sim([e2e.mno("alpha")]) as sim:
        sim.mno("alpha").set_passwords(e2e.SYSTEM_ID, [OLD, NEW])
        path = write_config(tmp_path, sim, bao_fresh, prefix, poll_interval=3600)
        async with e2e.running_daemon(path) as daemon, aiohttp.ClientSession() as http:
            await e2e.wait_bound(daemon)
            write_kv(bao_fresh, f"{prefix}/alpha", NEW)
            url = f"http://127.0.0.1:{daemon.api_port}/v1/operators"
            async with http.post(f"{url}/alpha/credentials/reload") as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            assert body["binds_up"] == 2
            assert daemon.vault is not None and daemon.vault.store.version("alpha") == 2
            assert daemon.vault.rotations == 1
            async with http.post(f"{url}/nobody/credentials/reload") as resp:
                assert resp.status == 404
