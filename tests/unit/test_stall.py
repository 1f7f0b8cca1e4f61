"""A stalled SMSC (issue 13.2): it stops answering anything, the daemon's submits
go unanswered. What is checked is what the SMSC received per connection, the
operator's state in the HTTP API and the metrics, and the messages' final states.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e

from simulators.server import SmscSimulator
from smppd.runtime.daemon import Daemon

WINDOW = 5


def freeze(sim: SmscSimulator, frozen: bool) -> None:
    """The SMSC answers nothing (no submit_sm_resp, no enquire_link_resp), as when
    its process is stopped, or answers everything again."""
    behaviour = sim.mno("op").behaviour
    behaviour.black_hole = behaviour.silent_enquire_link = frozen


async def first_bind(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{daemon.api_port}/v1/operators") as resp:
        assert resp.status == 200
        body = await resp.json()
    binds: list[dict[str, Any]] = body["operators"][0]["binds"]
    return binds[0]


async def test_a_stalled_smsc_gets_nothing_more_and_the_api_says_stalled(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op"), binds=1, window=WINDOW, tps=50,
                                 response_timeout=1.0) as (sim, daemon):
        freeze(sim, True)
        ids = await e2e.submit(daemon, 20)

        async def stalled() -> dict[str, Any] | None:
            bind = await first_bind(http, daemon)
            return bind if bind["state"] == "stalled" else None

        bind = await e2e.wait_for(stalled, 10.0, what="the bind shown as stalled")
        async with http.get(f"http://127.0.0.1:{daemon.api_port}"
                            "/v1/operators/op/binds/op%230") as resp:
            detail = await resp.json()
        assert resp.status == 200 and detail["state"] == "stalled", detail
        assert bind["last_error_reason"] == "stalled"
        assert "no submit_sm_resp" in bind["last_error"]
        frozen_conn = e2e.submits(sim, "op")[0]["conn"]
        freeze(sim, False)  # the SMSC wakes up; the daemon has given the session up

        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
        async with http.get(f"http://127.0.0.1:{daemon.api_port}/metrics") as resp:
            metrics = await resp.text()
        assert 'smppd_bind_stalls_total{bind="op#0",operator="op"} 1.0' in metrics
        assert (await first_bind(http, daemon))["state"] == "bound"

    sent = e2e.submits(sim, "op")
    on_frozen = [e for e in sent if e["conn"] == frozen_conn]
    # The window filled, and not one submit more went into the frozen connection.
    assert len(on_frozen) == WINDOW
    # The in-doubt ones went again, once each, on the next session: duplicates are at
    # most the window, and nothing else was sent twice.
    assert len(sent) == 20 + WINDOW
    per_destination = collections.Counter(e["destination_addr"] for e in sent)
    twice = {d for d, n in per_destination.items() if n == 2}
    assert twice == {e["destination_addr"] for e in on_frozen}
    assert set(per_destination.values()) == {1, 2}
