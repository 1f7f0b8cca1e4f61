"""The daemon's send path and end-to-end rate against the simulator in another process.

    python bench/bench_daemon.py                         # both modes, 1 and 4 binds, 3 runs
    python bench/bench_daemon.py --mode sender --binds 1 --runs 1 --profile /tmp/p.txt

Each run starts the SMSC simulator (uvloop) in one child process and the daemon
(``Daemon``: SQLite store, dispatcher, operator, binds, control API; uvloop) in
another, so each has its own core and its own RSS. The daemon starts with its operator
paused, accepts ``--count`` messages through ``Dispatcher.accept`` (validated, durable
in SQLite, queued), waits for every bind, then resumes and starts the clock:

- sender: registered_delivery 0; the clock stops at the last submit_sm_resp
  (submit_sm/s), and again once every SMSC id is durable in SQLite.
- e2e: registered_delivery 1, the simulator answers every submit with a DELIVRD
  receipt 1-5 ms later; the clock stops when every receipt is matched and committed.
  Then the SQLite file is checked: every message DELIVERED, every part with its
  SMSC id, no orphan receipts.

The operator's TPS is 1,000,000 so the token bucket is not the limit; the window is
100 per bind. CPU is user+system seconds of each process over the timed interval (and
of the event loop's thread alone); RSS is each process's peak (VmHWM) over its life,
pre-queued messages included.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_operator, simulator_process

TEXT = "Your verification code is 482913. It expires in 5 minutes."
SIM_WINDOW = 100


def _proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process, from /proc."""
    return _proc_cpu_path(Path(f"/proc/{pid}/stat"))


