"""The daemon end to end against the SMSC simulator, through real TCP.

Every assertion is on what a user or the SMSC sees: the PDUs and counters the
simulator recorded, and message states in the store.
"""

from __future__ import annotations

import collections
import re
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import e2e_helpers as e2e

from simulators import Behaviour
from simulators.server import SmscSimulator
from smppd.protocol.constants import Status
from smppd.runtime.daemon import Daemon

LONG_TEXT = "This text is long enough to need two segments. " * 4  # 192 GSM characters
RECEIPT_ID = re.compile(r"id:(\S+)")


def _receipt_ids(entries: list[dict[str, object]]) -> list[tuple[str, int]]:
    """(id in the receipt text, connection) of each deliver_sm the SMSC sent."""
    found = []
    for entry in entries:
        match = RECEIPT_ID.search(bytes.fromhex(str(entry["short_message"])).decode("latin-1"))
        assert match, entry
        found.append((match.group(1), int(str(entry["conn"]))))
    return found


# --------------------------------------------------------------------------- binds


async def test_failover_to_backup_and_back_to_primary(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("backup")]) as backup, \
            e2e.running_sim([e2e.mno("primary")]) as primary:
        primary_port = primary.port_of("primary")
        await primary.stop()  # nothing listens on the primary's port now
        hosts = [f"127.0.0.1:{primary_port}", f"127.0.0.1:{backup.port_of('backup')}"]
        path = e2e.write_config(tmp_path, [e2e.operator("op", hosts, binds=2)])
        async with e2e.running_daemon(path) as daemon:
            op = daemon.operators["op"]
            await e2e.wait_bound(daemon)
            assert backup.mno("backup").bound_count == 2
            assert all(not b.status()["on_primary"] for b in op.binds)

            ids = await e2e.submit(daemon, 5)
            await e2e.wait_final(daemon, ids)
            assert len(e2e.submits(backup, "backup")) == 5

            # The primary comes back on its port: every bind fails back to it.
            async with e2e.running_sim([e2e.mno("primary", port=primary_port)]) as back:
                await e2e.wait_for(lambda: back.mno("primary").bound_count == 2, 5.0,
                                   what="failback to the primary")
                await e2e.wait_for(lambda: backup.mno("backup").bound_count == 0, 5.0,
                                   what="backup binds released")
                await e2e.wait_bound(daemon)
                assert all(b.status()["on_primary"] for b in op.binds)
                ids = await e2e.submit(daemon, 5)
                finals = await e2e.wait_final(daemon, ids)
                assert {m["state"] for m in finals.values()} == {"DELIVERED"}
                assert len(e2e.submits(back, "primary")) == 5
                # never more binds than configured, across both hosts
                assert back.mno("primary").counters.alybnd_refusals == 0

            # The primary goes away again: the binds move to the backup.
            await e2e.wait_for(lambda: backup.mno("backup").bound_count == 2, 5.0,
                               what="failover to the backup")


async def test_bind_quota_never_exceeded(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", max_binds=2)]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, binds=3, reconnect_min=0.05,
                                                        reconnect_max=0.1)])
        async with e2e.running_daemon(path) as daemon:
            smsc = sim.mno("op")
            await e2e.wait_for(lambda: smsc.counters.alybnd_refusals >= 3, 5.0,
                               what="ESME_RALYBND answers")
            first = smsc.counters.alybnd_refusals
            samples: list[int] = []

            def retried() -> bool:
                samples.append(smsc.bound_count)
                return smsc.counters.alybnd_refusals >= first + 3

            await e2e.wait_for(retried, 5.0, what="the daemon retrying the third bind")
            assert max(samples) == 2
            assert smsc.counters.binds == 2  # only two binds ever accepted, none dropped
            assert daemon.operators["op"].bound_count == 2
            refused = [b for b in daemon.operators["op"].binds if not b.bound]
            assert len(refused) == 1 and "ESME_RALYBND" in (refused[0].last_error or "")

            ids = await e2e.submit(daemon, 10)
            finals = await e2e.wait_final(daemon, ids)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}


# --------------------------------------------------------------------------- throttling


