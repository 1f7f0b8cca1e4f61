"""Active/standby over NATS JetStream: an operator's dispatch commands reach the
replica holding its leader lease, through the operator's own durable consumer
``{consumer}-{operatorId}``; the shared consumer ``{consumer}`` stays on every
replica for what no operator consumer covers (unknown operators, commands from
before the operator's consumer existed).

Real NATS (127.0.0.1:4222), Redis and PostgreSQL; each test has its own streams,
Redis prefix and database. Replicas run in this process (their counters are read
directly) except for the kill -9 test, which runs two ``smppd run`` processes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from servers import (
    NATS_URL,
    REDIS_URL,
    command,
    daemon_key_prefix,  # noqa: F401 (the prefix fixture)
    fresh_database,
    jetstream,
)
from test_replicas import delivered, wait_states
from test_standby import Replica as StoreReplica

from correlation.migrate import migrate
from simulators.server import SmscSimulator
from smppd.cluster.leader import OperatorLead
from smppd.config import load_config
from smppd.runtime.daemon import Daemon

LEASE = 1.0


@pytest.fixture
def names() -> dict[str, str]:
    return e2e.nats_names()


@pytest.fixture
async def js(names: dict[str, str]) -> AsyncIterator[Any]:
    async with jetstream(names) as js:
        yield js


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database("smppd_nats_standby") as url:
        await migrate(url)
        yield url


def replica_config(directory: Path, sim: SmscSimulator, names: dict[str, str], *,
                   operators: list[str], prefix: str | None, dsn: str | None = None,
                   api_port: int = 0, ack_wait: float = 30.0, **op_keys: Any) -> Path:
    """A daemon TOML: active/standby on Redis when ``prefix`` is given (else
    active/active), PostgreSQL when ``dsn`` is given (else SQLite), NATS intake."""
    tables: dict[str, dict[str, Any]] = {
        "nats": {"url": NATS_URL, "ack_wait": ack_wait, **names}}
    if dsn is not None:
        tables["store"] = {"kind": "postgres", "dsn": dsn}
    if prefix is not None:
        tables["redis"] = {"url": REDIS_URL, "key_prefix": prefix, "standby": True,
                           "lease_time": LEASE, "sweep_interval": 0.3, "sweep_grace": 0.3}
    ops = [e2e.operator(op_id, sim, prefix=f"937{index}", **op_keys)
           for index, op_id in enumerate(operators)]
    return e2e.write_config(directory, ops, api_port=api_port, **tables)


async def started(path: Path) -> Daemon:
    daemon = Daemon(load_config(path))
    await daemon.start()
    return daemon


async def consumer(js: Any, names: dict[str, str], durable: str) -> Any:
    return await js.consumer_info(names["dispatch_stream"], durable)


async def settled(js: Any, names: dict[str, str], durable: str) -> bool:
    """Every command the consumer holds was delivered and acked (or terminated)."""
    info = await consumer(js, names, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


class Reasons:
    """What smppd published on the invalid subject."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    @classmethod
    async def watch(cls, js: Any, names: dict[str, str]) -> Reasons:
        return cls(await js.subscribe(names["invalid_subject"], stream=names["dispatch_stream"]))

    async def next(self) -> dict[str, Any]:
        msg = await self.sub.next_msg(timeout=5.0)
        found: dict[str, Any] = json.loads(msg.data)
        return found


async def publish(js: Any, subject: str, ids: list[str], *, destination: str) -> list[int]:
    acks = await asyncio.gather(*(js.publish(subject, command(i, destination=destination))
                                  for i in ids))
    return [ack.seq for ack in acks]


# --------------------------------------------------------------------------- two replicas