def _proc_cpu_path(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_mem(pid: int, key: str) -> float:
    """A /proc/PID/status memory line (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the simulator process ----------------------------------------------------------------


# -- the daemon process -------------------------------------------------------------------


def _daemon_config(port: int, binds: int, state_dir: str) -> Any:
    from smppd.config import Config

    return Config.model_validate({
        "daemon": {"state_dir": state_dir, "drain_timeout": 5.0},
        "api": {"listen": "127.0.0.1:0"},
        "operators": [bench_operator(port, binds)],
    })


async def _daemon_run(port: int, binds: int, count: int, e2e: bool, state_dir: str,
                      profile: str | None) -> dict[str, Any]:
    from smppd.runtime.daemon import Daemon

    daemon = Daemon(_daemon_config(port, binds, state_dir))
    op = daemon.operators["bench"]
    op.pause_gate.close()
    await daemon.start()
    # Accept (validate, store durably, queue) in API-sized batches, before the binds.
    started = time.perf_counter()
    for start in range(0, count, 1000):
        prepared = [daemon.dispatcher.prepare({
            "message_id": f"m{i:08d}", "tenant_id": "bench", "source": "SMPPD",
            "destination": f"+93700{i % 1_000_000:06d}", "text": TEXT,
            "registered_delivery": e2e,
        }) for i in range(start, min(count, start + 1000))]
        await daemon.dispatcher.accept(prepared)
    accept_s = time.perf_counter() - started
    while op.bound_count < binds:  # noqa: ASYNC110 - a bench polls; no event to wait on
        await asyncio.sleep(0.01)

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    pid = os.getpid()
    loop_stat = Path(f"/proc/{pid}/task/{threading.get_native_id()}/stat")
    loop_cpu0 = _proc_cpu_path(loop_stat)
    cpu0, t0 = _proc_cpu(pid), time.perf_counter()
    op.pause_gate.open()
    counters = op.counters
    responses_s = None
    while True:
        answered = counters["submit_ok"] + counters["submit_error"]
        if responses_s is None and answered >= count:
            responses_s = time.perf_counter() - t0
        if e2e and counters["receipts"] >= count:
            break
        if not e2e and responses_s is not None:
            await daemon.dispatcher.settle()  # every SMSC id committed
            break
        await asyncio.sleep(0.002)
    done_s = time.perf_counter() - t0
    cpu = _proc_cpu(pid) - cpu0
    loop_cpu = _proc_cpu_path(loop_stat) - loop_cpu0  # the event loop's thread alone
    if profiler is not None:
        profiler.stop()
        assert profile is not None
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        Path(profile).write_text(text)  # noqa: ASYNC240 - after the timed part
    rss_now, rss_peak = _proc_mem(pid, "VmRSS"), _proc_mem(pid, "VmHWM")
    await daemon.stop()
    check = _check_store(str(daemon.config.sqlite_path), e2e)
    return {"accept_s": accept_s, "responses_s": responses_s, "done_s": done_s, "cpu": cpu,
            "loop_cpu": loop_cpu,
            "rss_peak": rss_peak, "rss_end": rss_now,
            "submit_error": counters["submit_error"], **check}


def _check_store(path: str, e2e: bool) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        states = dict(db.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall())
        with_id = db.execute("SELECT count(*) FROM parts WHERE smsc_id IS NOT NULL").fetchone()[0]
        orphans = db.execute("SELECT count(*) FROM orphan_receipts").fetchone()[0]
    return {"delivered": states.get("DELIVERED", 0), "submitted": states.get("SUBMITTED", 0),
            "parts_with_id": with_id, "orphans": orphans}


def _daemon(pipe: Connection, port: int, binds: int, count: int, e2e: bool,
            profile: str | None) -> None:
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        pipe.send(uvloop.run(_daemon_run(port, binds, count, e2e, tmp, profile)))


# -- the driver ---------------------------------------------------------------------------


def run_once(*, e2e: bool, binds: int, count: int, profile: str | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # fresh interpreters: RSS is the daemon's own
    sim_pipe, sim_child = ctx.Pipe()
    sim = ctx.Process(target=simulator_process, args=(sim_child, SIM_WINDOW, 4, e2e),
                      daemon=True)
    sim.start()
    port = sim_pipe.recv()
    dae_pipe, dae_child = ctx.Pipe()
    dae = ctx.Process(target=_daemon, args=(dae_child, port, binds, count, e2e, profile),
                      daemon=True)
    dae.start()
    sim_cpu0 = _proc_cpu(sim.pid or 0)
    result: dict[str, Any] = dae_pipe.recv()
    # The simulator's CPU over the daemon's whole sending phase (it idles otherwise).
    result["sim_cpu"] = _proc_cpu(sim.pid or 0) - sim_cpu0
    result["sim_rss"] = _proc_mem(sim.pid or 0, "VmHWM")
    sim_pipe.send("stop")
    result["sim"] = sim_pipe.recv()
    dae.join(30)
    sim.join(30)
    return result


def summarise(label: str, count: int, e2e: bool, runs: list[dict[str, Any]]) -> str:
    rate_key = "done_s" if e2e else "responses_s"
    rates = [count / r[rate_key] for r in runs]
    median = statistics.median(rates)
    mid = runs[rates.index(sorted(rates)[len(rates) // 2])]
    wall = mid[rate_key]
    line = (f"{label:<22} {median:>9,.0f}/s  (runs: {', '.join(f'{x:,.0f}' for x in rates)})"
            f"  daemon CPU {mid['cpu'] / mid['done_s'] * 100:4.0f}%"
            f" ({mid['cpu'] / count * 1e6:.0f} us/msg, loop thread"
            f" {mid['loop_cpu'] / count * 1e6:.0f})  RSS peak "
            f"{mid['rss_peak']:.0f} MB  sim CPU {mid['sim_cpu'] / wall * 100:4.0f}%"
            f"  sim RSS {mid['sim_rss']:.0f} MB")
    if not e2e:
        line += f"  (SMSC ids durable: {count / mid['done_s']:,.0f}/s)"
    else:
        ok = all(r["delivered"] == count and r["parts_with_id"] == count and not r["orphans"]
                 for r in runs)
        line += f"  matched==sent: {'yes' if ok else 'NO'}"
    line += f"  [accept {count / mid['accept_s']:,.0f}/s]"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("sender", "e2e", "all"), default="all")
    parser.add_argument("--binds", default="1,4", help="comma-separated bind counts")
    parser.add_argument("--count", type=int, default=None,
                        help="messages per run (default 200,000 sender, 100,000 e2e)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default=None,
                        help="write a pyinstrument profile of the daemon's timed phase here")
    parser.add_argument("--verbose", action="store_true", help="print every run's raw figures")
    args = parser.parse_args()
    modes = {"sender": [False], "e2e": [True], "all": [False, True]}[args.mode]
    print(f"{os.cpu_count()} CPUs, window 100 per bind, TPS 1,000,000, Python "
          f"{sys.version.split()[0]}")
    for e2e in modes:
        count = args.count or (100_000 if e2e else 200_000)
        for binds in (int(b) for b in args.binds.split(",")):
            runs = []
            for _ in range(args.runs):
                result = run_once(e2e=e2e, binds=binds, count=count, profile=args.profile)
                if args.verbose:
                    print("   ", result, flush=True)
                runs.append(result)
            label = f"{'e2e' if e2e else 'sender'}, {binds} bind{'s' if binds > 1 else ''}"
            print(summarise(label, count, e2e, runs), flush=True)


if __name__ == "__main__":
    main()
