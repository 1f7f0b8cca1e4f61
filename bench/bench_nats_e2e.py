"""Distributed mode end to end: NATS commands in, PostgreSQL + Redis correlation, DLR events out.

    PYTHONPATH=. .venv/bin/python bench/bench_nats_e2e.py                 # 1 and 4 binds, 2 runs
    PYTHONPATH=. .venv/bin/python bench/bench_nats_e2e.py --binds 1 --runs 1 --profile /tmp/p.txt

The SMSC simulator (one MNO, window 100, DELIVRD receipts 1-5 ms after each submit)
runs in a child process; the daemon runs here (uvloop), ``daemon.mode = "distributed"``:
PostgreSQL store in a scratch database (dropped after), the Redis hot index and token
bucket under a unique key prefix (deleted after), NATS JetStream with unique stream and
subject names (deleted after). Operator window 100, TPS 1,000,000.

Each run: start the daemon, wait for every bind, stop its dispatch consumer, publish
``--count`` smppd.dispatch.v1 commands to ``{dispatch_subject}.bench`` (so the publisher
takes no CPU from the timed phase), then restart the consumer and start the clock. The
clock stops at the JetStream timestamp of the last DLR event. Then every DLR event is
read back (one per message, final, DELIVERED) and every stored message must be DELIVERED.
CPU is user+system seconds of each process over the timed interval, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_operator, delete_streams, scratch_database, simulator_process

PG_DSN = os.environ.get("SMPPD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SMPPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("SMPPD_TEST_NATS_URL", "nats://127.0.0.1:4222")
TEXT = "Your verification code is 482913. It expires in 5 minutes."
PUBLISH_BATCH = 2000  # commands in flight while pre-publishing


def _proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _services_cpu() -> dict[str, float]:
    """CPU seconds of the local service processes (every PostgreSQL backend summed),
    to see where the 2 cores go; zero for a service not running here."""
    totals = {"postgres": 0.0, "nats": 0.0, "redis": 0.0}
    names = {"postgres": "postgres", "nats-server": "nats", "redis-server": "redis"}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            service = next((v for k, v in names.items() if comm.startswith(k)), None)
            if service is not None:
                totals[service] += _proc_cpu(int(entry.name))
        except (OSError, ValueError):
            continue  # exited meanwhile
    return totals


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# -- the simulator process ----------------------------------------------------------------


# -- scratch services ---------------------------------------------------------------------


async def delete_redis_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=10_000)]
    for start in range(0, len(keys), 5000):
        await client.delete(*keys[start:start + 5000])
    await client.aclose()


def nats_names(tag: str) -> dict[str, str]:
    return {
        "dispatch_stream": f"B{tag}_DISPATCH", "dlr_stream": f"B{tag}_DLR",
        "mo_stream": f"B{tag}_MO", "dispatch_subject": f"b{tag}.smpp.operator",
        "invalid_subject": f"b{tag}.smpp.dispatch.invalid", "dlr_subject": f"b{tag}.sms.dlr",
        "mo_subject": f"b{tag}.sms.mo", "consumer": f"c{tag}",
    }


def daemon_config(port: int, binds: int, dsn: str, redis_prefix: str,
                  names: dict[str, str], state_dir: str) -> Any:
    from smppd.config import Config

    return Config.model_validate({
        "daemon": {"mode": "distributed", "state_dir": state_dir, "drain_timeout": 5.0},
        "api": {"listen": "127.0.0.1:0"},
        "store": {"kind": "postgres", "dsn": dsn},
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix, "replicas": 1},
        "nats": {"url": NATS_URL, **names},
        "operators": [bench_operator(port, binds)],
    })


def command(i: int) -> bytes:
    from smppd.cluster.nats_bus import DISPATCH_SCHEMA

    return json.dumps({"schema": DISPATCH_SCHEMA, "message": {
        "message_id": f"m{i:08d}", "tenant_id": "bench", "source": "SMPPD",
        "destination": f"+93700{i % 1_000_000:06d}", "text": TEXT, "registered_delivery": True,
    }}, separators=(",", ":")).encode()


# -- one run ------------------------------------------------------------------------------


async def _run(port: int, sim_pid: int, binds: int, count: int,
               profile: str | None) -> dict[str, Any]:
    import tempfile

    import nats

    from smppd.runtime.daemon import Daemon

    tag = secrets.token_hex(4)
    names, redis_prefix = nats_names(tag), f"smppd_bench_{tag}"
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        async with scratch_database(PG_DSN, "smppd_bench") as dsn:
            with tempfile.TemporaryDirectory() as tmp:
                daemon = Daemon(daemon_config(port, binds, dsn, redis_prefix, names, tmp))
                await daemon.start()
                try:
                    return await _timed(daemon, js, names, sim_pid, binds, count, profile)
                finally:
                    await daemon.stop()
    finally:
        await delete_streams(js, names)
        await nc.close()
        await delete_redis_keys(redis_prefix)


async def _timed(daemon: Any, js: Any, names: dict[str, str], sim_pid: int, binds: int,
                 count: int, profile: str | None) -> dict[str, Any]:
    op = daemon.operators["bench"]
    while op.bound_count < binds:  # noqa: ASYNC110 - no event for "bound"; a bench may poll
        await asyncio.sleep(0.01)
    bus = daemon.bus
    await bus.stop_consumer()  # commands wait in the stream until the clock starts
    subject = f"{names['dispatch_subject']}.bench"
    started = time.perf_counter()
    for start in range(0, count, PUBLISH_BATCH):
        await asyncio.gather(*(js.publish(subject, command(i))
                               for i in range(start, min(count, start + PUBLISH_BATCH))))
    publish_s = time.perf_counter() - started

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
    pid = os.getpid()
    services0, busy0 = _services_cpu(), _machine_busy()
    cpu0, sim_cpu0, t0 = _proc_cpu(pid), _proc_cpu(sim_pid), time.time()
    bus.start_consumer(daemon.dispatcher)
    deadline = time.monotonic() + max(60.0, count / 500)
    while (await js.stream_info(names["dlr_stream"])).state.messages < count:
        if time.monotonic() > deadline:
            states = await store_states(daemon.config.store.dsn.get_secret_value())
            raise AssertionError(
                f"timed out waiting for DLR events: published {bus.published}, "
                f"queued {len(op.queue)}, counters {dict(op.counters)}, store {states}")
        await asyncio.sleep(0.02)
    cpu, sim_cpu = _proc_cpu(pid) - cpu0, _proc_cpu(sim_pid) - sim_cpu0
    services = {k: v - services0[k] for k, v in _services_cpu().items()}
    busy = _machine_busy() - busy0
    if profiler is not None:
        profiler.stop()
        assert profile is not None
        text = profiler.output_text(unicode=False, color=False)
        await asyncio.to_thread(Path(profile).write_text, text)
    wall_polled = time.time() - t0
    events, last = await read_dlr_events(js, names, count)
    latency = op.status()["submit_latency_ms"] or {}
    return {"publish_s": publish_s, "wall": last - t0, "wall_polled": wall_polled,
            "cpu": cpu, "sim_cpu": sim_cpu, "services": services, "busy": busy,
            "p50": latency.get("p50"), "p99": latency.get("p99"),
            **events, **await store_states(daemon.config.store.dsn.get_secret_value())}


async def read_dlr_events(js: Any, names: dict[str, str], count: int
                          ) -> tuple[dict[str, int], float]:
    """Every DLR event in the stream: counts, and the JetStream time of the last one."""
    from nats.js.api import AckPolicy, ConsumerConfig

    sub = await js.pull_subscribe(names["dlr_subject"], stream=names["dlr_stream"],
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE))
    ids: set[str] = set()
    total = delivered = 0
    last = 0.0
    while total < count:
        for msg in await sub.fetch(min(1000, count - total), timeout=5.0):
            event = json.loads(msg.data)
            total += 1
            ids.add(event["message_id"])
            delivered += event.get("final") is True and event.get("state") == "DELIVERED"
            last = max(last, msg.metadata.timestamp.timestamp())
    await sub.unsubscribe()
    return {"dlr_events": total, "dlr_ids": len(ids), "dlr_delivered": delivered}, last


async def store_states(dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM smpp.messages GROUP BY state")
    finally:
        await conn.close()
    states = {r["state"]: r["n"] for r in rows}
    return {"stored_delivered": states.get("DELIVERED", 0),
            "stored_other": sum(n for s, n in states.items() if s != "DELIVERED")}


# -- the driver ---------------------------------------------------------------------------


def run_once(binds: int, count: int, profile: str | None) -> dict[str, Any]:
    import uvloop

    ctx = mp.get_context("spawn")
    pipe, child = ctx.Pipe()
    sim = ctx.Process(target=simulator_process, args=(child, 100, 4, True), daemon=True)
    sim.start()
    try:
        port = pipe.recv()
        result = uvloop.run(_run(port, sim.pid or 0, binds, count, profile))
        pipe.send("stop")
        result["sim"] = pipe.recv()
    finally:
        sim.join(30)
        if sim.is_alive():
            sim.kill()
    return result


def summarise(binds: int, count: int, runs: list[dict[str, Any]]) -> str:
    rates = [count / r["wall"] for r in runs]
    median = statistics.median(rates)
    mid = runs[rates.index(sorted(rates)[len(rates) // 2])]
    ok = all(r["dlr_events"] == count and r["dlr_ids"] == count and r["dlr_delivered"] == count
             and r["stored_delivered"] == count and not r["stored_other"] for r in runs)
    return (f"{binds} bind{'s' if binds > 1 else ' '}  {median:>8,.0f} msg/s  "
            f"(runs: {', '.join(f'{x:,.0f}' for x in rates)})  p50 {mid['p50']} ms  "
            f"p99 {mid['p99']} ms  daemon CPU {mid['cpu'] / mid['wall'] * 100:3.0f}%  "
            f"sim CPU {mid['sim_cpu'] / mid['wall'] * 100:3.0f}%  "
            f"matched==sent: {'yes' if ok else 'NO'}  [publish {count / mid['publish_s']:,.0f}/s]"
            f"\n         CPU per message (µs): daemon {mid['cpu'] / count * 1e6:.0f}, "
            f"simulator {mid['sim_cpu'] / count * 1e6:.0f}, "
            + ", ".join(f"{k} {v / count * 1e6:.0f}" for k, v in mid["services"].items())
            + f"; whole machine {mid['busy'] / count * 1e6:.0f} "
            f"({mid['busy'] / mid['wall_polled'] * 100:.0f}% of "
            f"{os.cpu_count()} cores busy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per run")
    parser.add_argument("--binds", default="1,4", help="comma-separated bind counts")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--profile", default=None,
                        help="write a pyinstrument profile of the daemon's timed phase here")
    parser.add_argument("--verbose", action="store_true", help="print every run's raw figures")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.count:,} messages, window 100 per bind, "
          f"TPS 1,000,000, Python {sys.version.split()[0]}")
    for binds in (int(b) for b in args.binds.split(",")):
        runs = []
        for _ in range(args.runs):
            result = run_once(binds, args.count, args.profile)
            if args.verbose:
                print("   ", result, flush=True)
            runs.append(result)
        print(summarise(binds, args.count, runs), flush=True)


if __name__ == "__main__":
    main()