async def test_only_the_leader_takes_an_operators_commands(
        tmp_path: Path, names: dict[str, str], js: Any, prefix: str, dsn: str) -> None:
    count = 300
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        def replica(name: str) -> Path:
            return replica_config(tmp_path / name, sim, names, operators=["op"],
                                  prefix=prefix, dsn=dsn)

        leader = await started(replica("a"))
        standby: Daemon | None = None
        try:
            await e2e.wait_for(lambda: leader.parts.fleet.standbys["op"].leader, 3 * LEASE,
                               what="a leads")
            standby = await started(replica("b"))
            reasons = await Reasons.watch(js, names)
            durable = f"{names['consumer']}-op"
            subject = f"{names['dispatch_subject']}.op"
            ids = [f"c-{i}" for i in range(count)]
            await publish(js, subject, ids, destination="+93700000001")
            await js.publish(subject, b"{not json")
            await js.publish(f"{names['dispatch_subject']}.ghost", command("g-1"))

            await wait_states(dsn, ids, delivered(count), 20.0, 0.1, "DELIVERED")
            got = sorted([await reasons.next(), await reasons.next()], key=lambda r: r["subject"])
            assert [(r["subject"], r["errors"][0]["field"]) for r in got] == [
                (f"{names['dispatch_subject']}.ghost", "message.operator_id"),
                (subject, "body")]
            for name in (durable, names["consumer"]):
                await e2e.wait_for(lambda n=name: settled(js, names, n), what=f"{name} settled")

            # The leader stored every command; the standby none, and never ran the
            # operator's consumer.
            assert leader.bus is not None and standby.bus is not None
            assert leader.bus.stored == {durable: count}
            assert sum(standby.bus.stored.values()) == 0 and durable not in standby.bus.intakes
            # Each command delivered once to the operator's consumer; the shared one
            # acked every one of them unread and terminated the unknown operator's.
            info = await consumer(js, names, durable)
            assert info.delivered.consumer_seq == count + 1 and info.num_redelivered == 0
            assert leader.bus.skipped + standby.bus.skipped == count + 1
            assert leader.bus.invalid + standby.bus.invalid == 2
            assert len(e2e.submits(sim, "op")) == count

            # A clean stop hands the lease, and the consumer, to the other replica.
            await leader.stop()
            await e2e.wait_for(
                lambda: standby is not None and standby.parts.fleet.standbys["op"].leader,
                3 * LEASE, what="b leads")
            later = [f"d-{i}" for i in range(50)]
            await publish(js, subject, later, destination="+93700000001")
            await wait_states(dsn, later, delivered(len(later)), 15.0, 0.1,
                              "the later commands DELIVERED")
            assert standby.bus.stored == {durable: len(later)}
            assert leader.bus.stored == {durable: count}
        finally:
            await leader.stop()
            if standby is not None:
                await standby.stop()


async def test_after_kill_9_the_new_leader_takes_the_consumer(
        tmp_path: Path, names: dict[str, str], js: Any, prefix: str, dsn: str) -> None:
    binds, window, batch = 2, 10, 50
    async with e2e.running_sim([e2e.mno("op", max_binds=binds)]) as sim:
        processes: list[e2e.DaemonProcess] = []
        try:
            for name in ("a", "b"):
                port = e2e.free_port()
                path = replica_config(tmp_path / name, sim, names, operators=["op"],
                                      prefix=prefix, dsn=dsn, api_port=port, ack_wait=2.0,
                                      binds=binds, window=window)
                processes.append(e2e.DaemonProcess(path, port, tmp_path / name / "smppd.log"))
            first, second = processes
            await first.start()  # /readyz: it leads, its binds are up
            await second.start(ready="/healthz")
            durable = f"{names['consumer']}-op"
            subject = f"{names['dispatch_subject']}.op"

            sent = [f"a-{i}" for i in range(batch)]
            await publish(js, subject, sent, destination="+93700000001")
            await wait_states(dsn, sent, delivered(len(sent)), 15.0, 0.1,
                              "the first batch DELIVERED")

            # The leader stores and acks the next batch but holds it (paused), then dies.
            async with aiohttp.ClientSession() as http, http.post(
                    f"{first.url}/v1/operators/op/pause") as resp:
                assert resp.status == 200, await resp.text()
            held = [f"b-{i}" for i in range(batch)]
            await publish(js, subject, held, destination="+93700000001")

            # (a paused bind may have had one part in hand: any state counts)
            await wait_states(dsn, held, lambda found: sum(found.values()) == batch, 10.0, 0.1,
                              "the held batch stored")
            await e2e.wait_for(lambda: settled(js, names, durable), what="the held batch acked")
            before = second.log.read_text()
            await first.kill()  # (JetStream skips the fetch it left: nobody listens)
            # Published while nobody leads: they wait in the operator's consumer.
            waiting = [f"c-{i}" for i in range(batch)]
            await publish(js, subject, waiting, destination="+93700000001")

            everything = sent + held + waiting

            await wait_states(dsn, everything, delivered(len(everything)), 30.0, 0.2,
                              "DELIVERED")
            await e2e.wait_for(lambda: settled(js, names, durable), what="the consumer settled")
            info = await consumer(js, names, durable)
            # Each command reached the operator's consumer once: no redelivery.
            assert info.delivered.consumer_seq == 3 * batch and info.num_redelivered == 0
            # The standby took no command before it led: one intake (the shared
            # consumer) then, a second one (the operator's) once it took over.
            assert before.count("taking dispatch commands") == 1, before
            assert second.log.read_text().count("taking dispatch commands") == 2
            counters = sim.mno("op").counters
            assert counters.alybnd_refusals == 0
            # At-least-once: the dead leader's windows at most are sent again.
            assert 3 * batch <= counters.accepted <= 3 * batch + binds * window
            assert await second.terminate() == 0, second.log.read_text()
        finally:
            for process in processes:
                await process.kill()


