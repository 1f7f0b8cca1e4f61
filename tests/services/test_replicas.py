"""Several replicas: two `smppd run` processes on one PostgreSQL, one Redis and one
simulated MNO account.

- Both active: one TPS budget (the GCRA bucket in Redis) across both processes; the
  simulator's per-second counters never pass the account's TPS and it never has to
  throttle.
- Active/standby: the binds follow the leader lease; kill -9 the active one and the
  standby holds the binds within the lease time plus one reconnect, never more
  binds than the account's quota (the simulator's ALYBND count stays 0). The leader
  sends what the standby accepted, and the new leader sends what the dead one had
  queued: every message reaches a final state without a restart.

The leader lease itself (token checks, fencing, stepping down) is tested against the
same Redis. PostgreSQL and Redis come from SMPPD_TEST_PG_DSN / SMPPD_TEST_REDIS_URL;
if either is down the tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e
import pytest
import redis.asyncio as aioredis
from deps_chaos import stored
from servers import REDIS_URL, daemon_key_prefix, fresh_database  # noqa: F401 (the prefix fixture)

from correlation.migrate import migrate
from correlation.store import FINAL_STATES
from simulators.server import SmscSimulator
from smppd.cluster.leader import LeaderLease, Standby

# --------------------------------------------------------------------------- processes


class Replica(e2e.DaemonProcess):
    """One `smppd run` subprocess with its own state directory and API port."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        port = e2e.free_port()
        path = e2e.write_config(directory, api_port=port, **config)
        super().__init__(path, port, directory / "smppd.log")
        self.port = port
        self.path = path


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database("smppd_replicas") as url:
        await migrate(url)
        yield url


def config(sim: SmscSimulator, dsn: str, prefix: str, *, redis: dict[str, Any],
           **op_keys: Any) -> dict[str, Any]:
    """A daemon config (write_config's arguments): PostgreSQL store, Redis, one
    operator on the simulator."""
    return {"operators": [e2e.operator("op", sim, **op_keys)],
            "store": {"kind": "postgres", "dsn": dsn},
            "redis": {"url": REDIS_URL, "key_prefix": prefix, **redis}}


