"""Distributed mode with a dependency cut (issue 14): PostgreSQL, Redis, NATS, Vault, and
PostgreSQL with Redis together, each cut for a few seconds while 200 messages/s come in
(100/s as HTTP bulk submits, 100/s as dispatch commands published to JetStream).

Each dependency is reached through a proxy of the fault proxy (``tests/cut_proxy.py``);
a cut drops every connection and refuses new ones, as a dead host would. Asserted, on
what a user sees:

- the daemon stays up: /healthz answers every sample, both binds stay up;
- nothing is lost: every message answered 202 or published is in PostgreSQL (read
  directly, not through the proxy), submitted at the SMSC, none left ACCEPTED,
  duplicates at most a window per bind, a DLR event for each one DELIVERED; a bulk
  not answered 202 is stored whole or not at all; every receipt stored on its own
  message, although the simulator's ids start again at 1 in every test, so the
  database the tests share holds older parts under the same ids
  (``test_every_receipt_is_stored``);
- ValidateLease fails closed: a sender never looked up before is denied
  ``UNAVAILABLE`` (HTTP 503) while PostgreSQL is cut, and answered from the database
  while only Redis is;
- /readyz is 503 while the store or NATS is cut, 200 while Redis or Vault is (reported
  there, not required);
- it recovers without a restart: /readyz 200 with every dependency ok again.

The long versions (30 s cuts) are rows of bench/chaos.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import e2e_helpers as e2e
import nats
import pytest
import redis.asyncio as aioredis
from cut_proxy import CutProxy, cut_link, dsn_via
from deps_chaos import Load, ReadyWatch, put_lease, rows_of, stored, validate
from servers import NATS_URL, REDIS_URL, delete_streams
from vault_fixtures import BaoServer, bao, setup_approle  # noqa: F401

from simulators.server import SmscSimulator
from simulators.tally import tally

BINDS, WINDOW = 2, 10
CUT_SECONDS = 3.0
REQUIRED = {"postgres": True, "redis": False, "nats": True, "vault": False}
# ValidateLease of a sender never looked up, during the cut: (HTTP status, reason_code).
LEASE_DURING = {"postgres": (503, "UNAVAILABLE"), "redis": (200, "OK"),
                "postgres+redis": (503, "UNAVAILABLE"), "nats": (200, "OK"),
                "vault": (200, "OK")}
READY_NAME = {"postgres": "store", "redis": "redis", "nats": "nats", "vault": "vault"}


@contextlib.asynccontextmanager
async def links(pg_dsn: str, server: BaoServer) -> AsyncIterator[dict[str, CutProxy]]:
    """A cuttable proxy in front of each of the four dependencies."""
    targets = {"postgres": pg_dsn, "redis": REDIS_URL, "nats": NATS_URL, "vault": server.addr}
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(cut_link(url, 0))
               for name, url in targets.items()}


def write_config(directory: Path, sim: SmscSimulator, pg_dsn: str, server: BaoServer,
                 proxies: dict[str, CutProxy], names: dict[str, str], prefix: str,
                 api_port: int) -> Path:
    role_id, secret_file = setup_approle(server, f"smppd-{prefix}", prefix, directory)
    server.root().secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/op", secret={"system_id": "esme", "password": "secret"},
        mount_point="secret")
    table = e2e.operator("op", sim, binds=BINDS, window=WINDOW, tps=400,
                         submit_resp_id="decimal", receipt_id="decimal")
    del table["password"]
    table["credentials"] = "vault"
    redis_db = urlsplit(REDIS_URL).path.lstrip("/") or "0"
    return e2e.write_config(
        directory, [table], api_port=api_port,
        daemon={"mode": "distributed"},
        store={"kind": "postgres", "dsn": dsn_via(pg_dsn, proxies["postgres"].port)},
        redis={"url": f"redis://127.0.0.1:{proxies['redis'].port}/{redis_db}",
               "key_prefix": prefix, "replicas": 1},
        nats={"url": f"nats://127.0.0.1:{proxies['nats'].port}", "ack_wait": 2.0, **names},
        leases={"key_prefix": prefix + ":lease:"},
        vault={"addr": f"http://127.0.0.1:{proxies['vault'].port}", "auth": "approle",
               "role_id": role_id, "secret_id_file": str(secret_file),
               "path_template": f"{prefix}/{{operator_id}}", "poll_interval": 0.5})


async def clean_up(names: dict[str, str], prefix: str) -> None:
    await delete_streams(names)
    base = int(urlsplit(REDIS_URL).path.lstrip("/") or 0)
    for db in (base, 7):  # the store's and buckets' keys; the lease cache's
        client = aioredis.Redis.from_url(REDIS_URL, db=db)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _receipts(sim: SmscSimulator) -> str:
    """What the SMSC says of its receipts: deliver_sm sent, the answers' statuses."""
    recorder = sim.mno("op").recorder
    answers = collections.Counter(e["status"] for e in recorder.entries("deliver_sm_resp"))
    return f"{len(recorder.entries('deliver_sm'))} deliver_sm, answers {dict(answers)}"


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


