"""Toxics: what each one is (name, type, stream, toxicity, attributes) and what it does.

Parsing, validation and the arithmetic (jitter, slice sizes, pacing, byte limits) are
pure. A behaviour acts on its stream only through ``Effects`` (wait, close, reset) and
the ``emit`` it is handed, so the link that runs it owns every socket, task and clock.
Field names, defaults and units are Toxiproxy's, so a real Toxiproxy can stand in.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import FieldError

UPSTREAM = "upstream"  # client -> upstream server
DOWNSTREAM = "downstream"  # upstream server -> client
STREAMS = (UPSTREAM, DOWNSTREAM)

# Every attribute is a non-negative integer; a missing one is 0, as in Toxiproxy.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),  # ms added to each chunk, +/- jitter ms
    "bandwidth": ("rate",),  # KB/s (1 KB = 1000 bytes); 0 = unlimited
    "slow_close": ("delay",),  # ms between the end of the stream and passing it on
    "timeout": ("timeout",),  # data dropped; connection closed after ms (0 = never)
    "reset_peer": ("timeout",),  # ms after the first data, then TCP RST
    "limit_data": ("bytes",),  # bytes passed, then the connection is closed
    "slicer": ("average_size", "size_variation", "delay"),  # bytes, bytes, µs
}


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}

    def update(self, body: object) -> None:
        """Apply ``{"toxicity": ..., "attributes": {...}}``; attributes not given stay."""
        fields = _object(body, "body")
        _no_unknown(fields, ("toxicity", "attributes", "name", "type", "stream"), "")
        for key in ("name", "type", "stream"):
            if key in fields and fields[key] != getattr(self, key):
                raise FieldError(key, "cannot change; remove the toxic and add a new one")
        toxicity = _toxicity(fields.get("toxicity", self.toxicity))
        attributes = dict(self.attributes)
        attributes.update(_attributes(self.type, fields.get("attributes", {})))
        _check_slicer(self.type, attributes)
        self.toxicity, self.attributes = toxicity, attributes


def parse_toxic(body: object) -> Toxic:
    """A toxic from the JSON Toxiproxy takes: stream defaults to downstream, toxicity
    to 1.0, name to ``{type}_{stream}``."""
    fields = _object(body, "body")
    _no_unknown(fields, ("name", "type", "stream", "toxicity", "attributes"), "")
    kind = fields.get("type")
    if not isinstance(kind, str) or kind not in ATTRIBUTES:
        raise FieldError("type", f"invalid toxic type {kind!r}, one of {', '.join(ATTRIBUTES)}")
    stream = fields.get("stream", DOWNSTREAM)
    if stream not in STREAMS:
        raise FieldError("stream", f"{stream!r} is invalid, can be either upstream or downstream")
    name = fields.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str) or "/" in name:
        raise FieldError("name", "must be a string without '/'")
    attributes = dict.fromkeys(ATTRIBUTES[kind], 0)
    attributes.update(_attributes(kind, fields.get("attributes", {})))
    _check_slicer(kind, attributes)
    return Toxic(name, kind, stream, _toxicity(fields.get("toxicity", 1.0)), attributes)


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, "must be a JSON object")
    return value


def _no_unknown(fields: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in fields:
        if key not in known:
            raise FieldError(prefix + key, f"unknown field, expected one of {', '.join(known)}")


def _toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise FieldError("toxicity", "must be a number from 0.0 to 1.0")
    return float(value)


def _attributes(kind: str, value: object) -> dict[str, int]:
    fields = _object(value, "attributes")
    _no_unknown(fields, ATTRIBUTES[kind], "attributes.")
    for key, number in fields.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise FieldError(f"attributes.{key}", "must be a non-negative integer")
    return dict(fields)


def _check_slicer(kind: str, attributes: dict[str, int]) -> None:
    if kind != "slicer":
        return
    if attributes["average_size"] < 1:
        raise FieldError("attributes.average_size", "must be at least 1")
    if attributes["size_variation"] >= attributes["average_size"]:
        raise FieldError("attributes.size_variation", "must be less than average_size")


# --- the arithmetic, pure -------------------------------------------------------------

def jittered_ms(latency: int, jitter: int, rng: random.Random) -> int:
    """``latency`` +/- up to ``jitter`` ms, never below 0."""
    return max(0, latency + (rng.randint(-jitter, jitter) if jitter else 0))


def slice_sizes(total: int, average: int, variation: int, rng: random.Random) -> list[int]:
    """Sizes of the pieces ``total`` bytes are cut into: each ``average`` +/- ``variation``
    bytes, the last one whatever is left."""
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(left, max(1, average + rng.randint(-variation, variation)))
        sizes.append(size)
        left -= size
    return sizes


def rate_pieces(data: bytes, rate: int) -> list[bytes]:
    """``data`` cut into what ``rate`` KB/s passes in 100 ms, so a slow rate trickles
    instead of holding a large chunk back whole."""
    step = rate * 100
    return [data[i:i + step] for i in range(0, len(data), step)]


def send_seconds(size: int, rate: int) -> float:
    """Seconds ``size`` bytes take at ``rate`` KB/s."""
    return size / (rate * 1000)


def limit_take(limit: int, sent: int, size: int) -> int:
    """How many of ``size`` new bytes still pass when ``sent`` of ``limit`` have."""
    return max(0, min(size, limit - sent))


# --- behaviours ---------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    data: bytes
    at: float  # clock time it was read from its source


Emit = Callable[[Chunk], Awaitable[None]]


class Effects(Protocol):
    """What a behaviour may do to its connection."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> bool:
        """Wait; False when the toxic was removed or updated first (the behaviour then
        lets what it holds through, as Toxiproxy does not drop data on removal)."""
        ...

    def close(self) -> None:
        """Close both sides of the connection (FIN)."""
        ...

    def reset(self) -> None:
        """Abort both sides of the connection with a TCP RST."""
        ...


