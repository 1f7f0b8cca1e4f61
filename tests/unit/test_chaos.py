"""Chaos on the SMSC link: the daemon binds through the fault proxy (driven by
toxiproxy-python) to the SMSC simulator, and each test puts one fault on that link
while messages flow: 500 ms latency, a black hole, a reset mid-window, a 1-byte
slicer, 1 KB/s, the SMSC killed and restarted.

Each run is counted from the SMSC's side (the submit_sm its recorder holds, by
destination: one per message) against the store (``simulators.tally``), once the
fault is gone and the messages have settled. Every test asserts:

* 0 lost: every accepted message is stored, and none that the store says the SMSC
  took (SUBMITTED, DELIVERED) is missing at the SMSC; at the end none is still
  ACCEPTED (the daemon runs on, so anything pending has been sent by then);
* duplicates (submit_sm received for a message already received) at most the window
  of each bind, summed over the binds (``window * binds``);
* the final states the fault allows, named in each test.

The long versions, with the daemon, the simulator and the proxy each a process of
their own, are bench/chaos.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import e2e_helpers as e2e
from chaos_helpers import SmscLink, count, fault_proxy

from simulators import Behaviour, SimConfig
from simulators.server import SmscSimulator
from simulators.tally import Tally

WINDOW, BINDS = 10, 2
# Short timers so a dead link is found in seconds: enquire_link every 1 s, the peer
# dead after 2 s of silence, a submit in doubt after 3 s without its response.
LINK = {"binds": BINDS, "window": WINDOW, "tps": 200, "enquire_link_interval": 1.0,
        "inactivity_timeout": 3.0, "response_timeout": 3.0,
        # Explicit id forms: "auto" mis-matches across SMSC lives (see test_daemon_e2e).
        "submit_resp_id": "decimal", "receipt_id": "decimal"}


def config(tmp_path: Path, link: SmscLink, **keys: Any) -> Path:
    return e2e.write_config(tmp_path, [e2e.operator("op", [link.address], **{**LINK, **keys})])


def assert_no_loss(run: Tally) -> None:
    assert not run.lost, f"lost: {run.lost}"
    assert run.pending == 0, run.states_text()
    assert run.duplicates <= WINDOW * BINDS, f"{run.duplicates} duplicates"


def assert_all_delivered_once(run: Tally, finals: dict[str, Any], messages: int) -> None:
    """Slow or sliced is not broken: every message delivered, none lost, none sent twice."""
    assert_no_loss(run)
    assert {m["state"] for m in finals.values()} == {"DELIVERED"}, run.states_text()
    assert (run.reached, run.duplicates) == (messages, 0)


async def through_a_steady_fault(tmp_path: Path, toxic: str, attributes: dict[str, int],
                                 messages: int, timeout: float,
                                 **keys: Any) -> tuple[dict[str, Any], Tally]:
    """``messages`` sent with ``toxic`` on both directions of the link from the first
    submit to the last final state: (the final states, the count at the SMSC)."""
    async with e2e.running_sim([e2e.mno("op")]) as sim, fault_proxy() as server:
        link = await SmscLink.open(server, "op", sim.port_of("op"))
        async with e2e.running_daemon(config(tmp_path, link, **keys)) as daemon:
            await e2e.wait_bound(daemon)
            await link.add_both(toxic, **attributes)
            ids = await e2e.submit(daemon, messages)
            finals = await e2e.wait_final(daemon, ids, timeout=timeout)
            return finals, await count(daemon, ids, [sim], "op")


async def through_a_cut(tmp_path: Path, toxic: str, messages: int, *, cut_after: int,
                        timeout: float, behaviour: Behaviour | None = None,
                        **keys: Any) -> tuple[dict[str, Any], Tally]:
    """``messages`` submitted; once the SMSC has ``cut_after`` of them, ``toxic`` on the
    link until every bind is down, then off again: (the final states, the count at the
    SMSC)."""
    async with e2e.running_sim([e2e.mno("op", behaviour=behaviour)]) as sim, \
            fault_proxy() as server:
        link = await SmscLink.open(server, "op", sim.port_of("op"))
        async with e2e.running_daemon(config(tmp_path, link, **keys)) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, messages)
            await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= cut_after, 10.0,
                               what=f"{cut_after} submits")
            cut = await link.add(toxic, timeout=0)
            op = daemon.operators["op"]
            await e2e.wait_for(lambda: op.bound_count == 0, 10.0, what=f"the binds down ({toxic})")
            await link.remove(cut)
            finals = await e2e.wait_final(daemon, ids, timeout=timeout)
            return finals, await count(daemon, ids, [sim], "op")


async def test_latency_500_ms(tmp_path: Path) -> None:
    finals, run = await through_a_steady_fault(tmp_path, "latency", {"latency": 500}, 100,
                                               timeout=15.0)
    assert_all_delivered_once(run, finals, 100)


async def test_black_hole(tmp_path: Path) -> None:
    # The SMSC's answers vanish (a timeout toxic, downstream, never closing): it still
    # takes the submits, so anything resent is a duplicate at the SMSC. As with the
    # defaults (30 s and 2 x 30 s), a response is overdue before the peer is declared
    # dead: 1 s, then 2 x 1 s.
    finals, run = await through_a_cut(tmp_path, "timeout", 200, cut_after=40, timeout=20.0,
                                      tps=50, response_timeout=1.0)
    assert_no_loss(run)
    # In doubt: the submits in flight when the answers stopped (at most a window per
    # bind) end UNKNOWN; every other message is delivered.
    assert set(run.states) <= {"DELIVERED", "UNKNOWN"}, run.states_text()
    # In doubt are only the submits in flight when the answers stopped, at most a
    # window per bind: each ends UNKNOWN or is sent again. Nothing new goes into a
    # connection with overdue responses (docs/reliability.md, "Submits in doubt").
    assert run.states["UNKNOWN"] + run.duplicates <= WINDOW * BINDS, run.states_text()
    assert run.most_copies <= 2  # an in-doubt submit is resent once, never more
    assert len(finals) == 200


async def test_reset_mid_window(tmp_path: Path) -> None:
    # Answers 100 ms late, so each bind's window is full when the RST comes (at each
    # side's next data).
    finals, run = await through_a_cut(tmp_path, "reset_peer", 300, cut_after=60, timeout=15.0,
                                      behaviour=Behaviour(response_delay_ms=100))
    assert_no_loss(run)
    # What was in flight at the reset is sent again: every message is delivered.
    assert {m["state"] for m in finals.values()} == {"DELIVERED"}, run.states_text()
    assert run.reached == 300


async def test_one_byte_slices(tmp_path: Path) -> None:
    # Framing is by command_length, not by read: PDUs in 1-byte pieces are whole PDUs.
    finals, run = await through_a_steady_fault(
        tmp_path, "slicer", {"average_size": 1, "size_variation": 0, "delay": 0}, 100,
        timeout=15.0)
    assert_all_delivered_once(run, finals, 100)


async def test_bandwidth_1_kb_per_second(tmp_path: Path) -> None:
    # A response may wait behind receipts at 1,000 bytes/s: 5 s before it is in doubt.
    finals, run = await through_a_steady_fault(tmp_path, "bandwidth", {"rate": 1}, 30,
                                               timeout=20.0, response_timeout=5.0)
    assert_all_delivered_once(run, finals, 30)


async def test_smsc_killed_and_restarted(tmp_path: Path) -> None:
    slow = Behaviour(response_delay_ms=100)
    first = SmscSimulator(SimConfig(mnos=[e2e.mno("op", behaviour=slow, receipt_delay_ms=300)],
                                    admin_port=None))
    await first.start()
    port = first.port_of("op")
    async with fault_proxy() as server:
        link = await SmscLink.open(server, "op", port)
        async with e2e.running_daemon(config(tmp_path, link)) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 300)
            await e2e.wait_for(lambda: len(e2e.submits(first, "op")) >= 60, 10.0, what="60 submits")
            await first.stop()  # every connection dropped, answers and receipts due gone
            op = daemon.operators["op"]
            await e2e.wait_for(lambda: op.bound_count == 0, 10.0, what="the binds lost")
            # Back on its port, its id counter past every id its first life gave.
            again = e2e.mno("op", port=port, first_id=1_000_001)
            async with e2e.running_sim([again]) as second:
                await e2e.wait_bound(daemon, timeout=10.0)
                lives = [first, second]
                died = {e["destination_addr"] for e in e2e.submits(first, "op")}

                async def settled() -> bool:
                    run = await count(daemon, ids, lives, "op")
                    return run.pending == 0 and run.states["SUBMITTED"] <= len(died) \
                        and run.states["DELIVERED"] + run.states["SUBMITTED"] == 300
                await e2e.wait_for(settled, 15.0, interval=0.2, what="messages settled")
                run = await count(daemon, ids, lives, "op")
                stored = {i: await daemon.store.get_message(i) for i in ids}
    assert_no_loss(run)
    assert run.reached == 300
    # Receipts the first life had not sent yet died with it: those messages stay
    # SUBMITTED (the SMSC took them); every other message is delivered.
    assert set(run.states) <= {"DELIVERED", "SUBMITTED"}, run.states_text()
    for message in stored.values():
        assert message is not None
        if message["state"] == "SUBMITTED":
            assert message["destination"] in died, message
