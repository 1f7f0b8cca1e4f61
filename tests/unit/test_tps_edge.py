"""TPS at the edge (issue 13.5): no one-second window, sliding, above the limit as
the SMSC counts the submits, i.e. when they reach the wire.

Time is virtual: the event loop's clock moves only when the loop would wait (to
its next timer) or when a test callback says some work took that long. The wire
records the loop's clock when a submit_sm is written to the transport.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
import struct
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, max_in_window
from e2e_helpers import operator, write_config

from smppd.config import ConfigError, OperatorConfig, load_config
from smppd.link.connection import SmppConnection
from smppd.link.operator import Operator
from smppd.link.parts import OutboundPart
from smppd.protocol.constants import CommandId
from smppd.protocol.pdu import BindTransceiver, BindTransceiverResp, SubmitSm, encode
from smppd.protocol.session import Role, Session
from throttling import TokenBucket
from throttling.redis_bucket import RedisTokenBucket

TPS = 50
SENDS = 600
_HEADER = struct.Struct(">II")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose waits take no real time: waiting for the next timer
    moves its clock there at once. ``spend`` is work that took time."""

    def __init__(self) -> None:
        self.now = 1000.0
        selector = _JumpingSelector(self)
        super().__init__(selector)

    def time(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout > 0:
            self._loop.spend(timeout)
        return super().select(0)


def run_virtual(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class BusyLoop:
    """The operator's bucket, and after some grants another callback (a burst of
    responses decoded, a store commit) that runs before the loop's next turn and
    takes up to 20 ms: what a busy event loop does between a grant and a write
    left for the end of the loop iteration."""

    def __init__(self, bucket: TokenBucket, loop: VirtualTimeLoop, seed: int) -> None:
        self.bucket = bucket
        self.loop = loop
        self.rng = random.Random(seed)

    def _maybe_busy(self) -> None:
        if self.rng.random() < 0.3:
            lag = self.rng.uniform(0.0, 0.02)
            self.loop.call_soon(self.loop.spend, lag)

    async def acquire(self) -> None:
        await self.bucket.acquire()
        self._maybe_busy()

    def try_acquire(self) -> float:
        wait = self.bucket.try_acquire()
        if wait == 0.0:
            self._maybe_busy()
        return wait

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bucket, name)


class Wire(asyncio.Transport):
    """The SMSC's end: when each submit_sm was written, on the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop, count: int) -> None:
        super().__init__()
        self.loop = loop
        self.count = count
        self.submits: list[float] = []
        self.full = asyncio.Event()
        self._buffer = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        while len(self._buffer) >= 8:
            length, command_id = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < length:
                break
            del self._buffer[:length]
            if command_id == CommandId.SUBMIT_SM:
                self.submits.append(self.loop.time())
                if len(self.submits) >= self.count:
                    self.full.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Events:
    def submit_answered(self, *args: Any) -> None: ...

    def submit_unknown(self, *args: Any) -> None: ...

    def deliver_received(self, *args: Any) -> None: ...

    def bind_changed(self, *args: Any) -> None: ...


def operator_config(tmp_path: Path, **keys: Any) -> OperatorConfig:
    path = write_config(tmp_path, [operator("op", ["127.0.0.1:1"], tps=TPS, window=SENDS,
                                            **keys)])
    return load_config(path).operators[0]


def bound_connection(op: Operator, wire: Wire) -> SmppConnection:
    """The operator's first bind on a session bound through the wire."""
    bind = op.binds[0]
    session = Session(Role.ESME, window_size=SENDS, response_timeout=3600.0,
                      enquire_link_interval=3600.0)
    conn = SmppConnection(session, bind, asyncio.get_running_loop())
    conn.connection_made(wire)
    conn.send(BindTransceiver(system_id="esme", password="secret"))
    resp = BindTransceiverResp(system_id="SMSC")
    resp.sequence_number = 1
    conn.data_received(encode(resp))
    assert session.state.bound
    bind.conn = conn
    return conn


def test_no_sliding_second_above_the_limit_where_the_smsc_counts(tmp_path: Path) -> None:
    cfg = operator_config(tmp_path)

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        # the bucket an operator makes from its config (tps_margin 0.02 by default)
        bucket = TokenBucket(cfg.tps, headroom=cfg.tps_margin, clock=loop.time)
        op = Operator(cfg, Events(), password=lambda: "secret",
                      limiter=BusyLoop(bucket, loop, seed=13), clock=loop.time)
        for i in range(SENDS):
            frame = encode(SubmitSm(source_addr="SMPPD", destination_addr=f"9370{i:07d}",
                                    short_message=b"hello"))
            op.enqueue(OutboundPart(f"m{i}", 1, 1, frame))
        wire = Wire(loop, SENDS)
        conn = bound_connection(op, wire)
        sender = asyncio.ensure_future(op.binds[0]._send_loop(conn))
        try:
            await asyncio.wait_for(wire.full.wait(), 120.0)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return wire.submits

    sent = run_virtual(scenario())
    assert len(sent) == SENDS
    # On the wire: never more than the pace with the default margin, floor(50 * 0.98).
    assert max_in_window(sent) <= math.floor(TPS * 0.98)
    # As an SMSC sees them after up to 15 ms of network and reading jitter each: still
    # never more than the limit in any second (the margin absorbs ~20 ms at 50 TPS).
    rng = random.Random(5)
    arrivals = [t + rng.uniform(0.0, 0.015) for t in sent]
    assert max_in_window(arrivals) <= TPS
    assert sent[-1] - sent[0] < SENDS / (TPS * 0.98) * 1.2  # and it kept up the pace


def test_an_operator_paces_with_the_configured_margin(tmp_path: Path) -> None:
    for margin, per_second in ((None, 49), (0.1, 45), (0.0, 50)):
        keys = {} if margin is None else {"tps_margin": margin}
        op = Operator(operator_config(tmp_path, **keys), Events(), password=lambda: "x")
        assert op.bucket.interval == pytest.approx(1 / per_second)
        op.set_tps_margin(0.2)  # a reload changing it applies in place
        assert op.bucket.interval == pytest.approx(1 / 40)


class FakeRedis:
    """The GCRA reservation script of ``RedisTokenBucket`` on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tat = 0

    def register_script(self, source: str) -> Any:
        async def reserve(keys: list[str], args: list[int]) -> list[int]:
            now = int(self.clock.now * 1_000_000)
            interval, wanted = int(args[0]), int(args[1])
            first = max(self.tat, now)
            self.tat = first + wanted * interval
            return [first, wanted, now]
        return reserve


@pytest.mark.parametrize("tps", [50, 500])
async def test_the_shared_bucket_sends_no_burst_after_a_busy_loop(tps: int) -> None:
    clock = FakeClock()
    bucket = RedisTokenBucket(FakeRedis(clock), "k", tps, replicas=1, headroom=0.02,
                              clock=clock, sleep=clock.sleep)
    rng = random.Random(tps)
    grants: list[float] = []
    for _ in range(max(SENDS, 3 * tps)):
        await bucket.acquire()
        grants.append(clock.now)
        if rng.random() < 0.25:  # the loop was busy before the next acquire
            clock.now += rng.uniform(0.0, 0.03)
    assert max_in_window(grants) <= math.floor(tps * 0.98)


def test_tps_margin_is_validated_and_named(tmp_path: Path) -> None:
    assert operator_config(tmp_path).tps_margin == 0.02
    assert operator_config(tmp_path, tps_margin=0.1).tps_margin == 0.1
    with pytest.raises(ConfigError) as info:
        operator_config(tmp_path, tps_margin=0.9)
    assert info.value.key == "operators.op.tps_margin"
