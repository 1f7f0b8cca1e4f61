"""Embedded mode: an operator's queue holds at most ``queue_limit`` parts; what is
accepted beyond waits (durable in SQLite, encoded in a spill file) and is queued,
oldest first, as the queue drains; after a restart the backlog comes from SQLite.

First the dispatcher over a real SqliteStore with an operator whose binds never
start (a test takes the parts off its queue as a bind would), then the daemon
against the SMSC simulator, in process and as a process killed with -9.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import e2e_helpers as e2e
import pytest

from correlation.sqlite_store import SqliteStore
from correlation.store import ACCEPTED, FAILED, MessageRecord
from smppd.config import Config, load_config
from smppd.intake.dispatch import Dispatcher
from smppd.intake.events import StoredEvents
from smppd.link.operator import Operator
from smppd.link.parts import OutboundPart
from smppd.link.spill import SpillFile
from smppd.metrics import Metrics
from smppd.runtime.daemon import Daemon

THREE_PARTS = "Long enough to need three segments of a GSM text. " * 7  # 357 characters


class Intake:
    """A dispatcher and one operator (no binds running) over a SQLite file."""

    def __init__(self, path: Path, limit: int, clock: Callable[[], float] | None = None) -> None:
        self.config = Config.model_validate({"operators": [{
            "id": "op", "prefixes": ["9370"], "hosts": ["127.0.0.1:1"], "system_id": "esme",
            "password": "pw", "queue_limit": limit}]})
        self.store = SqliteStore(str(path))
        kwargs = {"clock": clock} if clock is not None else {}
        self.dispatcher = Dispatcher(self.store, None, StoredEvents(self.store), Metrics(),
                                     **kwargs)
        self.op = Operator(self.config.operators[0], self.dispatcher, password=lambda: "pw")
        self.dispatcher.operators = {"op": self.op}
        self.peak = 0
        self.sent = 0
        put = self.op.queue.put

        def counted(part: OutboundPart) -> None:  # the queue's length at its fullest
            put(part)
            self.peak = max(self.peak, len(self.op.queue))

        self.op.queue.put = counted  # type: ignore[method-assign]

    async def accept(self, ids: list[str], text: str = "hello") -> None:
        """One accept batch (as one API call or one NATS fetch)."""
        await self.dispatcher.accept([self.dispatcher.prepare({
            "message_id": i, "tenant_id": "t1", "source": "SMPPD",
            "destination": f"+9370{n:07d}", "text": text}) for n, i in enumerate(ids)])

    async def accept_batches(self, prefix: str, batches: int, size: int) -> list[str]:
        """``batches`` accept batches of ``size`` messages (``{prefix}{batch}-{n:03d}``),
        the queue within its limit after each; the ids in the order accepted."""
        accepted: list[str] = []
        for batch in range(batches):
            ids = names(f"{prefix}{batch}-", size)
            await self.accept(ids)
            accepted += ids
            assert len(self.op.queue) <= self.config.operators[0].queue_limit
        return accepted

    async def take(self, count: int | None = None) -> list[tuple[str, int]]:
        """Take up to ``count`` parts (all, if None) as the binds would, letting the
        refills they start run whenever the queue is empty."""
        taken: list[tuple[str, int]] = []
        while count is None or len(taken) < count:
            part = self.op.queue.get_nowait()
            if part is None:
                await self.dispatcher.settle()
                part = self.op.queue.get_nowait()
                if part is None:
                    break
            taken.append((part.message_id, part.part))
        return taken

    async def submitted(self, parts: list[tuple[str, int]], total: int = 1) -> None:
        """The SMSC answered these parts (their SMSC ids are recorded)."""
        await self.store.record_submitted_many([
            (message_id, part, total, "op", f"S{self.sent + n}", f"s{self.sent + n}", 1.0)
            for n, (message_id, part) in enumerate(parts)])
        self.sent += len(parts)


@pytest.fixture
async def intakes(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Intake] = []

    async def open_intake(limit: int, clock: Callable[[], float] | None = None) -> Intake:
        intake = Intake(tmp_path / "smppd.sqlite", limit, clock)
        await intake.store.open()
        opened.append(intake)
        return intake

    yield open_intake
    for intake in opened:
        await intake.dispatcher.settle()
        await intake.store.close()


def names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(start, start + count)]


async def test_queue_stays_within_its_limit_and_each_message_goes_once_in_order(
        intakes: Callable[..., Any]) -> None:
    intake = await intakes(5)
    accepted = await intake.accept_batches("b", 8, 3)
    assert intake.op.spilled
    taken = await intake.take()
    assert [message_id for message_id, _ in taken] == accepted
    assert intake.peak <= 5
    assert not intake.op.spilled  # caught up: the next accepts queue at once
    await intake.accept(["late"])
    assert len(intake.op.queue) == 1


async def test_accepts_while_the_queue_drains_keep_their_order(
        intakes: Callable[..., Any]) -> None:
    intake = await intakes(5)
    accepted: list[str] = []
    taken: list[tuple[str, int]] = []
    for round_ in range(6):
        accepted += await intake.accept_batches(f"r{round_}b", 3, 2)
        taken += await intake.take(4)  # fewer than accepted: a backlog builds up
    taken += await intake.take()
    assert [message_id for message_id, _ in taken] == accepted
    assert intake.peak <= 5


async def test_parts_count_against_the_limit_and_a_big_message_goes_alone(
        intakes: Callable[..., Any]) -> None:
    intake = await intakes(4)
    for message_id in ("m1", "m2", "m3"):
        await intake.accept([message_id], THREE_PARTS)
    assert len(intake.op.queue) == 3  # m2 would make 6 parts: it waits in the store
    taken = await intake.take()
    assert taken == [(m, p) for m in ("m1", "m2", "m3") for p in (1, 2, 3)]
    assert intake.peak <= 4

    small = await intakes(2)  # three parts never fit: sent when the queue is empty
    await small.accept(["a"])
    await small.accept(["big"], THREE_PARTS)
    await small.accept(["b"])
    assert [m for m, _ in await small.take()] == ["a", "big", "big", "big", "b"]


async def test_restart_resumes_a_spilled_backlog_a_queue_at_a_time(
        intakes: Callable[..., Any]) -> None:
    first = await intakes(5)
    accepted = await first.accept_batches("b", 4, 5)
    sent = await first.take(3)
    await first.submitted(sent)
    await first.dispatcher.settle()
    await first.store.close()  # as after a kill -9: every accept and submit committed

    second = await intakes(5)
    assert await second.dispatcher.resume_pending() == 5
    assert len(second.op.queue) == 5 and second.op.spilled
    await second.accept(["new-1", "new-2"])  # they wait behind the stored backlog
    rest = await second.take(4)
    await second.accept(["new-3"])
    rest += await second.take()
    assert [message_id for message_id, _ in rest] == [*accepted[3:], "new-1", "new-2", "new-3"]
    assert second.peak <= 5
    assert not second.op.spilled


async def test_restart_sends_only_the_parts_not_sent_yet(intakes: Callable[..., Any]) -> None:
    first = await intakes(10)
    await first.accept(["m1"], THREE_PARTS)
    await first.submitted([("m1", 1), ("m1", 3)], total=3)
    await first.store.close()

    second = await intakes(10)
    assert await second.dispatcher.resume_pending() == 1
    assert await second.take() == [("m1", 2)]


async def test_restart_fails_the_backlog_of_an_operator_no_longer_configured(
        intakes: Callable[..., Any]) -> None:
    first = await intakes(5)
    await first.store.accept([MessageRecord(
        message_id=f"g{i}", tenant_id="t1", source="SMPPD", destination="93700000001",
        data_coding=0, body=b"hi", operator_id="gone", created_at=1.0 + i, updated_at=1.0)
        for i in range(3)])
    await first.accept(["mine"])
    await first.store.close()

    intake = await intakes(5)
    assert await intake.dispatcher.resume_pending() == 1
    assert await intake.take() == [("mine", 1)]
    for i in range(3):
        stored = await intake.store.get_message(f"g{i}")
        assert stored is not None
        assert (stored["state"], stored["reason"]) == (FAILED, "operator no longer configured")
    stored = await intake.store.get_message("mine")
    assert stored is not None and stored["state"] == ACCEPTED


async def test_accept_times_increase_even_when_the_clock_does_not(
        intakes: Callable[..., Any]) -> None:
    intake = await intakes(1, clock=lambda: 500.0)  # every batch past the first spills
    for batch in range(4):
        await intake.accept(names(f"b{batch}-", 2))
    times = []
    for batch in range(4):
        stored = await intake.store.get_message(f"b{batch}-000")
        assert stored is not None
        times.append(stored["created_at"])
    assert times == sorted(set(times)) and times[0] == 500.0
    taken = await intake.take()
    assert [m for m, _ in taken] == [f"b{b}-{i:03d}" for b in range(4) for i in range(2)]


# -- the daemon against the simulator ---------------------------------------------------


def destinations(count: int) -> list[str]:
    return [f"9370{i:07d}" for i in range(count)]


async def test_daemon_sends_a_spilled_backlog_once_and_in_order(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", tps=5000)]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, prefix="9370", tps=5000,
                                                        window=10, queue_limit=5)])
        daemon = Daemon(load_config(path))
        op = daemon.operators["op"]
        op.pause_gate.close()
        await daemon.start()
        try:
            for first in range(0, 60, 7):
                await daemon.submit(e2e.numbered(first, min(7, 60 - first)), None)
                assert len(op.queue) <= 5
            op.pause_gate.open()
            await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 60, 10.0, what="60 submits")
        finally:
            await daemon.stop()
        sent = [entry["destination_addr"] for entry in e2e.submits(sim, "op")]
        assert sent == destinations(60)  # one bind: exactly the accept order, each once


async def test_kill_9_with_a_spilled_backlog_then_restart_sends_each_once(
        tmp_path: Path, processes: e2e.Processes) -> None:
    smsc_port, api_port = e2e.free_port(), e2e.free_port()
    # The SMSC is down while the first daemon accepts: nothing is sent before the kill.
    path = e2e.write_config(tmp_path, [e2e.operator("op", [f"127.0.0.1:{smsc_port}"], prefix="9370",
                                                    tps=5000, window=10, queue_limit=10)],
                            api_port=api_port)
    first = await processes.start(path, api_port, ready="/healthz")
    await first.post_bulk(e2e.numbered(0, 150))  # 202: durable, 140 of them in SQLite only
    await first.kill()

    async with e2e.running_sim([e2e.mno("op", tps=5000, port=smsc_port)]) as sim:
        second = await processes.start(path, api_port)
        await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 150, 15.0, what="150 submits")
        await second.terminate()
        counts = collections.Counter(e["destination_addr"] for e in e2e.submits(sim, "op"))
    assert counts == collections.Counter(destinations(150))  # each exactly once


# -- the spill file ---------------------------------------------------------------------


def frame(size: int) -> bytes:
    """A stand-in submit_sm: its first four bytes are its length."""
    return size.to_bytes(4, "big") + b"x" * (size - 4)


def fields(parts: list[OutboundPart]) -> list[tuple[str, int, int, bytes]]:
    return [(p.message_id, p.part, p.total, p.frame) for p in parts]


def test_spill_file_gives_parts_back_in_order_and_empties(tmp_path: Path) -> None:
    spill = SpillFile(str(tmp_path))
    # ~360 KB: more than one read, records across the boundary between two
    parts = [OutboundPart(f"msg-{i}-é", i % 3 + 1, 3, frame(90 + i % 17)) for i in range(3000)]
    late = OutboundPart("late", 1, 1, frame(4))
    spill.append(parts[:1000])
    spill.append(parts[1000:])
    assert len(spill) == 3000
    back = spill.take(1)
    back += spill.take(1800)
    spill.append([late])
    back += spill.take(5000)
    assert fields(back) == fields([*parts, late])
    assert len(spill) == 0 and spill.take(10) == []
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing left on disk
    spill.append(parts[:2])  # emptied, and used again from the start
    assert fields(spill.take(10)) == fields(parts[:2])
    spill.close()