async def test_tps_never_exceeded_under_sustained_overload(tmp_path: Path) -> None:
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op", tps=200), binds=2, tps=200,
                                 window=50) as (sim, daemon):
        ids = await e2e.submit(daemon, 600)
        finals = await e2e.wait_final(daemon, ids, timeout=15.0)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
        counters = sim.mno("op").counters
        assert counters.throttled == 0
        assert counters.accepted == 600
        per_second = counters.per_account["esme"].accepted
        assert max(per_second.values()) <= 200
        assert len(per_second) >= 3  # it really was spread over several seconds


async def test_window_never_exceeded(tmp_path: Path) -> None:
    delay = 0.1
    behaviour = Behaviour(response_delay_ms=delay * 1000)
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op", behaviour=behaviour), binds=2, window=5,
                                 tps=5000) as (sim, daemon):
        ids = await e2e.submit(daemon, 60)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    # A submit_sm whose response left the SMSC less than `delay` before submit j came in
    # was still unanswered when the daemon sent j: those, plus j, fit in the window.
    by_conn: dict[int, list[float]] = {}
    for entry in e2e.submits(sim, "op"):
        by_conn.setdefault(entry["conn"], []).append(entry["time"])
    assert len(by_conn) == 2
    worst = 0
    for times in by_conn.values():
        for j, t in enumerate(times):
            outstanding = sum(1 for earlier in times[:j] if earlier > t - delay + 0.005) + 1
            worst = max(worst, outstanding)
    assert worst == 5  # full windows, never more


async def test_throttling_backs_off_and_every_message_is_delivered(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", tps=50)]) as sim:
        table = {"0x58": {"transient": True, "retries": 20, "delay": 0.2}}
        # 120 messages at up to 500/s: even a slowed-down daemon (a busy CI machine)
        # puts more than the SMSC's 50 into one aligned second, so it must throttle.
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, tps=500, window=50,
                                                        status_table=table)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 120)
            finals = await e2e.wait_final(daemon, ids, timeout=15.0)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
            counters = sim.mno("op").counters
            assert counters.throttled > 0
            assert counters.accepted == 120
            op = daemon.operators["op"]
            assert op.limiter.rate < op.limiter.limit  # backed off
            throttled = [e for e in sim.mno("op").recorder.entries("submit_sm_resp")
                         if e["status"] == Status.ESME_RTHROTTLED]
            assert len(throttled) == counters.throttled


# --------------------------------------------------------------------------- receipts