class Behaviour:
    """What one toxic does to one direction of one connection. One instance per
    connection, so state (bytes passed, pacing) is per connection; attributes are read
    from the shared ``Toxic`` each time, so an update applies to live connections."""

    def __init__(self, toxic: Toxic, rng: random.Random) -> None:
        self.toxic = toxic
        self.rng = rng

    def attr(self, name: str) -> int:
        return self.toxic.attributes[name]

    async def on_attach(self, fx: Effects) -> None:
        """Runs as its own task from the moment the toxic applies to the connection."""

    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        await emit(chunk)

    async def on_eof(self, fx: Effects) -> None:
        """The source finished; returns when the end may be passed on."""

    def on_remove(self, fx: Effects) -> None:
        """The toxic was removed while it applied to this connection."""


class Latency(Behaviour):
    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        delay = jittered_ms(self.attr("latency"), self.attr("jitter"), self.rng) / 1000
        await fx.sleep_until(chunk.at + delay)  # from when it was read: delays overlap
        await emit(Chunk(chunk.data, fx.now()))


class Bandwidth(Behaviour):
    def __init__(self, toxic: Toxic, rng: random.Random) -> None:
        super().__init__(toxic, rng)
        self.free_at = 0.0  # when the bytes already let through have "left the wire"

    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        rate = self.attr("rate")
        if rate <= 0:
            await emit(chunk)
            return
        pieces = rate_pieces(chunk.data, rate)
        for i, piece in enumerate(pieces):
            self.free_at = max(self.free_at, fx.now()) + send_seconds(len(piece), rate)
            if not await fx.sleep_until(self.free_at):
                await emit(Chunk(b"".join(pieces[i:]), fx.now()))
                return
            await emit(Chunk(piece, fx.now()))


class SlowClose(Behaviour):
    async def on_eof(self, fx: Effects) -> None:
        await fx.sleep_until(fx.now() + self.attr("delay") / 1000)


class Timeout(Behaviour):
    async def on_attach(self, fx: Effects) -> None:
        timeout = self.attr("timeout")
        if timeout and await fx.sleep_until(fx.now() + timeout / 1000):
            fx.close()

    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        """Dropped: a black hole."""

    def on_remove(self, fx: Effects) -> None:
        # Bytes it swallowed are gone, so the stream cannot go on (Toxiproxy closes too).
        fx.close()


class ResetPeer(Behaviour):
    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        if await fx.sleep_until(fx.now() + self.attr("timeout") / 1000):
            fx.reset()
        else:
            await emit(chunk)


class LimitData(Behaviour):
    def __init__(self, toxic: Toxic, rng: random.Random) -> None:
        super().__init__(toxic, rng)
        self.sent = 0

    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        limit = self.attr("bytes")
        take = limit_take(limit, self.sent, len(chunk.data))
        if take:
            self.sent += take
            await emit(Chunk(chunk.data[:take], chunk.at))
        if self.sent >= limit:
            fx.close()


class Slicer(Behaviour):
    async def on_data(self, chunk: Chunk, emit: Emit, fx: Effects) -> None:
        sizes = slice_sizes(len(chunk.data), self.attr("average_size"),
                            self.attr("size_variation"), self.rng)
        offset = 0
        for size in sizes:
            await emit(Chunk(chunk.data[offset:offset + size], chunk.at))
            offset += size
            if offset < len(chunk.data) and not await fx.sleep_until(
                    fx.now() + self.attr("delay") / 1_000_000):
                await emit(Chunk(chunk.data[offset:], chunk.at))
                return


BEHAVIOURS: dict[str, type[Behaviour]] = {
    "latency": Latency,
    "bandwidth": Bandwidth,
    "slow_close": SlowClose,
    "timeout": Timeout,
    "reset_peer": ResetPeer,
    "limit_data": LimitData,
    "slicer": Slicer,
}
assert BEHAVIOURS.keys() == ATTRIBUTES.keys()


def behaviour(toxic: Toxic, rng: random.Random) -> Behaviour:
    return BEHAVIOURS[toxic.type](toxic, rng)


__all__ = ["ATTRIBUTES", "BEHAVIOURS", "DOWNSTREAM", "STREAMS", "UPSTREAM", "Behaviour",
           "Chunk", "Effects", "Emit", "Toxic", "behaviour", "jittered_ms", "limit_take",
           "parse_toxic", "rate_pieces", "send_seconds", "slice_sizes"]