# --------------------------------------------------------------------------- one replica


async def test_reload_gives_an_added_operator_a_consumer_and_retires_a_removed_ones(
        tmp_path: Path, names: dict[str, str], js: Any, prefix: str) -> None:
    async with e2e.running_sim([e2e.mno("alpha"), e2e.mno("beta")]) as sim:
        def configure(operators: list[str]) -> Path:
            return replica_config(tmp_path, sim, names, operators=operators, prefix=prefix)

        daemon = await started(configure(["alpha"]))
        try:
            assert daemon.bus is not None
            bus = daemon.bus
            reasons = await Reasons.watch(js, names)
            beta = f"{names['dispatch_subject']}.beta"
            durable = f"{names['consumer']}-beta"
            # Before beta is configured its commands are refused, and stay refused.
            [early] = await publish(js, beta, ["early"], destination="+93710000001")
            refused = await reasons.next()
            assert refused["subject"] == beta and refused["stream_sequence"] == early

            configure(["alpha", "beta"])
            assert (await daemon.reloader.reload()).ok
            assert bus.covered["beta"] > early  # starts after the refused command
            await e2e.wait_for(lambda: sim.mno("beta").bound_count == 1, 3 * LEASE,
                               what="beta bound under its lease")
            await publish(js, beta, ["late"], destination="+93710000001")
            await e2e.wait_for(lambda: len(e2e.submits(sim, "beta")) == 1, what="late sent")
            await e2e.wait_for(lambda: settled(js, names, durable), what="late acked")
            assert bus.stored[durable] == 1

            # Commands left in beta's consumer when it is removed are refused too.
            await bus.stop_operator("beta")
            [left] = await publish(js, beta, ["left"], destination="+93710000001")
            configure(["alpha"])
            assert (await daemon.reloader.reload()).ok
            refused = await reasons.next()
            assert refused["stream_sequence"] == left
            assert refused["errors"][0]["field"] == "message.operator_id"
            with pytest.raises(NotFoundError):
                await consumer(js, names, durable)
            assert "beta" not in bus.covered and durable not in bus.intakes
            # And from then on the shared consumer refuses beta's commands.
            [after] = await publish(js, beta, ["after"], destination="+93710000001")
            assert (await reasons.next())["stream_sequence"] == after
            await e2e.wait_for(lambda: settled(js, names, names["consumer"]), what="shared settled")
            assert len(e2e.submits(sim, "beta")) == 1
        finally:
            await daemon.stop()


