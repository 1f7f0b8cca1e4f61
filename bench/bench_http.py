"""The HTTP edge measured from outside: smppd as its own process, driven as a user would.

    python bench/bench_http.py --workload single                 # POST /v1/messages
    python bench/bench_http.py --workload bulk --bulk-size 100   # POST /v1/messages/bulk
    python bench/bench_http.py --workload receipts               # until every one DELIVERED
    python bench/bench_http.py --workload backlog --count 1000000
    python bench/bench_http.py --workload control --rate 2000    # ValidateLease, SelectOperator
    python bench/bench_http.py --workload single --mode distributed   # PostgreSQL + Redis
    python bench/bench_http.py --workload single --profile /tmp/stacks.txt  # py-spy
    python bench/bench_http.py --workload receipts --webhook     # + a webhook receiver

Three processes, as in production: the SMSC (the project's simulator, uvloop, nothing
recorded, every submit answered and, for ``receipts``, a DELIVRD receipt 1-5 ms later),
the daemon (``smppd run --config FILE``, a config written here), and the load:
ApacheBench (``ab -k``, Debian's apache2-utils) where installed, else a uvloop client
process. Each run prints one JSON line: rate of 202s, rate at the SMSC, CPU seconds of
each process over the run (the daemon's with every thread), CPU per message, the
daemon's peak RSS, and latency P50/P95/P99 as the load saw it.

- single: ``--requests`` POSTs of one message, ``--concurrency`` keep-alive clients. The
  rate at the SMSC counts from the first request to the last submit_sm the SMSC took.
- bulk: the same with ``--bulk-size`` messages per request.
- receipts: single with registered_delivery; the clock stops when every message is
  DELIVERED in the store (SQLite read-only, or PostgreSQL).
- backlog: the operator paused, ``--count`` messages accepted in bulks, then resumed:
  drain rate at the SMSC and the daemon's RSS.
- ``--webhook``: a fourth process, an HTTP receiver (uvloop, aiohttp) that checks each
  POST's signature and answers 204, set as the tenant's ``callback_url`` in
  ``[[tenants]]``: every DLR event is also POSTed to it. For ``receipts`` the run also
  waits until the receiver has one delivery per message (``webhooks_per_s``).
- control: open-loop ``--rate`` requests/s (half ValidateLease with a cache hit, half
  SelectOperator) for ``--seconds``, while ``--background`` messages/s are submitted in
  bulks; latency is measured from each request's scheduled time (no coordinated
  omission).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import create_database, drop_database, sim_config

ROOT = Path(__file__).resolve().parent.parent

TEXT = "Your verification code is 482913. It expires in 5 minutes."
TENANT = "demo"  # the seeded sender leases ('SMPPD' for tenant 'demo') are cache hits
SMPPD = Path(sys.executable).with_name("smppd")
PG_ADMIN = os.environ.get("SMPPD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process and all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


# -- the SMSC process ---------------------------------------------------------------------


def smsc(pipe: Connection, receipts: bool) -> None:
    import uvloop

    from simulators.server import SmscSimulator

    async def main() -> None:
        sim = SmscSimulator(sim_config(window=1000, max_binds=8, receipts=receipts))
        await sim.start()
        pipe.send(sim.port_of("bench"))
        loop = asyncio.get_running_loop()
        counters = sim.mno("bench").counters
        while (ask := await loop.run_in_executor(None, pipe.recv)) != "stop":
            del ask  # "count": how many submits were accepted so far
            pipe.send(counters.accepted)
        await sim.stop()

    uvloop.run(main())


class Smsc:
    def __init__(self, receipts: bool) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=smsc, args=(child, receipts), daemon=True)
        self.proc.start()
        self.port: int = self.pipe.recv()

    def accepted(self) -> int:
        self.pipe.send("count")
        return int(self.pipe.recv())

    def stop(self) -> None:
        self.pipe.send("stop")
        self.proc.join(10)


# -- the webhook receiver process ----------------------------------------------------------

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"


def receiver(pipe: Connection) -> None:
    import hashlib
    import hmac

    import uvloop
    from aiohttp import web

    async def main() -> None:
        counts = {"ok": 0, "bad_signature": 0}

        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            stamp = request.headers.get("X-Smppd-Timestamp", "")
            mac = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body,
                           hashlib.sha256).hexdigest()
            good = hmac.compare_digest(request.headers.get("X-Smppd-Signature", ""),
                                       "sha256=" + mac)
            counts["ok" if good else "bad_signature"] += 1
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        pipe.send(port)
        loop = asyncio.get_running_loop()
        while (ask := await loop.run_in_executor(None, pipe.recv)) != "stop":
            del ask  # "count": deliveries so far
            pipe.send(dict(counts))
        await runner.cleanup()

    uvloop.run(main())


class Receiver:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=receiver, args=(child,), daemon=True)
        self.proc.start()
        self.url = f"http://127.0.0.1:{self.pipe.recv()}/hook"

    def counts(self) -> dict[str, int]:
        self.pipe.send("count")
        found: dict[str, int] = self.pipe.recv()
        return found

    def stop(self) -> None:
        self.pipe.send("stop")
        self.proc.join(10)


# -- the daemon process -------------------------------------------------------------------


def write_config(directory: Path, smsc_port: int, api_port: int, mode: str,
                 dsn: str | None, binds: int, webhook: str | None = None,
                 per_host: int | None = None) -> Path:
    lines = [
        "[daemon]", f'mode = "{mode}"', f'state_dir = "{directory / "state"}"',
        "drain_timeout = 5.0",
        "[api]", f'listen = "127.0.0.1:{api_port}"',
        "[routing]", "seed = true",
        "[leases]", "enforce = true",
    ]
    if mode == "distributed":
        prefix = f"bench{secrets.token_hex(3)}"
        lines += ["[store]", 'kind = "postgres"', f'dsn = "{dsn}"',
                  "[redis]", f'url = "{REDIS_URL}"', f'key_prefix = "{prefix}"']
    lines += [
        "[[operators]]", 'id = "bench"', 'name = "Bench"', 'mcc = "412"', 'mnc = ["40"]',
        'prefixes = ["9370", "9379"]', f'hosts = ["127.0.0.1:{smsc_port}"]',
        'system_id = "bench"', 'password = "pw"', "tps = 1000000", "window = 100",
        f"binds = {binds}", 'submit_resp_id = "decimal"', 'receipt_id = "decimal"',
    ]
    if webhook is not None:
        lines += ["[[tenants]]", f'id = "{TENANT}"', f'secret = "{WEBHOOK_SECRET}"',
                  f'callback_url = "{webhook}"']
        if per_host is not None:
            lines += ["[webhooks]", f"per_host = {per_host}"]
    path = directory / "smppd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{api_port}"
        self.config = config
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(SMPPD), "run", "--config", str(config)], stdout=self.log,
            stderr=subprocess.STDOUT, cwd=config.parent)
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"smppd did not start: see {log}")
            time.sleep(0.1)

    def ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def post(self, path: str, body: Any = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def webhook_stats(self) -> dict[str, float]:
        """The daemon's mean POST latency (ms) and attempts, from its /metrics."""
        import urllib.request

        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        values = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("smppd_webhook_") and not name.endswith("_created"):
                values[name] = float(value)
        count = values.get("smppd_webhook_latency_seconds_count", 0.0)
        total = values.get("smppd_webhook_latency_seconds_sum", 0.0)
        return {"webhook_post_ms": round(total / count * 1000, 2) if count else 0.0,
                "webhook_attempts": count}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def migrate_database(config: Path) -> None:
    subprocess.run([str(SMPPD), "migrate", "--config", str(config), "--seed"], check=True,
                   stdout=subprocess.DEVNULL)