async def test_receipt_before_response(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", behaviour=Behaviour(receipt_before_response=True))]) \
            as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 20)
            finals = await e2e.wait_final(daemon, ids)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
            assert all(m["receipt_stat"] == "DELIVRD" for m in finals.values())
            out = sim.mno("op").recorder.entries()
            first_receipt = next(i for i, e in enumerate(out) if e["command"] == "deliver_sm")
            first_resp = next(i for i, e in enumerate(out) if e["command"] == "submit_sm_resp")
            assert first_receipt < first_resp


async def test_smsc_that_answers_submits_only_after_their_receipt_is_acknowledged(
        tmp_path: Path) -> None:
    # Receipt first, submit_sm_resp only once its deliver_sm_resp is back, receipts on
    # either bind, default hold and response timeout: acknowledging a receipt only once
    # it matched would stall every window until the 30 s hold or timeout.
    config = e2e.mno("op", behaviour=Behaviour(response_after_receipt_ack=True))
    config.receipts.route = "round_robin"
    async with e2e.daemon_on_sim(tmp_path, config, binds=2, window=10, response_timeout=30.0,
                                 hold=30.0) as (sim, daemon):
        ids = await e2e.submit(daemon, 60)
        finals = await e2e.wait_final(daemon, ids, timeout=20.0)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    db = tmp_path / "state" / "smppd.sqlite"
    with sqlite3.connect(db) as conn:  # each receipt applied once, none left waiting
        assert conn.execute("SELECT count(*) FROM orphan_receipts").fetchone() == (0,)
    out = sim.mno("op").recorder.entries()
    assert len([e for e in out if e["command"] == "submit_sm"]) == 60  # none sent twice
    first_receipt = next(i for i, e in enumerate(out) if e["command"] == "deliver_sm")
    first_resp = next(i for i, e in enumerate(out) if e["command"] == "submit_sm_resp")
    assert first_receipt < first_resp


async def test_receipt_on_another_bind(tmp_path: Path) -> None:
    config = e2e.mno("op")
    config.receipts.route = "round_robin"
    async with e2e.daemon_on_sim(tmp_path, config, binds=2) as (sim, daemon):
        ids = await e2e.submit(daemon, 20)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    recorder = sim.mno("op").recorder
    submitted_on = {e["message_id"]: e["conn"] for e in recorder.entries("submit_sm_resp")}
    receipts = _receipt_ids(recorder.entries("deliver_sm"))
    crossed = [smsc_id for smsc_id, conn in receipts if submitted_on[smsc_id] != conn]
    assert crossed, "no receipt came back on another bind"


async def test_hex_submit_ids_decimal_receipt_ids(tmp_path: Path) -> None:
    config = e2e.mno("op", submit_id_format="hex", receipt_id_format="decimal")
    async with e2e.daemon_on_sim(tmp_path, config, submit_resp_id="hex",
                                 receipt_id="decimal") as (sim, daemon):
        ids = await e2e.submit(daemon, 30)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
        smsc_ids = {m["parts"][0]["smsc_id"] for m in finals.values()}
    assert "1e" in smsc_ids  # the 30th id, as the SMSC wrote it (hex)
    assert "30" in {smsc_id for smsc_id, _ in _receipt_ids(
        sim.mno("op").recorder.entries("deliver_sm"))}


async def test_auto_learns_hex_submit_ids_without_letters(tmp_path: Path) -> None:
    # Hex in submit_sm_resp, decimal in receipts, "auto" on both sides: hex ids with only
    # digits ("10", "20") would be read as decimal: "10" would take the key of "a" (ten),
    # and ten's receipt would match sixteen. The first id with a letter teaches "hex".
    config = e2e.mno("op", submit_id_format="hex", receipt_id_format="decimal")
    async with e2e.daemon_on_sim(tmp_path, config, submit_resp_id="auto", receipt_id="auto",
                                 hold=0.5) as (_, daemon):
        ids = await e2e.submit(daemon, 40)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
        (view,) = daemon.operator_statuses()  # what GET /v1/operators shows
        assert view["learned_id_forms"] == {"submit_resp_id": "hex", "receipt_id": "decimal"}
        smsc_ids = {m["parts"][0]["smsc_id"] for m in finals.values()}
        assert {"10", "20"} <= smsc_ids


async def test_tlv_only_failure_receipt_reports_its_network_error(tmp_path: Path) -> None:
    config = e2e.mno("op", outcomes={"EXPIRED": 1.0})
    config.receipts.text = False  # receipted_message_id, message_state, network_error_code
    async with e2e.daemon_on_sim(tmp_path, config) as (_, daemon):
        ids = await e2e.submit(daemon, 3)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"EXPIRED"}
        assert {m["parts"][0]["err"] for m in finals.values()} == {"027"}
        events = await daemon.events("dlr", 0, 100)
    receipts = [e for e in events if e.get("stat") == "EXPIRED"]
    assert len(receipts) == 3
    assert {(e["err"], str(e["network_error"])) for e in receipts} == {
        ("027", str({"network_type": 3, "network": "GSM", "code": 27}))}


async def test_multipart_delivered_only_when_every_part_is(tmp_path: Path) -> None:
    config = e2e.mno("op", outcomes={"DELIVRD": 0.5, "UNDELIV": 0.5}, seed=7)
    async with e2e.daemon_on_sim(tmp_path, config) as (sim, daemon):
        ids = await e2e.submit(daemon, 12, text=LONG_TEXT)
        finals = await e2e.wait_final(daemon, ids)
    mixed = 0
    for message in finals.values():
        stats = [p["stat"] for p in message["parts"]]
        assert len(stats) == 2 and all(p["smsc_id"] for p in message["parts"])
        expected = "DELIVERED" if stats == ["DELIVRD", "DELIVRD"] else "UNDELIVERABLE"
        assert message["state"] == expected, message
        mixed += len(set(stats)) == 2
    assert mixed, "no message had one part delivered and one not"
    assert len(e2e.submits(sim, "op")) == 24