async def test_shared_consumer_takes_what_it_had_before_the_operator_consumer(
        tmp_path: Path, names: dict[str, str], js: Any, prefix: str) -> None:
    """Switching to active/standby: a command the shared consumer delivered (to a
    replica that died without acking it) is older than the operator's consumer, so
    the shared consumer takes it on redelivery; newer ones go to the operator's."""
    async with e2e.running_sim([e2e.mno("alpha")]) as sim:
        path = replica_config(tmp_path, sim, names, operators=["alpha"], prefix=prefix)
        subject = f"{names['dispatch_subject']}.alpha"
        await js.add_stream(name=names["dispatch_stream"],
                            subjects=[f"{names['dispatch_subject']}.*", names["invalid_subject"]])
        await js.add_consumer(names["dispatch_stream"], ConsumerConfig(
            name=names["consumer"], durable_name=names["consumer"], ack_wait=1.0,
            ack_policy=AckPolicy.EXPLICIT, filter_subject=f"{names['dispatch_subject']}.*"))
        [old] = await publish(js, subject, ["old"], destination="+93700000001")
        dead = await js.pull_subscribe_bind(durable=names["consumer"],
                                            stream=names["dispatch_stream"])
        assert [m.metadata.sequence.stream for m in await dead.fetch(1, timeout=2.0)] == [old]
        await dead.unsubscribe()  # never acked

        daemon = await started(path)
        try:
            assert daemon.bus is not None
            assert daemon.bus.covered["alpha"] == old + 1
            await publish(js, subject, ["new"], destination="+93700000001")
            await e2e.wait_for(lambda: len(e2e.submits(sim, "alpha")) == 2, 10.0,
                               what="old (redelivered after ack_wait) and new sent")
            assert daemon.bus.stored == {names["consumer"]: 1, f"{names['consumer']}-alpha": 1}
            for message_id in ("old", "new"):
                assert (await daemon.store.get_message(message_id))["operator_id"] == "alpha"
        finally:
            await daemon.stop()


async def test_active_active_drains_and_deletes_an_operator_consumer_left_behind(
        tmp_path: Path, names: dict[str, str], js: Any) -> None:
    """Back from active/standby: a command the shared consumer acked unread but the
    operator's consumer never delivered is taken, and that consumer deleted."""
    async with e2e.running_sim([e2e.mno("alpha")]) as sim:
        path = replica_config(tmp_path, sim, names, operators=["alpha"], prefix=None)
        subject = f"{names['dispatch_subject']}.alpha"
        durable = f"{names['consumer']}-alpha"
        await js.add_stream(name=names["dispatch_stream"],
                            subjects=[f"{names['dispatch_subject']}.*", names["invalid_subject"]])
        for name, filter_subject in ((names["consumer"], f"{names['dispatch_subject']}.*"),
                                     (durable, subject)):
            await js.add_consumer(names["dispatch_stream"], ConsumerConfig(
                name=name, durable_name=name, ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL, filter_subject=filter_subject))
        await publish(js, subject, ["left"], destination="+93700000001")
        shared = await js.pull_subscribe_bind(durable=names["consumer"],
                                              stream=names["dispatch_stream"])
        for msg in await shared.fetch(1, timeout=2.0):
            await msg.ack_sync()  # the shared consumer left it to the operator's
        await shared.unsubscribe()

        daemon = await started(path)
        try:
            await e2e.wait_for(lambda: len(e2e.submits(sim, "alpha")) == 1, what="left sent")
            with pytest.raises(NotFoundError):
                await consumer(js, names, durable)
            assert daemon.bus is not None and daemon.bus.stored == {durable: 1}
        finally:
            await daemon.stop()


# --------------------------------------------------------------------------- the lead


class FakeIntake:
    """Its stop queues one more message, as a batch in hand when the lease is lost."""

    def __init__(self, replica: StoreReplica) -> None:
        self.replica = replica
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        await self.replica.accept()
        self.events.append("stop")


async def test_losing_the_lease_stops_the_intake_then_drops_its_last_batch(
        tmp_path: Path, clock: Any) -> None:
    async with e2e.open_sqlite(tmp_path / "smppd.sqlite") as store:
        replica = StoreReplica(store, clock)
        intake = FakeIntake(replica)
        lead = OperatorLead(replica.op, replica.sweep, intake=intake)
        lead.start()
        assert intake.events == ["start"]
        await lead.stop(0.5)
        assert intake.events == ["start", "stop"]
        assert replica.queued() == []  # the row stays ACCEPTED for the next leader
        assert len(await store.accepted_ids("op", clock() + 1, 10)) == 1
