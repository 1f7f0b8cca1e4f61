"""PostgreSQL cut away while messages flow (issue 13, item 10), through the fault proxy
driven by toxiproxy-python: every store write on the message path is retried until
it is durable, so no message stays ACCEPTED although the SMSC took it, every receipt
matches once the database is back, and nothing is sent twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import e2e_helpers as e2e
import pytest
from cut_proxy import CutProxy, cut_link, dsn_via


@pytest.fixture
async def database_link(pg_dsn: str) -> AsyncIterator[tuple[CutProxy, str]]:
    """A proxy between the daemon and PostgreSQL; yields it and the DSN through it."""
    async with cut_link(pg_dsn, 5432) as proxy:
        yield proxy, dsn_via(pg_dsn, proxy.port)


async def test_postgres_cut_while_submits_are_answered_strands_nothing(
        tmp_path: Path, database_link: tuple[CutProxy, str]) -> None:
    proxy, dsn = database_link
    smsc = e2e.mno("op", receipt_delay_ms=50, record_limit=100_000)
    async with e2e.running_sim([smsc]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, tps=100, binds=2, window=10)],
                                store={"kind": "postgres", "dsn": dsn})
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 300)  # 3 s of sending at 100 TPS
            await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 50, what="sending")
            await proxy.cut()  # PostgreSQL gone for a while
            # Every submit answered while the store is cut: their SMSC ids, receipts
            # and events wait in retries.
            await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) == 300, 10.0,
                               what="answered while the store is cut")
            await proxy.restore()
            finals = await e2e.wait_final(daemon, ids, timeout=30.0)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    sent = [e["destination_addr"] for e in e2e.submits(sim, "op")]
    assert len(sent) == 300 and len(set(sent)) == 300  # each sent once
