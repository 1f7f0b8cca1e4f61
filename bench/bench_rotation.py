"""Credential rotation under load: 5 operators x 2 binds, credentials in a real OpenBao.

    .venv/bin/python bench/bench_rotation.py                  # 1,000 msg/s, 30 s, rotate at 10 s
    .venv/bin/python bench/bench_rotation.py --rate 1000 --duration 30 --rotate-at 10

One process runs (uvloop) the SMSC simulator (5 MNOs on port 0, one account each with
max_binds 2, every receipt DELIVRD, admin API on port 0) and the daemon (``Daemon``,
SQLite store) with 5 operators x 2 binds whose passwords come from a ``bao server -dev``
child process through AppRole, polled every 0.5 s. A load task accepts ``--rate``
messages/s through ``daemon.submit`` on a fixed schedule (round robin over the
operators). At ``--rotate-at`` the rotation job itself (``vault.rotate.run`` with
``--all --smsc-admin``: the simulator accepts old and new, then KV version 2 with
check-and-set) rotates every operator. Measured:

- rebind time: from the job's start until the daemon has rotated all 5 operators
  (``VaultCredentials.rotations``) and every bind is up again;
- then, still under load, the old passwords are retired at the simulator and each
  operator is rebound once more: every bind must come back (the new password is in use);
- lost: accepted messages without a final state 30 s after the load stops;
- failed: final state other than DELIVERED;
- send rate: accepted/s and submit_sm/s at the simulator (and its slowest second).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from vault_fixtures import BaoServer, setup_approle, start_bao  # noqa: E402

from control.view import InputError  # noqa: E402
from simulators import AccountConfig, MnoConfig, ReceiptConfig, SimConfig  # noqa: E402
from simulators.server import SmscSimulator  # noqa: E402
from smppd.config import Config  # noqa: E402
from smppd.runtime.daemon import Daemon  # noqa: E402
from vault import rotate  # noqa: E402

OPERATORS = ["roshan", "etisalat", "mtn", "awcc", "salaam"]
PREFIXES = {op: f"937{i + 1}" for i, op in enumerate(OPERATORS)}
SYSTEM_ID = "esme"
OLD = "pwold001"
KV_PREFIX = "bench"
FINAL = {"DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED", "FAILED", "UNKNOWN"}


def sim_config() -> SimConfig:
    return SimConfig(admin_port=0, mnos=[MnoConfig(
        name=op, port=0, record=False,
        accounts=[AccountConfig(SYSTEM_ID, [OLD], tps=5000, max_binds=2)],
        receipts=ReceiptConfig(delay_ms=(5.0, 20.0), outcomes={"DELIVRD": 1.0}),
    ) for op in OPERATORS])


def daemon_config(sim: SmscSimulator, bao: BaoServer, workdir: Path) -> Config:
    role_id, secret_file = setup_approle(bao, "smppd-bench", KV_PREFIX, workdir)
    return Config.model_validate({
        "daemon": {"state_dir": str(workdir / "state"), "drain_timeout": 5.0},
        "api": {"listen": "127.0.0.1:0"},
        "vault": {"addr": bao.addr, "auth": "approle", "role_id": role_id,
                  "secret_id_file": str(secret_file),
                  "path_template": KV_PREFIX + "/{operator_id}", "poll_interval": 0.5},
        "operators": [{
            "id": op, "prefixes": [PREFIXES[op]], "hosts": [f"127.0.0.1:{sim.port_of(op)}"],
            "system_id": SYSTEM_ID, "credentials": "vault", "binds": 2, "window": 20,
            "tps": 1000, "reconnect_min": 0.05, "reconnect_max": 0.3,
        } for op in OPERATORS],
    })


async def wait_until(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` every 10 ms; returns the perf_counter() when it held."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.perf_counter()


class Load:
    """``rate`` messages/s through daemon.submit, in 20 ms batches on a fixed schedule."""

    TICK = 0.02

    def __init__(self, daemon: Daemon, rate: int) -> None:
        self.daemon = daemon
        self.per_tick = max(1, round(rate * self.TICK))
        self.ids: list[str] = []
        self.rejected = 0
        self.late_ticks = 0
        self.started = self.stopped = 0.0
        self._running = True

    async def run(self) -> None:
        self.started = time.perf_counter()
        n = 0
        tick = 0
        while self._running:
            bodies = []
            for _ in range(self.per_tick):
                op = OPERATORS[n % len(OPERATORS)]
                bodies.append({"tenant_id": "t1", "source": "SMPPD",
                               "destination": f"+{PREFIXES[op]}{n % 10_000_000:07d}",
                               "text": "Your code is 482913", "registered_delivery": True})
                n += 1
            try:
                accepted = await self.daemon.submit(bodies, None)
            except InputError:  # refused, nothing stored (e.g. a sender not leased: 403)
                self.rejected += len(bodies)
            else:
                self.ids.extend(a["message_id"] for a in accepted)
            tick += 1
            delay = self.started + tick * self.TICK - time.perf_counter()
            if delay < 0:
                self.late_ticks += 1
            await asyncio.sleep(max(0.0, delay))
        self.stopped = time.perf_counter()

    def stop(self) -> None:
        self._running = False


async def sample_submits(sim: SmscSimulator, out: list[tuple[float, int]]) -> None:
    """(time, total submit_sm at the simulator) every second, for the per-second rates."""
    while True:
        out.append((time.perf_counter(), sum(sim.mno(op).counters.submits for op in OPERATORS)))
        await asyncio.sleep(1.0)


def all_bound(daemon: Daemon) -> bool:
    return all(op.bound_count == len(op.binds) for op in daemon.operators.values())


def states(db_path: Path, ids: list[str]) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        found = dict(db.execute("SELECT message_id, state FROM messages").fetchall())
    return {i: found.get(i, "MISSING") for i in ids}


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    bao = start_bao(workdir)
    try:
        root = bao.root()
        for op in OPERATORS:
            root.secrets.kv.v2.create_or_update_secret(
                path=f"{KV_PREFIX}/{op}", secret={"system_id": SYSTEM_ID, "password": OLD},
                mount_point="secret")
        job_dir = workdir / "job"
        job_dir.mkdir()
        job_role, job_secret = setup_approle(bao, "smppd-rotate", KV_PREFIX, job_dir)
        sim = SmscSimulator(sim_config())
        await sim.start()
        try:
            daemon = Daemon(daemon_config(sim, bao, workdir))
            await daemon.start()
            try:
                return await run_load(args, sim, daemon, bao, job_role, job_secret)
            finally:
                await daemon.stop()
        finally:
            await sim.stop()
    finally:
        bao.stop()


async def run_load(args: argparse.Namespace, sim: SmscSimulator, daemon: Daemon,
                   bao: BaoServer, job_role: str, job_secret: Path) -> dict[str, Any]:
    vault = daemon.vault
    assert vault is not None
    await wait_until(lambda: all_bound(daemon), 10.0, "binds up")
    load = Load(daemon, args.rate)
    samples: list[tuple[float, int]] = []
    sampler = asyncio.ensure_future(sample_submits(sim, samples))
    sender = asyncio.ensure_future(load.run())
    await asyncio.sleep(args.rotate_at)

    # The rotation job: SMSC accepts old + new, then KV v2 with check-and-set.
    binds_before = {op: sim.mno(op).counters.binds for op in OPERATORS}
    argv = ["--vault-addr", bao.addr, "--auth", "approle", "--role-id", job_role,
            "--secret-id-file", str(job_secret), "--path-template", KV_PREFIX + "/{operator_id}",
            "--all", "--smsc-admin", f"http://127.0.0.1:{sim.admin_port}"]
    t_job = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = await rotate.run(argv)
    t_written = time.perf_counter()
    if rc != 0:
        raise SystemExit(f"smppd-rotate exited {rc}")
    t_rebound = await wait_until(
        lambda: vault.rotations >= len(OPERATORS) and all_bound(daemon), 120.0,
        "every operator rotated and rebound")
    new_binds = {op: sim.mno(op).counters.binds - binds_before[op] for op in OPERATORS}
    versions = {op: vault.store.version(op) for op in OPERATORS}

    # Retire the old passwords at the SMSC; one more rebind per operator must succeed.
    refusals_before = sum(sim.mno(op).counters.bind_refusals for op in OPERATORS)
    binds_before = {op: sim.mno(op).counters.binds for op in OPERATORS}
    for op in OPERATORS:
        data = bao.root().secrets.kv.v2.read_secret_version(
            path=f"{KV_PREFIX}/{op}", mount_point="secret", raise_on_deleted_version=True)
        sim.mno(op).set_passwords(SYSTEM_ID, [data["data"]["data"]["password"]])
    t_retire = time.perf_counter()
    proved = all(await asyncio.gather(*(daemon.operators[op].rebind(timeout=30.0)
                                        for op in OPERATORS)))
    t_proved = time.perf_counter()
    refusals = sum(sim.mno(op).counters.bind_refusals for op in OPERATORS) - refusals_before
    proof_binds = sum(sim.mno(op).counters.binds - binds_before[op] for op in OPERATORS)

    remaining = args.duration - (time.perf_counter() - load.started)
    await asyncio.sleep(max(0.0, remaining))
    load.stop()
    await sender
    sampler.cancel()
    submits_at_stop = sum(sim.mno(op).counters.submits for op in OPERATORS)

    # Every accepted message must reach a final state.
    db_path = Path(daemon.config.sqlite_path)
    final: dict[str, str] = {}
    deadline = time.perf_counter() + args.settle
    while True:
        final = states(db_path, load.ids)
        if all(s in FINAL for s in final.values()) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.5)
    load_s = load.stopped - load.started
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples)
             if b[0] <= load.stopped]
    rot_rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples)
                 if b[0] >= t_job and a[0] <= t_proved]
    return {
        "accepted": len(load.ids), "rejected": load.rejected, "late_ticks": load.late_ticks,
        "lost": sum(1 for s in final.values() if s not in FINAL),
        "failed": sum(1 for s in final.values() if s in FINAL and s != "DELIVERED"),
        "delivered": sum(1 for s in final.values() if s == "DELIVERED"),
        "job_s": t_written - t_job, "rebind_s": t_rebound - t_job,
        "rotations": vault.rotations, "failed_rotations": vault.failed_rotations,
        "versions": versions, "new_binds": new_binds,
        "proved": proved, "prove_s": t_proved - t_retire, "prove_refusals": refusals,
        "proof_binds": proof_binds,
        "alybnd": sum(sim.mno(op).counters.alybnd_refusals for op in OPERATORS),
        "load_s": load_s, "accept_rate": len(load.ids) / load_s,
        "submit_rate": submits_at_stop / load_s,
        "min_rate": min(rates, default=0.0), "min_rate_rotation": min(rot_rates, default=0.0),
        "submits": sum(sim.mno(op).counters.submits for op in OPERATORS),
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [
        ("messages accepted", f"{r['accepted']:,} (rejected {r['rejected']})"),
        ("lost (no final state)", f"{r['lost']}  (goal 0)"),
        ("failed (final != DELIVERED)", f"{r['failed']}  (goal 0)"),
        ("delivered", f"{r['delivered']:,}"),
        ("submit_sm at the SMSC", f"{r['submits']:,} (duplicates "
                                   f"{r['submits'] - r['accepted']})"),
        ("rotation job (5 KV writes)", f"{r['job_s'] * 1000:.0f} ms"),
        ("job start -> 5 x 2 rebound", f"{r['rebind_s']:.2f} s  (goal <= 60 s)"),
        ("rotations / failed", f"{r['rotations']} / {r['failed_rotations']}"),
        ("KV versions in use", ", ".join(f"{k}={v}" for k, v in r["versions"].items())),
        ("new binds per operator", ", ".join(f"{k}={v}" for k, v in r["new_binds"].items())),
        ("old retired, rebind ok", f"{r['proved']} in {r['prove_s']:.2f} s: "
                                   f"{r['proof_binds']} binds, {r['prove_refusals']} refused"),
        ("ESME_RALYBND over the run", f"{r['alybnd']}"),
        ("accepted/s", f"{r['accept_rate']:.0f} (target {args.rate}, late ticks "
                       f"{r['late_ticks']})"),
        ("submit_sm/s", f"{r['submit_rate']:.0f} over {r['load_s']:.1f} s"),
        ("slowest second (all / rotation)", f"{r['min_rate']:.0f} / "
                                            f"{r['min_rate_rotation']:.0f} submit_sm/s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=int, default=1000, help="messages/s accepted")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--rotate-at", type=float, default=10.0, help="seconds into the load")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds to wait for final states after the load")
    args = p.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp:
        result = uvloop.run(bench(args, Path(tmp)))
    report(result, args)
    ok = (result["lost"] == 0 and result["failed"] == 0 and result["proved"]
          and result["rebind_s"] <= 60.0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
