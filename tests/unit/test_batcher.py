"""Batcher: items arriving one at a time, handled in batches by a few tasks."""

from __future__ import annotations

import asyncio

from smppd.intake.batcher import Batcher


async def test_items_arriving_during_a_batch_form_the_next_batch() -> None:
    batches: list[list[int]] = []
    gates: list[asyncio.Future[None]] = []

    async def handle(batch: list[int]) -> None:
        batches.append(batch)
        gate = asyncio.get_running_loop().create_future()
        gates.append(gate)
        await gate

    tasks: list[asyncio.Task[None]] = []
    batcher = Batcher(handle, workers=2, spawn=lambda c: tasks.append(asyncio.ensure_future(c))
                      or tasks[-1])
    for i in range(3):
        batcher.add(i)  # one task spawned; it takes all three
    assert len(tasks) == 1
    await asyncio.sleep(0)
    assert batches == [[0, 1, 2]]
    batcher.add(3)
    batcher.add(4)  # the first task is busy: a second one takes these
    await asyncio.sleep(0)
    assert batches == [[0, 1, 2], [3, 4]] and len(tasks) == 2
    batcher.add(5)  # both busy and at the limit: waits for a free one
    await asyncio.sleep(0)
    assert len(tasks) == 2 and len(batcher) == 1
    gates[0].set_result(None)
    await asyncio.sleep(0)
    assert batches[-1] == [5]  # the freed task took it
    for gate in gates[1:]:
        gate.set_result(None)
    await asyncio.gather(*tasks)
    assert len(batcher) == 0


async def test_shutdown_does_not_wait_forever_for_a_held_receipt() -> None:
    """A deliver_sm whose receipt is held waits for a submit that may never come; at
    shutdown settle() gives up on it after its timeout (the SMSC redelivers)."""
    from smppd.intake.dispatch import Dispatcher
    from smppd.intake.events import ShadowSink
    from smppd.metrics import Metrics

    dispatcher = Dispatcher(None, None, ShadowSink(), Metrics())
    never = asyncio.Event()
    finished = dispatcher._spawn(asyncio.sleep(0))
    held = dispatcher._spawn(never.wait())
    await dispatcher.settle(timeout=0.05)
    assert finished.done() and not finished.cancelled()
    assert held.cancelled()
