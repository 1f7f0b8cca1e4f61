"""SqliteStore throughput: python bench/bench_store.py [messages] [concurrency]

Runs accept + record_submitted + lookup_part + record_receipt for every message,
first as phases (per-op cost; receipts once one by one, once in batches of 100 as
the daemon records them), then pipelined (each message its own flow). Reports wall
time and the event loop thread's CPU time per message: the loop is what the rest of
the daemon shares, the writer thread runs beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from correlation.sqlite_store import SqliteStore
from correlation.store import DELIVERED, MessageRecord

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


class TimedStore(SqliteStore):
    """Counts the writer thread's CPU time and batches."""

    writer_cpu = 0.0
    batches = 0

    def _run_batch(
        self, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    ) -> list[tuple[bool, Any]]:
        start = time.thread_time()
        try:
            return super()._run_batch(ops)
        finally:
            TimedStore.writer_cpu += time.thread_time() - start
            TimedStore.batches += 1


def record(i: int, now: float) -> MessageRecord:
    return MessageRecord(
        message_id=f"msg-{i:08d}",
        tenant_id="tenant-1",
        source="Acme",
        destination=f"9379{i:07d}",
        data_coding=0,
        body=b"Your verification code is 123456",
        created_at=now,
        updated_at=now,
        operator_id="roshan",
    )


async def run_all(
    n: int, concurrency: int, step: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """Run step(i) for i in range(n), ``concurrency`` at a time; (wall s, loop CPU s)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    TimedStore.writer_cpu, TimedStore.batches = 0.0, 0
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            await step(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.thread_time() - cpu


def report(label: str, n: int, wall: float, cpu: float) -> None:
    print(
        f"{label:<28} {n / wall:>10,.0f}/s  wall {wall / n * 1e6:6.1f} us"
        f"  loop CPU {cpu / n * 1e6:6.1f} us  writer CPU {TimedStore.writer_cpu / n * 1e6:6.1f} us"
        f"  ({TimedStore.batches} batches)"
    )


@contextlib.asynccontextmanager
async def timed_store(path: str) -> AsyncIterator[TimedStore]:
    store = TimedStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# One message's way through the store, a step at a time: step(store, now, i).
async def accept(store: TimedStore, now: float, i: int) -> None:
    await store.accept([record(i, now)])


async def submitted(store: TimedStore, now: float, i: int) -> None:
    await store.record_submitted(f"msg-{i:08d}", 1, 1, "roshan", f"{i:X}", f"{i:x}", now)


async def receipt(store: TimedStore, now: float, i: int) -> None:
    ref = await store.lookup_part("roshan", f"{i:x}")
    assert ref is not None
    state = await store.record_receipt(ref.message_id, 1, DELIVERED, "DELIVRD", "000", now)
    assert state == DELIVERED


STEPS = (("accept", accept), ("record_submitted", submitted), ("receipt", receipt))


async def phases(path: str, n: int, concurrency: int) -> None:
    async with timed_store(path) as store:
        now = time.time()
        for label, step in STEPS:
            wall, cpu = await run_all(n, concurrency, functools.partial(step, store, now))
            report(label, n, wall, cpu)
        await receipts_in_batches(store, n, concurrency, now + 1.0)


async def receipts_in_batches(store: TimedStore, n: int, concurrency: int,
                              now: float) -> None:
    """Receipts as the daemon handles them: a batch of deliver_sm at a time (100, the
    simulator's window), one lookup_parts and one record_receipts per batch."""
    batch = 100

    async def receipts(b: int) -> None:
        first = b * batch
        keys = [[f"{i:x}"] for i in range(first, min(n, first + batch))]
        refs = await store.lookup_parts("roshan", keys)
        rows = [(ref.message_id, ref.part, ref.total, DELIVERED, "DELIVRD", "000", now)
                for ref in refs if ref is not None]
        states = await store.record_receipts(rows)
        assert states == [DELIVERED] * len(keys)

    wall, cpu = await run_all((n + batch - 1) // batch, max(1, concurrency // batch), receipts)
    report(f"receipts, {batch} per batch", n, wall, cpu)


async def pipelined(path: str, n: int, concurrency: int) -> None:
    async with timed_store(path) as store:
        now = time.time()

        async def flow(i: int) -> None:
            for _, step in STEPS:
                await step(store, now, i)

        wall, cpu = await run_all(n, concurrency, flow)
        report("pipelined, per message", n, wall, cpu)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    run = uvloop.run if uvloop is not None else asyncio.run
    print(f"{n:,} messages, {concurrency} in flight, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        run(phases(os.path.join(tmp, "phases.sqlite"), n, concurrency))
        run(pipelined(os.path.join(tmp, "pipelined.sqlite"), n, concurrency))


if __name__ == "__main__":
    main()