@dataclass
class Outcome:
    load: Load
    watch: ReadyWatch
    lease: tuple[int, dict[str, Any]]
    states: dict[str, str]  # promised message id -> state, once settled
    sent: list[str]  # destination of each submit_sm at the SMSC
    kept: dict[str, str]  # the bulks not answered 202: id -> state, of those stored
    dlr_events: int
    receipts: str  # what the SMSC says of its deliver_sm
    stuck: list[dict[str, Any]]  # rows of the messages not DELIVERED


async def cut_under_load(tmp_path: Path, pg_dsn: str, server: BaoServer, cut: str) -> Outcome:
    """One daemon, 200 messages/s for 1 s, then ``cut`` for CUT_SECONDS, then 1 s more;
    waits until /readyz is 200 again and the states stop moving."""
    names = e2e.nats_names()
    prefix = f"deps{uuid.uuid4().hex[:8]}"
    api_port = e2e.free_port()
    url = f"http://127.0.0.1:{api_port}"
    nc = await nats.connect(NATS_URL)
    try:
        async with links(pg_dsn, server) as proxies, \
                e2e.running_sim([e2e.mno("op", record_limit=100_000)]) as sim, \
                e2e.running_daemon(write_config(tmp_path, sim, pg_dsn, server, proxies, names,
                                                prefix, api_port)) as daemon:
            await e2e.wait_bound(daemon)
            await put_lease(url, "SMPPD")  # the load's sender, cached by its first check
            fresh = f"F{uuid.uuid4().hex[:10]}"
            await put_lease(url, fresh)  # registered, never looked up: not cached
            watch = ReadyWatch(url)
            watch.start()
            load = Load(url, nc.jetstream(), f"{names['dispatch_subject']}.op")
            stop = asyncio.Event()
            loading = asyncio.ensure_future(load.run(stop))
            await asyncio.sleep(1.0)
            cut_now = [proxies[name] for name in cut.split("+")]
            watch.phase = "cut"
            for proxy in cut_now:
                await proxy.cut()
            await asyncio.sleep(CUT_SECONDS / 2)
            lease = await validate(url, fresh)
            await asyncio.sleep(CUT_SECONDS / 2)
            watch.phase = "after"
            for proxy in cut_now:
                await proxy.restore()
            await asyncio.sleep(1.0)
            stop.set()
            await loading

            async def recovered() -> bool:
                last = watch.samples[-1] if watch.samples else None
                return (last is not None and last.phase == "after" and last.status == 200
                        and all(last.body.get(n) == "ok" for n in READY_NAME.values()))
            await e2e.wait_for(recovered, 30.0, interval=0.1, what="/readyz 200, all ok")
            promised = load.promised()
            wanted = set(promised.values())
            await e2e.wait_for(
                lambda: wanted <= {e["destination_addr"] for e in e2e.submits(sim, "op")},
                60.0, interval=0.2, what="every promised message submitted")
            states = await settled(pg_dsn, list(promised))
            await watch.stop()
            cut_bulks = load.refused + load.cut_off
            kept = await stored(pg_dsn, [i for bulk in cut_bulks for i in bulk])
            delivered = sum(1 for v in [*states.values(), *kept.values()] if v == "DELIVERED")

            async def dlr_events() -> int:
                info = await nc.jetstream().stream_info(names["dlr_stream"])
                return int(info.state.messages)
            with contextlib.suppress(AssertionError):  # counted below
                await e2e.wait_for(lambda: _at_least(dlr_events(), delivered), 30.0,
                                   interval=0.25, what="a DLR event per message delivered")
            assert daemon.ready
            return Outcome(load, watch, lease, states,
                           [e["destination_addr"] for e in e2e.submits(sim, "op")], kept,
                           await dlr_events(), _receipts(sim), await rows_of(
                               pg_dsn, [i for i, v in states.items() if v != "DELIVERED"]))
    finally:
        await nc.close()
        await clean_up(names, prefix)


