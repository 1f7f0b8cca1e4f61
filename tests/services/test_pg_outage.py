"""PostgreSQL cut away while messages flow (issue 13, item 10), through the fault proxy
driven by toxiproxy-python: every store write on the message path is retried until
it is durable, so no message stays ACCEPTED although the SMSC took it, every receipt
matches once the database is back, and nothing is sent twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cut_proxy import CutProxy, dsn_via
from e2e_helpers import (
    _toml,
    mno,
    operator,
    running_daemon,
    running_sim,
    submit,
    submits,
    wait_bound,
    wait_final,
    wait_for,
)
from servers import migrated_database

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with migrated_database() as dsn:
        yield dsn


@pytest.fixture
async def database_link(pg_dsn: str) -> AsyncIterator[tuple[CutProxy, str]]:
    """A proxy between the daemon and PostgreSQL; yields it and the DSN through it."""
    target = urlsplit(pg_dsn)
    proxy = await CutProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    try:
        yield proxy, dsn_via(pg_dsn, proxy.port)
    finally:
        await proxy.close()


def write_config(directory: Path, sim: Any, dsn: str) -> Path:
    lines = [
        "[daemon]", f"state_dir = {_toml(str(directory / 'state'))}", "drain_timeout = 5.0",
        "[api]", 'listen = "127.0.0.1:0"',
        "[store]", 'kind = "postgres"', f"dsn = {_toml(dsn)}", "receipt_hold_seconds = 5.0",
        "[[operators]]",
        *(f"{k} = {_toml(v)}" for k, v in operator("op", sim, tps=100, binds=2,
                                                   window=10).items()),
    ]
    path = directory / "smppd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_postgres_cut_while_submits_are_answered_strands_nothing(
        tmp_path: Path, database_link: tuple[CutProxy, str]) -> None:
    proxy, dsn = database_link
    smsc = mno("op", receipt_delay_ms=50, record_limit=100_000)
    async with running_sim([smsc]) as sim, \
            running_daemon(write_config(tmp_path, sim, dsn)) as daemon:
        await wait_bound(daemon)
        ids = await submit(daemon, 300)  # 3 s of sending at 100 TPS
        await wait_for(lambda: len(submits(sim, "op")) >= 50, what="sending")
        await proxy.cut()  # PostgreSQL gone for a while
        # Every submit answered while the store is cut: their SMSC ids, receipts
        # and events wait in retries.
        await wait_for(lambda: len(submits(sim, "op")) == 300, 10.0,
                       what="answered while the store is cut")
        await proxy.restore()
        finals = await wait_final(daemon, ids, timeout=30.0)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    sent = [e["destination_addr"] for e in submits(sim, "op")]
    assert len(sent) == 300 and len(set(sent)) == 300  # each sent once
