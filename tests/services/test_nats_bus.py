"""The daemon over real NATS JetStream (127.0.0.1:4222): commands in, receipts out.

Each test gets its own stream names and subjects, so runs never see each other.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import e2e_helpers as e2e
import pytest
from servers import NATS_URL, command, jetstream

from simulators.server import SmscSimulator
from smppd.cluster.nats_bus import DISPATCH_SCHEMA, InvalidCommand, parse_command
from smppd.runtime.daemon import Daemon


@pytest.fixture
def names() -> dict[str, str]:
    return e2e.nats_names()


@pytest.fixture
async def js(names: dict[str, str]):
    async with jetstream(names) as js:
        yield js


@contextlib.asynccontextmanager
async def nats_daemon(tmp_path: Path, names: dict[str, str], *, shadow: bool = False,
                      max_queued: int | None = None,
                      ) -> AsyncIterator[tuple[SmscSimulator, Daemon]]:
    """The simulator and the daemon taking its commands from NATS for operator alpha."""
    nats: dict[str, Any] = {"url": NATS_URL, **names}
    if max_queued is not None:
        nats["max_queued"] = max_queued
    async with e2e.running_sim([e2e.mno("alpha")]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("alpha", sim, prefix="9370")],
                                daemon={"shadow": True} if shadow else {}, nats=nats)
        async with e2e.running_daemon(path) as daemon:
            yield sim, daemon


async def dlr_events(js: Any, names: dict[str, str], count: int) -> list[dict[str, Any]]:
    sub = await js.pull_subscribe(names["dlr_subject"], stream=names["dlr_stream"])
    events: list[dict[str, Any]] = []

    async def got_all() -> bool:
        with contextlib.suppress(Exception):  # nats TimeoutError: nothing new yet
            for msg in await sub.fetch(count, timeout=0.2):
                events.append(json.loads(msg.data))
                await msg.ack()
        return len(events) >= count

    await e2e.wait_for(got_all, timeout=10.0, what=f"{count} DLR events")
    return events


async def test_command_is_sent_and_its_receipt_published(tmp_path, names, js):
    async with nats_daemon(tmp_path, names) as (_, daemon):
        subject = f"{names['dispatch_subject']}.alpha"
        await js.publish(subject, command("m-1"))
        events = await dlr_events(js, names, 1)
        assert events[0]["message_id"] == "m-1"
        assert events[0]["state"] == "DELIVERED" and events[0]["schema"] == "smppd.dlr.v1"
        stored = await daemon.store.get_message("m-1")
        assert stored["state"] == "DELIVERED" and stored["operator_id"] == "alpha"
        info = await js.consumer_info(names["dispatch_stream"], names["consumer"])
        assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_redelivered_command_is_sent_once(tmp_path, names, js):
    async with nats_daemon(tmp_path, names) as (sim, daemon):
        subject = f"{names['dispatch_subject']}.alpha"
        for _ in range(3):  # the orchestrator retried: same message id each time
            await js.publish(subject, command("m-dup"))
        await e2e.wait_for(lambda: daemon.store.get_message("m-dup"), what="stored")
        await dlr_events(js, names, 1)
        assert len(e2e.submits(sim, "alpha")) == 1


async def test_invalid_commands_are_terminated_with_a_reason(tmp_path, names, js):
    async with nats_daemon(tmp_path, names) as (sim, _):
        invalid = await js.subscribe(names["invalid_subject"], stream=names["dispatch_stream"])
        subject = f"{names['dispatch_subject']}.alpha"
        await js.publish(subject, b"{not json")
        await js.publish(
            subject, json.dumps({"schema": DISPATCH_SCHEMA, "message": {"tenant_id": "t"}}).encode()
        )
        await js.publish(subject, command("m-bad", destination="12"))
        reasons = []
        for _ in range(3):
            msg = await invalid.next_msg(timeout=5.0)
            reasons.append(json.loads(msg.data))
        fields = [r["errors"][0]["field"] for r in reasons]
        assert sorted(fields) == ["body", "message.destination", "message.message_id"]

        async def all_terminated() -> bool:  # each reason is published before its term
            info = await js.consumer_info(names["dispatch_stream"], names["consumer"])
            return bool(info.num_ack_pending == 0)

        await e2e.wait_for(all_terminated, what="every invalid command terminated")
        info = await js.consumer_info(names["dispatch_stream"], names["consumer"])
        assert info.num_redelivered == 0
        assert e2e.submits(sim, "alpha") == []


async def test_intake_pauses_while_the_queue_is_full(tmp_path, names, js):
    async with nats_daemon(tmp_path, names, max_queued=5) as (sim, daemon):
        op = daemon.operators["alpha"]
        op.pause_gate.close()  # the MNO takes nothing: the queue fills
        subject = f"{names['dispatch_subject']}.alpha"
        for i in range(600):
            await js.publish(subject, command(f"m-{i}"))
        await e2e.wait_for(lambda: daemon.bus.paused, what="intake paused")

        async def waiting_in_stream() -> int:
            info = await js.consumer_info(names["dispatch_stream"], names["consumer"])
            return int(info.num_pending)

        # At most the batches fetched before the pause are queued; the rest waits.
        assert len(op.queue) < 600
        assert await waiting_in_stream() > 0
        op.pause_gate.open()
        await dlr_events(js, names, 600)
        assert len(e2e.submits(sim, "alpha")) == 600
        # The intake looks at the queues every ROOM_POLL: it takes commands again.
        await e2e.wait_for(lambda: daemon.bus.paused is False, what="intake running again")


async def test_shadow_mode_correlates_but_publishes_nothing(tmp_path, names, js):
    async with nats_daemon(tmp_path, names, shadow=True) as (_, daemon):
        await js.publish(f"{names['dispatch_subject']}.alpha", command("m-shadow"))

        async def delivered() -> bool:
            found = await daemon.store.get_message("m-shadow")
            return found is not None and found["state"] == "DELIVERED"

        await e2e.wait_for(delivered, timeout=10.0, what="receipt matched in shadow mode")
        assert daemon.bus is not None and daemon.bus.suppressed >= 1
        info = await js.stream_info(names["dlr_stream"])
        assert info.state.messages == 0


@pytest.mark.parametrize(
    ("data", "subject", "field"),
    [
        (b"[]", "p.alpha", "body"),
        (json.dumps({"schema": "v0", "message": {}}).encode(), "p.alpha", "schema"),
        (command("x", operator_id="beta"), "p.alpha", "message.operator_id"),
        (command("x"), "p.a.b", "subject"),
    ],
)
def test_parse_command_names_the_bad_field(data, subject, field):
    with pytest.raises(InvalidCommand) as info:
        parse_command(data, subject, "p")
    assert info.value.problems[0][0] == field


def test_parse_command_takes_the_operator_from_the_subject():
    body = parse_command(command("x"), "p.alpha", "p")
    assert body["operator_id"] == "alpha" and body["message_id"] == "x"
