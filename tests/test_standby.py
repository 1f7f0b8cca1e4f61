"""Active/standby inside one daemon: operators added and removed by a config reload
follow their leader lease like the start-up ones.

Redis comes from SMPPD_TEST_REDIS_URL; if it is down the tests fail, they never skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from e2e_helpers import mno, operator, running_sim, wait_for, write_config
from test_store_contract import REDIS_URL, redis_prefix

from simulators.server import SmscSimulator
from smppd.config import load_config
from smppd.daemon import Daemon

pytestmark = pytest.mark.services
LEASE = 1.0


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async for value in redis_prefix():
        yield value.rstrip(":")


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    conn = aioredis.from_url(REDIS_URL, socket_timeout=1.0)
    yield conn
    await conn.aclose()


def standby_config(directory: Path, sim: SmscSimulator, prefix: str, names: list[str]) -> Path:
    """An embedded daemon with active/standby binds on Redis for ``names``."""
    path = write_config(directory, [operator(n, sim, prefix=f"93{i}") for i, n in
                                    enumerate(names)])
    redis = (f"[redis]\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{prefix}\"\n"
             f"standby = true\nlease_time = {LEASE}\n")
    path.write_text(path.read_text() + redis)
    return path


async def lease_owner(client: Any, prefix: str, op_id: str) -> str | None:
    value = await client.get(f"{prefix}:leader:{op_id}")
    return value.decode() if value is not None else None


async def test_reload_added_operator_takes_its_lease_and_removed_one_releases_it(
        tmp_path: Path, prefix: str, client: Any) -> None:
    async with running_sim([mno("alpha"), mno("beta")]) as sim:
        path = standby_config(tmp_path, sim, prefix, ["alpha"])
        daemon = Daemon(load_config(path))
        await daemon.start()
        try:
            await wait_for(lambda: sim.mno("alpha").bound_count == 1, what="alpha bound")
            standby_config(tmp_path, sim, prefix, ["alpha", "beta"])
            assert (await daemon.reloader.reload()).ok
            beta = daemon.standbys["beta"]
            await wait_for(lambda: sim.mno("beta").bound_count == 1, 3 * LEASE,
                           what="beta bound under its lease")
            assert beta.leader and daemon.operators["beta"].bound_count == 1
            assert await lease_owner(client, prefix, "beta") == beta.lease.token

            standby_config(tmp_path, sim, prefix, ["alpha"])
            result = await daemon.reloader.reload()
            assert result.ok and result.plan.removed == ["beta"]
            assert "beta" not in daemon.standbys and not beta.leader
            assert await lease_owner(client, prefix, "beta") is None  # released, not left to expire
            assert sim.mno("beta").bound_count == 0
            await wait_for(lambda: sim.mno("alpha").bound_count == 1, what="alpha untouched")
        finally:
            await daemon.stop()


async def test_reload_on_a_standby_starts_no_bind_until_it_leads(
        tmp_path: Path, prefix: str, client: Any) -> None:
    async with running_sim([mno("alpha", max_binds=2)]) as sim:
        key = f"{prefix}:leader:alpha"
        await client.set(key, "peer", px=60_000)  # a peer leads alpha
        path = standby_config(tmp_path, sim, prefix, ["alpha"])
        daemon = Daemon(load_config(path))
        await daemon.start()
        try:
            standby = daemon.standbys["alpha"]
            text = path.read_text()
            # Two binds and a new host order: a bind count change and a rebind.
            port = sim.port_of("alpha")
            path.write_text(text.replace("binds = 1", "binds = 2").replace(
                f'hosts = ["127.0.0.1:{port}"]', f'hosts = ["localhost:{port}"]'))
            result = await daemon.reloader.reload()  # returns without waiting for binds
            assert result.ok and result.plan.rebind == {"alpha": ["hosts"]}
            op = daemon.operators["alpha"]
            assert [b.state for b in op.binds] == ["idle", "idle"]  # none started
            assert not standby.leader and sim.mno("alpha").bound_count == 0

            await client.delete(key)  # the peer is gone: this replica takes over
            await wait_for(lambda: sim.mno("alpha").bound_count == 2, 3 * LEASE,
                           what="both binds under the lease")
            assert standby.leader and op.bound_count == 2
            assert sim.mno("alpha").counters.alybnd_refusals == 0
        finally:
            await daemon.stop()
