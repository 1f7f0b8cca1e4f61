"""What tests/services/test_chaos_deps.py drives and counts: a load of HTTP bulk submits and NATS
dispatch commands, /readyz sampled beside it, and the store read straight from
PostgreSQL (not through the proxy the daemon uses).

The load: every ``tick`` seconds one HTTP bulk of ``per_tick`` messages (its own task,
so a request the store holds up does not slow the cadence) and ``per_tick`` dispatch
commands published to JetStream directly. Each message has an id and a destination of
its own, so the SMSC's PDUs say which message each one is."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from servers import command

_numbers = itertools.count()


def message(prefix: str) -> tuple[str, str]:
    """(message id, destination without its '+') of a new message."""
    n = next(_numbers)
    return f"{prefix}-{n}", f"9370{n:07d}"


@dataclass
class Load:
    url: str
    js: Any  # nats.js.JetStreamContext, publishing to the server itself
    subject: str
    per_tick: int = 10
    tick: float = 0.1
    request_timeout: float = 60.0
    answered: list[dict[str, str]] = field(default_factory=list)  # 202: id -> destination
    refused: list[dict[str, str]] = field(default_factory=list)  # any other status
    cut_off: list[dict[str, str]] = field(default_factory=list)  # no answer at all
    statuses: dict[int, int] = field(default_factory=dict)
    published: dict[str, str] = field(default_factory=dict)  # JetStream acked the publish
    _requests: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.ensure_future(self._post(http))
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)
                await self._publish()
                next_at += self.tick
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            if self._requests:
                await asyncio.wait(set(self._requests))

    async def _post(self, http: aiohttp.ClientSession) -> None:
        bulk = dict(message("h") for _ in range(self.per_tick))
        body = {"messages": [{"message_id": i, "tenant_id": "t1", "source": "SMPPD",
                              "destination": "+" + d, "text": "hi"} for i, d in bulk.items()]}
        try:
            async with http.post(f"{self.url}/v1/messages/bulk", json=body) as resp:
                self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                (self.answered if resp.status == 202 else self.refused).append(bulk)
        except (aiohttp.ClientError, TimeoutError):
            self.cut_off.append(bulk)

    async def _publish(self) -> None:
        batch = dict(message("n") for _ in range(self.per_tick))
        acks = await asyncio.gather(
            *(self.js.publish(self.subject, command(i, "+" + d)) for i, d in batch.items()),
            return_exceptions=True)
        for (message_id, destination), ack in zip(batch.items(), acks, strict=True):
            if not isinstance(ack, BaseException):
                self.published[message_id] = destination

    def promised(self) -> dict[str, str]:
        """Every message the daemon or JetStream said yes to: id -> destination."""
        out = dict(self.published)
        for bulk in self.answered:
            out.update(bulk)
        return out


@dataclass
class Sample:
    at: float
    phase: str
    status: int  # 0: no answer
    body: dict[str, Any]


class ReadyWatch:
    """/readyz every 100 ms, each sample tagged with the phase the test is in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "before"
        self.samples: list[Sample] = []
        self.healthz_failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                status, body = 0, {}
                try:
                    async with http.get(self.url + "/readyz") as resp:
                        status, body = resp.status, await resp.json()
                    async with http.get(self.url + "/healthz") as resp:
                        self.healthz_failures += resp.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    self.healthz_failures += 1
                self.samples.append(Sample(time.monotonic(), self.phase, status, body))
                await asyncio.sleep(0.1)

    def during(self, phase: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase]

    def first(self, phase: str, test: Callable[[Sample], bool]) -> Sample | None:
        return next((s for s in self.during(phase) if test(s)), None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def stored(dsn: str, ids: list[str]) -> dict[str, str]:
    """message id -> state, for those of ``ids`` in smpp.messages."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT message_id, state FROM smpp.messages"
                                " WHERE message_id = ANY($1::text[])", ids)
    finally:
        await conn.close()
    return {r["message_id"]: r["state"] for r in rows}


async def validate(url: str, sender: str) -> tuple[int, dict[str, Any]]:
    """ValidateLease over the control API: (HTTP status, body)."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/v1/leases/validate", json={"sender": sender, "tenant_id": "t1"}) as resp:
        return resp.status, await resp.json()


async def put_lease(url: str, sender: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/v1/admin/leases", json={"sender": sender, "tenant_id": "t1"}) as resp:
        assert resp.status < 300, await resp.text()


async def rows_of(dsn: str, ids: list[str]) -> list[dict[str, Any]]:
    """The message and correlation rows of ``ids``: what a stuck message looks like,
    with the other parts submitted under its SMSC id (``same_id``: an SMSC reusing ids)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT m.message_id, m.state, m.reason, m.updated_at, c.state AS part_state,"
            " c.stat, c.smsc_id, c.submitted_at, c.done_at FROM smpp.messages m LEFT JOIN"
            " smpp.message_correlations c USING (message_id)"
            " WHERE m.message_id = ANY($1::text[])", ids)
        found = [dict(r) for r in rows]
        for row in found:
            others = await conn.fetch(
                "SELECT message_id, state, stat, submitted_at, done_at FROM"
                " smpp.message_correlations WHERE smsc_id = $1 AND message_id <> $2",
                row["smsc_id"], row["message_id"])
            row["same_id"] = [dict(o) for o in others]
    finally:
        await conn.close()
    return found