def delivered(state_dir: Path, dsn: str | None) -> int:
    if dsn is None:
        with sqlite3.connect(f"file:{state_dir / 'smppd.sqlite'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT count(*) FROM messages WHERE state = 'DELIVERED'").fetchone()
            return int(row[0])
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            value = await conn.fetchval(
                "SELECT count(*) FROM smpp.messages WHERE state = 'DELIVERED'")
            return int(value)
        finally:
            await conn.close()

    return asyncio.run(count())


# -- the load -----------------------------------------------------------------------------


def message(registered_delivery: bool) -> dict[str, Any]:
    return {"tenant_id": TENANT, "source": "SMPPD", "destination": "+93700123456",
            "text": TEXT, "registered_delivery": registered_delivery}


def ab_load(url: str, body: dict[str, Any], requests: int, concurrency: int,
            workdir: Path) -> dict[str, Any]:
    """ApacheBench: the same body ``requests`` times; returns its rate and percentiles."""
    body_file = workdir / "body.json"
    body_file.write_text(json.dumps(body))
    out = subprocess.run(["ab", "-k", "-q", "-c", str(concurrency), "-n", str(requests),
                          "-p", str(body_file), "-T", "application/json", url],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, Any] = {"load": "ab"}
    rate = re.search(r"Requests per second:\s+([\d.]+)", out)
    found["requests_per_s"] = float(rate[1]) if rate else None
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    found["non_2xx"] = int(non2xx[1]) if non2xx else 0
    found["failed"] = int(failed[1]) if failed else 0
    for q in ("50", "95", "99"):
        match = re.search(rf"^\s+{q}%\s+(\d+)", out, re.M)
        found[f"p{q}_ms"] = float(match[1]) if match else None
    return found


