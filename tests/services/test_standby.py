"""Active/standby inside one process:

- the lease holder sends its operator's ACCEPTED messages that it does not hold
  (accepted by a standby, or left by a dead leader), once past a grace period, and
  never a part that already has an SMSC id; a standby keeps nothing queued;
- operators added and removed by a config reload follow their leader lease like
  the start-up ones.

The two-process kill -9 test is in test_replicas.py. Redis and PostgreSQL come from
SMPPD_TEST_REDIS_URL / SMPPD_TEST_PG_DSN; if either is down the tests fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import FakeClock
from e2e_helpers import mno, open_sqlite, operator, running_sim, wait_for, write_config
from records import message
from servers import REDIS_URL, daemon_key_prefix, fresh_database  # noqa: F401 (the prefix fixture)

from correlation.pg_store import PgStore
from correlation.sqlite_store import SqliteStore
from simulators.server import SmscSimulator
from smppd.cluster.leader import BacklogSweep, LeaderLease, OperatorLead, Standby
from smppd.config import Config, OperatorConfig, load_config
from smppd.intake.dispatch import Dispatcher
from smppd.intake.events import ShadowSink
from smppd.link.operator import Operator
from smppd.metrics import Metrics
from smppd.runtime.daemon import Daemon

LEASE = 1.0


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    conn = aioredis.from_url(REDIS_URL, socket_timeout=1.0)
    yield conn
    await conn.aclose()


def standby_config(directory: Path, sim: SmscSimulator, prefix: str, names: list[str]) -> Path:
    """An embedded daemon with active/standby binds on Redis for ``names``."""
    return write_config(directory, [operator(n, sim, prefix=f"93{i}")
                                    for i, n in enumerate(names)],
                        redis={"url": REDIS_URL, "key_prefix": prefix, "standby": True,
                               "lease_time": LEASE})


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
            beta = daemon.parts.fleet.standbys["beta"]
            await wait_for(lambda: sim.mno("beta").bound_count == 1, 3 * LEASE,
                           what="beta bound under its lease")
            assert beta.leader and daemon.operators["beta"].bound_count == 1
            assert await lease_owner(client, prefix, "beta") == beta.lease.token

            standby_config(tmp_path, sim, prefix, ["alpha"])
            result = await daemon.reloader.reload()
            assert result.ok and result.plan.removed == ["beta"]
            assert "beta" not in daemon.parts.fleet.standbys and not beta.leader
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
            standby = daemon.parts.fleet.standbys["alpha"]
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


# --------------------------------------------------------------------------- the store


@pytest.fixture(params=["sqlite", "pg"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        async with open_sqlite(tmp_path / "smppd.sqlite") as sqlite:
            yield sqlite
        return
    async with fresh_database("smppd_standby") as dsn:
        opened = PgStore(dsn)
        await opened.open()
        yield opened
        await opened.close()


async def test_accepted_ids_of_one_operator_oldest_first(store: Any) -> None:
    def on(op_id: str, message_id: str, at: float) -> Any:
        return replace(message(message_id, at), operator_id=op_id)

    await store.accept([on("op", "m3", 3.0), on("op", "m1", 1.0), on("other", "x", 1.5),
                        on("op", "m2", 2.0), on("op", "m4", 4.0), on("op", "m0", 0.5)])
    await store.record_submitted("m0", 1, 1, "op", "s0", "s0", 5.0)  # SUBMITTED: not listed
    assert await store.accepted_ids("op", 3.5, 10) == [("m1", 1.0), ("m2", 2.0), ("m3", 3.0)]
    assert await store.accepted_ids("op", 3.5, 2) == [("m1", 1.0), ("m2", 2.0)]
    assert await store.accepted_ids("op", 1.0, 10) == []  # strictly before
    assert await store.accepted_ids("other", 9.0, 10) == [("x", 1.5)]


# --------------------------------------------------------------------------- the sweep

GRACE = 2.0
LONG = "x" * 200  # two parts


def op_config() -> OperatorConfig:
    return Config.model_validate({"operators": [{
        "id": "op", "hosts": ["127.0.0.1:1"], "system_id": "esme", "password": "secret",
        "prefixes": ["93"]}]}).operators[0]


class Replica:
    """One replica's dispatcher and operator over a shared store; nothing binds."""

    def __init__(self, store: Any, clock: FakeClock) -> None:
        self.store = store
        self.dispatcher = Dispatcher(store, None, ShadowSink(), Metrics(), clock=clock)
        self.op = Operator(op_config(), self.dispatcher, password=lambda: "secret")
        self.op.track_queued(clock)
        self.dispatcher.operators = {"op": self.op}
        self.sweep = BacklogSweep(self.op, store, self.dispatcher.queue_stored,
                                  interval=3.0, grace=GRACE, clock=clock)

    async def accept(self, text: str = "hello") -> str:
        body = {"tenant_id": "t1", "source": "SMPPD", "destination": "+93700000001",
                "text": text}
        accepted = await self.dispatcher.accept([self.dispatcher.prepare(body)])
        return accepted[0].message_id

    def queued(self) -> list[tuple[str, int]]:
        parts = self.op.queue.drain()
        for part in parts:
            self.op.queue.put(part)
        return [(part.message_id, part.part) for part in parts]


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with open_sqlite(tmp_path / "smppd.sqlite") as opened:
        yield opened