async def test_black_hole_resends_in_doubt_once_then_unknown(tmp_path: Path) -> None:
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op", behaviour=Behaviour(black_hole=True)),
                                 binds=2, window=3, response_timeout=0.5) as (sim, daemon):
        ids = await e2e.submit(daemon, 6)
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"UNKNOWN"}
        assert all("response" in m["reason"] for m in finals.values())
    # in doubt after the first stalled session, sent once more, then given up
    sent = collections.Counter(e["destination_addr"] for e in e2e.submits(sim, "op"))
    assert len(sent) == 6 and set(sent.values()) == {2}


async def test_black_hole_fills_the_window_and_no_more(tmp_path: Path) -> None:
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op", behaviour=Behaviour(black_hole=True)),
                                 binds=2, window=4, response_timeout=1.0) as (sim, daemon):
        await e2e.submit(daemon, 20)
        await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 8, what="8 submits")
        status = daemon.operators["op"].status()
        assert status["in_flight"] == 8 and status["queued"] == 12
        assert len(e2e.submits(sim, "op")) == 8


async def test_transient_status_retried_then_delivered(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", behaviour=Behaviour(generic_nack=True))]) as sim:
        table = {"0x08": {"transient": True, "retries": 5, "delay": 0.1}}
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, status_table=table)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 1)
            await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 2, what="a retried submit")
            sim.mno("op").behaviour.generic_nack = False  # the SMSC recovers
            finals = await e2e.wait_final(daemon, ids)
            assert finals[ids[0]]["state"] == "DELIVERED"
            nacks = sim.mno("op").recorder.entries("generic_nack")
            assert nacks and all(e["status"] == Status.ESME_RSYSERR for e in nacks)


def store_outage(store: Any, *methods: str) -> dict[str, int]:
    """Make the store's ``methods`` fail (as with PostgreSQL cut away) while the
    returned dict's "down" is 1; it counts the refused calls per method."""
    refused = {"down": 1, **{name: 0 for name in methods}}
    for name in methods:
        real = getattr(store, name)

        async def failing(*args: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
            if refused["down"]:
                refused[_name] += 1
                raise ConnectionError("store unreachable")
            return await _real(*args, **kw)

        setattr(store, name, failing)
    return refused


async def test_store_outage_while_submits_are_answered_strands_nothing(tmp_path: Path) -> None:
    # Every write of SMSC ids is retried until it is durable: no message stays
    # ACCEPTED although the SMSC took it, every receipt matches, none is sent twice.
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op", receipt_delay_ms=50)) as (sim, daemon):
        outage = store_outage(daemon.store, "record_submitted_many")
        ids = await e2e.submit(daemon, 30)
        await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) == 30, what="all sent")
        await e2e.wait_for(lambda: outage["record_submitted_many"] >= 3, what="writes refused")
        outage["down"] = 0
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"DELIVERED"}
    assert len(e2e.submits(sim, "op")) == 30


def queue_full_for_good(
        directory: Path) -> AbstractAsyncContextManager[tuple[SmscSimulator, Daemon]]:
    """An SMSC answering every submit ESME_RMSGQFUL, configured as permanent."""
    return e2e.daemon_on_sim(directory, e2e.mno("op", behaviour=Behaviour(queue_full=True)),
                             status_table={"ESME_RMSGQFUL": {"transient": False}})


async def test_store_outage_while_messages_fail_loses_no_final_state(tmp_path: Path) -> None:
    async with queue_full_for_good(tmp_path) as (_, daemon):
        outage = store_outage(daemon.store, "set_message_state")
        ids = await e2e.submit(daemon, 5)
        await e2e.wait_for(lambda: outage["set_message_state"] >= 5, what="writes refused")
        outage["down"] = 0
        finals = await e2e.wait_final(daemon, ids)
        assert {m["state"] for m in finals.values()} == {"FAILED"}