async def states(dsn: str, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` smpp.messages holds in each state."""
    return dict(collections.Counter((await stored(dsn, ids)).values()))


async def wait_states(dsn: str, ids: list[str], done: Callable[[dict[str, int]], bool],
                      timeout: float, interval: float, what: str,
                      more: Callable[[], str] = lambda: "") -> dict[str, int]:
    """Polls ``states(dsn, ids)`` until ``done`` holds of them; returns them. A timeout
    names ``what`` and the last counts (then ``more()``)."""
    found: dict[str, int] = {}

    async def reached() -> bool:
        found.clear()
        found.update(await states(dsn, ids))
        return done(found)

    await e2e.wait_for(reached, timeout, interval=interval,
                       what=lambda: f"{what}: {found}{more()}")
    return found


def delivered(count: int) -> Callable[[dict[str, int]], bool]:
    return lambda found: found.get("DELIVERED", 0) == count


def final(count: int) -> Callable[[dict[str, int]], bool]:
    return lambda found: sum(n for state, n in found.items() if state in FINAL_STATES) == count


# --------------------------------------------------------------------------- both active


async def test_two_processes_share_one_tps_budget(
        tmp_path: Path, processes: list[Replica], dsn: str, prefix: str) -> None:
    tps, total = 200, 1000
    async with e2e.running_sim([e2e.mno("op", tps=tps, max_binds=4, receipt_delay_ms=20)]) as sim:
        text = config(sim, dsn, prefix, redis={"replicas": 2}, binds=1, window=20, tps=tps)
        for name in ("a", "b"):
            replica = Replica(tmp_path / name, text)
            processes.append(replica)
            await replica.start()
        await e2e.wait_for(lambda: sim.mno("op").bound_count == 2, what="one bind per replica")

        started = time.monotonic()
        halves = await asyncio.gather(processes[0].post_bulk(e2e.numbered(0, total // 2)),
                                      processes[1].post_bulk(e2e.numbered(total // 2, total // 2)))
        ids = [i for half in halves for i in half]
        assert len(set(ids)) == total
        await wait_states(dsn, ids, delivered(total), 20.0, 0.25, "every message DELIVERED",
                          more=lambda: f", simulator {sim.mno('op').counters.to_dict()['totals']}")
        elapsed = time.monotonic() - started

        counters = sim.mno("op").counters
        account = counters.per_account[e2e.SYSTEM_ID]
        per_second = account.accepted
        print(f"\n{total} messages over two replicas in {elapsed:.2f}s; "
              f"per-second counts {sorted(per_second.values(), reverse=True)[:6]}; "
              f"throttled {counters.throttled}")
        assert max(per_second.values()) <= tps, per_second
        assert counters.throttled == 0 and not account.throttled
        assert counters.accepted >= total  # redelivery is allowed, loss is not
        # Both binds (one per replica) sent: the budget was shared, not taken by one.
        by_conn = collections.Counter(e["conn"] for e in sim.mno("op").recorder.entries(
            "submit_sm"))
        assert len(by_conn) == 2 and min(by_conn.values()) > total // 10, by_conn
        for replica in processes:
            assert await replica.terminate() == 0, replica.log.read_text()


# --------------------------------------------------------------------------- active/standby


async def test_standby_takes_over_after_kill_9(
        tmp_path: Path, processes: list[Replica], dsn: str, prefix: str) -> None:
    binds, lease = 2, 2.0
    async with e2e.running_sim([e2e.mno("op", tps=500, max_binds=binds)]) as sim:
        text = config(sim, dsn, prefix, redis={"standby": True, "lease_time": lease},
                      binds=binds, tps=200)
        first, second = Replica(tmp_path / "a", text), Replica(tmp_path / "b", text)
        processes.extend([first, second])
        await first.start()  # /readyz: it leads, its binds are up
        await second.start(ready="/healthz")

        peak = 0
        stop = asyncio.Event()

        async def watch() -> None:  # the quota at every moment, not only at the end
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, sim.mno("op").bound_count)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.sleep(lease)  # a full lease: the standby kept polling, never bound
            assert sim.mno("op").bound_count == binds
            await first.kill()
            killed = time.monotonic()
            await e2e.wait_for(lambda: sim.mno("op").bound_count == 0, what="the kernel closes")
            await e2e.wait_for(lambda: sim.mno("op").bound_count == binds, lease * 3,
                               interval=0.005, what="the standby's binds")
            takeover = time.monotonic() - killed
            # Messages flow through the new leader.
            ids = await second.post_bulk(e2e.numbered(0, 50))
            await wait_states(dsn, ids, delivered(len(ids)), 10.0, 0.2, "DELIVERED")
        finally:
            stop.set()
            await watcher
        counters = sim.mno("op").counters
        print(f"\ntakeover {takeover:.2f}s after kill -9 (lease {lease}s); peak binds {peak}; "
              f"ALYBND {counters.alybnd_refusals}")
        # Lease time + one poll period + one reconnect.
        assert takeover <= lease + lease / 3 + 1.0
        assert counters.alybnd_refusals == 0
        assert peak <= binds
        assert await second.terminate() == 0, second.log.read_text()


async def test_the_leader_sends_what_a_standby_accepted_and_a_dead_leader_queued(
        tmp_path: Path, processes: list[Replica], dsn: str, prefix: str) -> None:
    binds, window = 2, 10
    async with e2e.running_sim([e2e.mno("op", tps=500, max_binds=binds)]) as sim:
        text = config(sim, dsn, prefix, binds=binds, window=window, tps=200,
                      redis={"standby": True, "lease_time": 1.0, "sweep_interval": 0.3,
                             "sweep_grace": 0.3})
        leader, standby = Replica(tmp_path / "a", text), Replica(tmp_path / "b", text)
        processes.extend([leader, standby])
        await leader.start()  # /readyz: it leads, its binds are up
        await standby.start(ready="/healthz")
        # A standby took these commands: the leader sends them (its sweep).
        early = await standby.post_bulk(e2e.numbered(0, 20))
        found = await wait_states(dsn, early, final(len(early)), 15.0, 0.1,
                                  "the standby's messages final")
        assert found == {"DELIVERED": 20}

        # The leader holds its queue (paused), then dies with it; the standby took more.
        async with aiohttp.ClientSession() as http, http.post(
                f"{leader.url}/v1/operators/op/pause") as resp:
            assert resp.status == 200, await resp.text()
        queued = (await leader.post_bulk(e2e.numbered(100, 50))
                  + await standby.post_bulk(e2e.numbered(200, 50)))
        await leader.kill()
        found = await wait_states(dsn, queued, final(len(queued)), 30.0, 0.2,
                                  "every queued message final after the takeover")
        assert found == {"DELIVERED": 100}
        counters = sim.mno("op").counters
        assert counters.alybnd_refusals == 0
        # At-least-once: a paused bind may have had one part in hand; never more than
        # its windows again.
        assert 120 <= counters.accepted <= 120 + binds * window
        assert await standby.terminate() == 0, standby.log.read_text()


# --------------------------------------------------------------------------- the lease


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    conn = aioredis.from_url(REDIS_URL, socket_timeout=1.0)
    yield conn
    await conn.aclose()


async def test_lease_is_owned_by_its_token(client: Any, prefix: str) -> None:
    key = f"{prefix}:leader:op"
    mine, theirs = LeaderLease(client, key, 2.0), LeaderLease(client, key, 2.0)
    assert await mine.acquire()
    assert not await theirs.acquire()  # NX: one owner
    assert not await theirs.renew() and not await theirs.release()  # the token is checked
    assert await mine.renew() and await mine.held() and not await theirs.held()
    assert await mine.release()
    assert await theirs.acquire() and not await mine.held()


async def test_standby_steps_down_when_the_lease_is_lost(client: Any, prefix: str) -> None:
    key = f"{prefix}:leader:op"
    lease = LeaderLease(client, key, 3.0)
    events: list[Any] = []

    async def stop(budget: float) -> None:
        events.append(round(budget, 1))

    standby = Standby(lease, "op", lambda: events.append("start"), stop)
    await standby.tick()
    assert standby.leader and events == ["start"] and await standby.may_bind()
    await standby.tick()  # renewed
    assert standby.leader and events == ["start"]
    await client.set(key, "someone-else")  # e.g. it expired during a pause and was taken
    await standby.tick()
    assert not standby.leader and not await standby.may_bind()
    assert events == ["start", 0.0]  # someone else owns it: unbind at once, no drain
    await standby.tick()  # the other owner holds it: stay standby
    assert not standby.leader and len(events) == 2


async def test_unreachable_redis_means_standby(prefix: str) -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        stops: list[float] = []

        async def stop(budget: float) -> None:
            stops.append(budget)

        standby = Standby(LeaderLease(dead, f"{prefix}:leader:op", 2.0), "op",
                          lambda: pytest.fail("bound without a lease"), stop)
        await standby.tick()
        assert not standby.leader and not await standby.may_bind()
        standby.leader = True  # as if Redis went away after a takeover
        await standby.tick()
        assert not standby.leader and stops == [0.0]
    finally:
        await dead.aclose()