async def test_leader_sweeps_what_a_peer_accepted_once_past_the_grace(
        sqlite: SqliteStore, clock: FakeClock) -> None:
    leader, standby = Replica(sqlite, clock), Replica(sqlite, clock)
    mine = await leader.accept()
    theirs = await standby.accept()
    assert standby.op.drop_queue() == 1  # a standby keeps nothing: the row stays ACCEPTED
    assert not standby.op.holds(theirs)

    assert await leader.sweep.sweep() == 0  # younger than the grace: may be mid-accept
    clock.advance(GRACE + 0.1)
    assert await leader.sweep.sweep() == 1
    assert leader.queued() == [(mine, 1), (theirs, 1)]  # the leader's own not twice
    assert await leader.sweep.sweep() == 0  # held now
    assert leader.queued() == [(mine, 1), (theirs, 1)]


async def test_leader_resends_only_the_parts_without_an_smsc_id(
        sqlite: SqliteStore, clock: FakeClock) -> None:
    dead, leader = Replica(sqlite, clock), Replica(sqlite, clock)
    message_id = await dead.accept(LONG)
    assert dead.queued() == [(message_id, 1), (message_id, 2)]
    # The old leader sent part 1 and recorded its SMSC id, then died (kill -9).
    await sqlite.record_submitted(message_id, 1, 2, "op", "smsc-1", "smsc-1", clock())
    clock.advance(GRACE + 0.1)
    assert await leader.sweep.sweep() == 1
    assert leader.queued() == [(message_id, 2)]


async def test_finished_messages_are_forgotten_and_dropped_ones_swept_again(
        sqlite: SqliteStore, clock: FakeClock) -> None:
    leader = Replica(sqlite, clock)
    done, waiting = await leader.accept(), await leader.accept()
    await sqlite.record_submitted(done, 1, 1, "op", "smsc-1", "smsc-1", clock())
    assert leader.op.holds(done) and leader.op.holds(waiting)
    clock.advance(GRACE + 0.1)
    assert await leader.sweep.sweep() == 0
    assert not leader.op.holds(done)  # SUBMITTED: nothing to send, nothing to remember
    assert leader.op.holds(waiting) and leader.op.queued_ids is not None
    assert list(leader.op.queued_ids) == [waiting]

    assert leader.op.drop_queue() == 2  # the lease was lost, then taken back
    assert await leader.sweep.sweep() == 1
    assert leader.queued() == [(waiting, 1)]


async def test_a_full_page_forgets_only_what_it_could_list(
        sqlite: SqliteStore, clock: FakeClock) -> None:
    leader = Replica(sqlite, clock)
    leader.sweep.limit = 1
    first = await leader.accept()
    clock.advance(1.0)
    later = await leader.accept()
    await sqlite.record_submitted(later, 1, 1, "op", "smsc-1", "smsc-1", clock())
    clock.advance(GRACE + 0.1)
    assert await leader.sweep.sweep() == 0  # lists only `first`, still ACCEPTED
    # `later` is done, but was created after the page's last row: not known, kept.
    assert leader.op.holds(first) and leader.op.holds(later)


async def test_standby_drops_its_queue_and_the_new_leader_sweeps_at_once(
        sqlite: SqliteStore, clock: FakeClock, prefix: str, client: Any) -> None:
    peer, me = Replica(sqlite, clock), Replica(sqlite, clock)
    key = f"{prefix}:leader:op"
    await client.set(key, "peer", px=60_000)  # the peer leads
    never = asyncio.Event()

    async def forever(_: float) -> None:
        await never.wait()  # one sweep per test step, no timer

    lead = OperatorLead(me.op, me.sweep, sleep=forever)
    standby = Standby(LeaderLease(client, key, 3.0), "op", lead.start, lead.stop,
                      idle=lead.idle, sleep=forever)
    at_peer = await peer.accept()
    at_me = await me.accept()  # a standby took this command
    await standby.tick()
    assert not standby.leader and me.queued() == []  # dropped: the rows stay ACCEPTED

    clock.advance(GRACE + 0.1)
    await client.delete(key)  # the peer died and its lease expired
    await standby.tick()
    assert standby.leader
    await wait_for(lambda: len(me.op.queue) == 2, what="the takeover sweep")
    assert sorted(me.queued()) == sorted([(at_peer, 1), (at_me, 1)])
    await standby.close()  # steps down: binds down, queue dropped, lease released
    assert me.queued() == [] and await client.get(key) is None