async def test_permanent_status_fails_with_its_name(tmp_path: Path) -> None:
    async with queue_full_for_good(tmp_path) as (sim, daemon):
        ids = await e2e.submit(daemon, 3)
        finals = await e2e.wait_final(daemon, ids)
        for message in finals.values():
            assert message["state"] == "FAILED"
            assert message["reason"] == "ESME_RMSGQFUL"
            assert message["command_status"] == Status.ESME_RMSGQFUL
        assert len(e2e.submits(sim, "op")) == 3  # not retried


async def test_auto_id_form_receipts_match_across_a_restart(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op", receipt_delay_ms=1000)]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim)])  # id forms left on "auto"
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            before = await e2e.submit(daemon, 20)  # SMSC ids 1..20, receipts due in 1 s
            await e2e.wait_for(lambda: len(sim.mno("op").recorder.entries("submit_sm_resp")) == 20)
        async with e2e.running_daemon(path) as daemon:  # restarted: an empty hot cache
            await e2e.wait_bound(daemon)
            after = await e2e.submit(daemon, 20, prefix="9371")  # SMSC ids 21..40
            finals = await e2e.wait_final(daemon, before + after, timeout=3.0)
    assert {m["state"] for m in finals.values()} == {"DELIVERED"}


async def test_sending_waits_while_the_store_is_behind(tmp_path: Path) -> None:
    """Submits answered but not stored are what a crash would send again: at
    max_unrecorded of them sending stops, and goes on once half are stored."""
    import asyncio

    async with e2e.running_sim([e2e.mno("op")]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, window=3)])
        path.write_text(path.read_text().replace("[store]\n", "[store]\nmax_unrecorded = 5\n"))
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            gate = asyncio.Event()
            record = daemon.parts.matcher.on_submitted_many

            async def slow_store(*args, **kwargs):  # the store writer far behind
                await gate.wait()
                return await record(*args, **kwargs)

            daemon.parts.matcher.on_submitted_many = slow_store
            ids = await e2e.submit(daemon, 40)
            op = daemon.operators["op"]
            try:
                await e2e.wait_for(lambda: op.hold_gate.shut, what="sending held back")
                await e2e.wait_for(lambda: op.binds[0].window_in_use == 0, what="window drained")
                # At most max_unrecorded answered, plus what the window held meanwhile.
                assert 5 <= len(e2e.submits(sim, "op")) <= 5 + 3
            finally:
                gate.set()  # else shutdown would wait for the blocked store forever
            finals = await e2e.wait_final(daemon, ids)
            assert {f["state"] for f in finals.values()} == {"DELIVERED"}
            assert len(e2e.submits(sim, "op")) == 40
            assert not op.hold_gate.shut


# --------------------------------------------------------------------------- MO


async def test_mo_messages_are_joined_and_stored_as_events(tmp_path: Path) -> None:
    texts = {
        "udh": "Салам! " * 20,  # UCS2, three parts with a UDH
        "sar": "Hello from Kabul, " * 12,  # GSM, two parts with SAR TLVs
        "payload": "One long message_payload " * 8,  # one PDU
    }
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op"), binds=1) as (sim, daemon):
        parts = sim.mno("op").inject_mo("93700123456", "1234", "Hi") + sum(
            sim.mno("op").inject_mo(f"9370012345{i}", "1234", text, concat=strategy)
            for i, (strategy, text) in enumerate(texts.items()))
        assert parts == 1 + 3 + 2 + 1

        async def stored() -> list[dict[str, object]]:
            events = await daemon.store.list_events("mo")
            return [e.payload for e in events] if len(events) == 4 else []

        events = await e2e.wait_for(stored, what="4 MO events")
    assert sorted(str(e["text"]) for e in events) == sorted(["Hi", *texts.values()])
    assert {e["schema"] for e in events} == {"smppd.mo.v1"}
    assert {e["source"] for e in events} == {"93700123456", "93700123450", "93700123451",
                                             "93700123452"}
    answers = sim.mno("op").recorder.entries("deliver_sm_resp")
    assert len(answers) == parts and {a["status"] for a in answers} == {Status.ESME_ROK}