async def settled(dsn: str, ids: list[str], quiet: float = 10.0) -> dict[str, str]:
    """The states of ``ids`` once all are DELIVERED, or none has changed for ``quiet`` s."""
    last: dict[str, str] = {}
    since = time.monotonic()
    while True:
        states = await stored(dsn, ids)
        if states != last:
            last, since = states, time.monotonic()
        if (set(states.values()) == {"DELIVERED"} and len(states) == len(ids)) or \
                time.monotonic() - since >= quiet:
            return states
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("cut", ["postgres", "redis", "nats", "vault", "postgres+redis"])
async def test_dependency_cut_under_load(tmp_path: Path, pg_dsn: str, bao: BaoServer,  # noqa: F811
                                         cut: str) -> None:
    out = await cut_under_load(tmp_path, pg_dsn, bao, cut)
    load, watch, lease = out.load, out.watch, out.lease
    promised = load.promised()
    run = tally(promised, out.sent, out.states)
    assert run.lost == [] and run.pending == 0, run.to_dict()
    # SUBMITTED: at the SMSC, its receipt not applied (see test_every_receipt_is_applied).
    assert set(run.states) <= {"DELIVERED", "SUBMITTED"}, run.to_dict()
    assert run.duplicates <= BINDS * WINDOW, f"{run.duplicates} duplicates"
    assert load.answered and load.published  # the load ran
    cut_bulks = load.refused + load.cut_off
    for bulk in cut_bulks:  # a bulk without a 202 is stored whole or not at all
        assert len(out.kept.keys() & bulk.keys()) in (0, len(bulk)), sorted(bulk)[0]
    assert not set(out.sent) - set(promised.values()) - {
        d for b in cut_bulks for i, d in b.items() if i in out.kept}
    delivered = sum(1 for v in [*out.states.values(), *out.kept.values()] if v == "DELIVERED")
    assert out.dlr_events >= delivered, f"{out.dlr_events} DLR events, {delivered} DELIVERED"

    assert watch.healthz_failures == 0, "the daemon stopped answering /healthz"
    binds_seen = {s.body.get("binds_up", {}).get("op") for s in watch.samples}
    assert binds_seen == {BINDS}, f"binds up seen: {binds_seen}"
    assert (lease[0], lease[1].get("reason_code")) == LEASE_DURING[cut], lease
    assert lease[1]["allowed"] is (LEASE_DURING[cut][1] == "OK")

    during = watch.during("cut")
    for name in cut.split("+"):
        assert any(s.body.get(READY_NAME[name]) not in (None, "ok") for s in during), \
            f"/readyz never reported {READY_NAME[name]} down: {[s.body for s in during]}"
    if any(REQUIRED[name] for name in cut.split("+")):
        assert any(s.status == 503 for s in during), [s.status for s in during]
    else:
        assert {s.status for s in during} == {200}, [s.status for s in during]


@pytest.mark.parametrize("cut", ["nats", "postgres+redis"])
async def test_every_receipt_is_stored(tmp_path: Path, pg_dsn: str, bao: BaoServer,  # noqa: F811
                                       cut: str) -> None:
    out = await cut_under_load(tmp_path, pg_dsn, bao, cut)
    assert not out.stuck, (f"{len(out.stuck)} of {len(out.states)} not DELIVERED, "
                           f"{out.dlr_events} DLR events; at the SMSC: {out.receipts}; "
                           f"rows: {out.stuck[:3]}")