def client_load(pipe: Connection, url: str, body: dict[str, Any], requests: int,
                concurrency: int) -> None:
    """The uvloop client: ``concurrency`` keep-alive connections share ``requests``."""
    import aiohttp
    import uvloop

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        left = requests
        payload = json.dumps(body).encode()
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def worker() -> None:
                nonlocal left, errors
                while left > 0:
                    left -= 1
                    t = time.perf_counter()
                    async with http.post(url, data=payload,
                                         headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        errors += r.status != 202
                    latencies.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - t0
        return {"load": "python", "requests_per_s": round(requests / elapsed, 1),
                "non_2xx": errors, **percentiles(latencies)}

    pipe.send(uvloop.run(main()))


def http_load(url: str, body: dict[str, Any], requests: int, concurrency: int,
              workdir: Path) -> dict[str, Any]:
    if shutil.which("ab"):
        return ab_load(url, body, requests, concurrency, workdir)
    ctx = mp.get_context("spawn")
    pipe, child = ctx.Pipe()
    proc = ctx.Process(target=client_load, args=(child, url, body, requests, concurrency))
    proc.start()
    result: dict[str, Any] = pipe.recv()
    proc.join()
    return result


class _HttpConn(asyncio.Protocol):
    """One keep-alive connection of the open-loop client: one request at a time,
    answers parsed by Content-Length (the daemon always sends one)."""

    def __init__(self, on_answer: Any) -> None:
        self.on_answer = on_answer
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiting: tuple[str, float] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send(self, request: bytes, kind: str, due: float) -> None:
        assert self.transport is not None
        self.waiting = (kind, due)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        size = end + 4 + (int(length[1]) if length else 0)
        if len(self.buffer) < size or self.waiting is None:
            return
        self.buffer = self.buffer[size:]
        kind, due = self.waiting
        self.waiting = None
        self.on_answer(self, kind, due, int(head[9:12]))


def _request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def open_loop(pipe: Connection, port: int, rate: float, seconds: float) -> None:
    """Control calls (half ValidateLease, half SelectOperator) at a fixed schedule over
    64 keep-alive connections; a call waiting for a free connection is late, and its
    latency (from its scheduled time) says so. A minimal HTTP client: the load must
    cost far less than the server it measures."""
    import uvloop

    requests = {
        "validate": _request("/v1/leases/validate",
                             json.dumps({"sender": "SMPPD", "tenant_id": TENANT}).encode()),
        "select": _request("/v1/routing/select", json.dumps(
            {"destination": "+93791234567", "tenant_id": TENANT}).encode()),
    }

    async def run_calls() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        lat: dict[str, list[float]] = {"validate": [], "select": []}
        errors = 0
        backlog: collections.deque[tuple[str, float]] = collections.deque()
        free: list[_HttpConn] = []
        total = int(rate * seconds)
        answered = 0
        finished = loop.create_future()

        def on_answer(conn: _HttpConn, kind: str, due: float, status: int) -> None:
            nonlocal errors, answered
            lat[kind].append(loop.time() - due)
            errors += status != 200
            answered += 1
            if backlog:
                kind, due = backlog.popleft()
                conn.send(requests[kind], kind, due)
            else:
                free.append(conn)
            if answered == total and not finished.done():
                finished.set_result(None)

        for _ in range(64):
            transport, conn = await loop.create_connection(lambda: _HttpConn(on_answer),
                                                           "127.0.0.1", port)
            conn.transport = transport
            free.append(conn)
        start = loop.time() + 0.2
        sent = 0
        while sent < total:
            now = loop.time()
            while sent < total and start + sent / rate <= now:
                kind = "validate" if sent % 2 else "select"
                due = start + sent / rate
                if free:
                    free.pop().send(requests[kind], kind, due)
                else:
                    backlog.append((kind, due))
                sent += 1
            await asyncio.sleep(0.0005)
        await asyncio.wait_for(finished, 120)
        return {"errors": errors,
                "validate": percentiles(lat["validate"]), "select": percentiles(lat["select"])}

    pipe.send(uvloop.run(run_calls()))


def background_submits(url: str, rate: float, seconds: float) -> None:
    """Bulks of 100 at ``rate`` messages/s (its own process), while control calls run."""
    import aiohttp
    import uvloop

    bulk = json.dumps({"messages": [message(False)] * 100}).encode()

    async def post_bulks() -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            due, end = loop.time(), loop.time() + seconds
            while due < end:
                async with http.post(url, data=bulk,
                                     headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                due += 100 / rate
                await asyncio.sleep(max(0.0, due - loop.time()))

    uvloop.run(post_bulks())


# -- the runs -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    receipts = args.workload == "receipts"
    sim = Smsc(receipts)
    dsn = (asyncio.run(create_database(PG_ADMIN, "smppd_bench"))
           if args.mode == "distributed" else None)
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    api_port = free_port()
    hooks = Receiver() if args.webhook else None
    config = write_config(workdir, sim.port, api_port, args.mode, dsn, args.binds,
                          hooks.url if hooks is not None else None, args.per_host)
    try:
        if dsn is not None:
            migrate_database(config)
        daemon = Daemon(config, api_port, workdir / "smppd.log")
        try:
            return measure(args, sim, daemon, workdir, dsn, hooks)
        finally:
            daemon.stop()
    finally:
        sim.stop()
        if hooks is not None:
            hooks.stop()
        if dsn is not None:
            asyncio.run(drop_database(PG_ADMIN, dsn))
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(predicate: Any, timeout: float) -> float:
    """Poll until ``predicate()``; returns when it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out: the daemon did not finish the run")
        time.sleep(0.01)
    return time.perf_counter()


def measure(args: argparse.Namespace, sim: Smsc, daemon: Daemon, workdir: Path,
            dsn: str | None, hooks: Receiver | None = None) -> dict[str, Any]:
    pid, sim_pid = daemon.proc.pid, sim.proc.pid or 0
    result: dict[str, Any] = {"workload": args.workload, "mode": args.mode,
                              "binds": args.binds, "webhook": hooks is not None}
    base_accepted = sim.accepted()
    if args.workload == "control":
        return {**result, **control_run(args, daemon, pid, sim_pid)}
    if args.workload == "backlog":
        return {**result, **backlog_run(args, sim, daemon, pid, sim_pid, base_accepted)}
    bulk = args.workload == "bulk"
    per_request = args.bulk_size if bulk else 1
    count = args.requests * per_request
    body: dict[str, Any] = ({"messages": [message(False)] * per_request} if bulk
                            else message(args.workload == "receipts"))
    path = "/v1/messages/bulk" if bulk else "/v1/messages"
    spy = profiler(args, pid)
    cpu0, sim_cpu0, t0 = proc_cpu(pid), proc_cpu(sim_pid), time.perf_counter()
    load = http_load(daemon.url + path, body, args.requests, args.concurrency, workdir)
    t_http = time.perf_counter() - t0
    if spy is not None and args.workload != "receipts":
        stop_profiler(spy)
    t_smsc = wait_until(lambda: sim.accepted() - base_accepted >= count, 300) - t0
    if args.workload == "receipts":
        t_done = wait_until(lambda: delivered(workdir / "state", dsn) >= count, 300) - t0
        result["delivered_per_s"] = round(count / t_done, 1)
        if hooks is not None:
            t_hooks = wait_until(lambda: sum(hooks.counts().values()) >= count, 300) - t0
            result["webhooks_per_s"] = round(count / t_hooks, 1)
            result["webhooks"] = hooks.counts()
            result.update(daemon.webhook_stats())
    cpu, sim_cpu = proc_cpu(pid) - cpu0, proc_cpu(sim_pid) - sim_cpu0
    if spy is not None and args.workload == "receipts":  # the receipts and webhooks too
        stop_profiler(spy)
    return {**result, "messages": count, "per_request": per_request,
            "accepted_per_s": round(count / t_http, 1), "smsc_per_s": round(count / t_smsc, 1),
            "daemon_cpu_s": round(cpu, 2), "smsc_cpu_s": round(sim_cpu, 2),
            "daemon_cpu_us_per_msg": round(cpu / count * 1e6, 1),
            "daemon_rss_peak_mb": round(proc_mem(pid), 1), **load}


def profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the daemon (every thread) while the load runs, as collapsed stacks."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format",
                             "raw", "--threads", "--output", args.profile],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    spy.wait(30)


def backlog_run(args: argparse.Namespace, sim: Smsc, daemon: Daemon, pid: int, sim_pid: int,
                base_accepted: int) -> dict[str, Any]:
    daemon.post("/v1/operators/bench/pause")
    bulk = {"messages": [message(False)] * 1000}
    t0 = time.perf_counter()
    for _ in range(args.count // 1000):
        daemon.post("/v1/messages/bulk", bulk)
    accept_s = time.perf_counter() - t0
    count = (args.count // 1000) * 1000
    cpu0, t1 = proc_cpu(pid), time.perf_counter()
    sim_cpu0 = proc_cpu(sim_pid)
    daemon.post("/v1/operators/bench/resume")
    t_done = wait_until(lambda: sim.accepted() - base_accepted >= count, 1800) - t1
    cpu = proc_cpu(pid) - cpu0
    return {"messages": count, "accept_s": round(accept_s, 1),
            "drain_per_s": round(count / t_done, 1), "daemon_cpu_s": round(cpu, 2),
            "smsc_cpu_s": round(proc_cpu(sim_pid) - sim_cpu0, 2),
            "daemon_rss_peak_mb": round(proc_mem(pid), 1)}


def control_run(args: argparse.Namespace, daemon: Daemon, pid: int,
                sim_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    pipe, child = ctx.Pipe()
    port = int(daemon.url.rsplit(":", 1)[1])
    proc = ctx.Process(target=open_loop, args=(child, port, args.rate, args.seconds))
    submitter = None
    if args.background:
        submitter = ctx.Process(target=background_submits, args=(
            daemon.url + "/v1/messages/bulk", args.background, args.seconds + 1.0))
        submitter.start()
        time.sleep(0.5)  # the messages flow before the first control call
    cpu0 = proc_cpu(pid)
    proc.start()
    found: dict[str, Any] = pipe.recv()
    proc.join()
    if submitter is not None:
        submitter.join()
    return {"rate": args.rate, "seconds": args.seconds, "background_per_s": args.background,
            "daemon_cpu_s": round(proc_cpu(pid) - cpu0, 2), **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="single",
                        choices=["single", "bulk", "receipts", "backlog", "control"])
    parser.add_argument("--mode", default="embedded", choices=["embedded", "distributed"])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--bulk-size", type=int, default=100)
    parser.add_argument("--binds", type=int, default=2)
    parser.add_argument("--count", type=int, default=100_000, help="backlog: messages")
    parser.add_argument("--rate", type=float, default=2000.0, help="control: requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="control: duration")
    parser.add_argument("--background", type=float, default=5000.0,
                        help="control: messages/s submitted meanwhile")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--webhook", action="store_true",
                        help="POST every DLR event to a receiver in another process")
    parser.add_argument("--per-host", type=int, metavar="N",
                        help="[webhooks] per_host (default: the daemon's)")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy collapsed stacks of the daemon during the load")
    args = parser.parse_args()
    for _ in range(args.runs):
        print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
