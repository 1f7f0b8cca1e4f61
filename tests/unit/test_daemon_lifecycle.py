"""The daemon as a process: `smppd run` under SIGTERM and under kill -9 then restart.

The simulator runs in the test process; the daemon is the installed entry point.
What is checked is what an operator of the service sees: exit codes, the SQLite
store after the process is gone, and the submit_sm PDUs the SMSC received.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import socket
from pathlib import Path

import aiohttp
import e2e_helpers as e2e
import pytest

from simulators import Behaviour
from simulators.server import SmscSimulator
from smppd.config import load_config
from smppd.runtime.daemon import Daemon


def per_destination(sim: SmscSimulator) -> collections.Counter[str]:
    return collections.Counter(e["destination_addr"] for e in e2e.submits(sim, "op"))


async def test_sigterm_drains_in_flight_and_exits_zero(
        tmp_path: Path, processes: e2e.Processes) -> None:
    slow = Behaviour(response_delay_ms=150)
    async with e2e.running_sim([e2e.mno("op", behaviour=slow, receipt_delay_ms=10)]) as sim:
        api_port = e2e.free_port()
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, binds=2, window=10, tps=200)],
                                api_port=api_port)
        daemon = await processes.start(path, api_port)
        ids = await daemon.post_bulk(e2e.numbered(0, 300))
        await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 40, 10.0, what="40 submits")
        assert await daemon.signal(signal.SIGTERM) == 0, daemon.log.read_text()

        sent = per_destination(sim)
        resps = sim.mno("op").recorder.entries("submit_sm_resp")
        assert len(resps) == sum(sent.values())  # every submit answered before unbind
        assert len(sim.mno("op").recorder.entries("unbind")) == 2
        messages = await e2e.stored_messages(tmp_path / "state", ids)
        assert len(messages) == 300  # every accepted message is in the store
        for message in messages.values():
            reached_smsc = sent[message["destination"]] > 0
            # submitted ones have their SMSC id and moved on; the rest wait for a restart
            assert (message["state"] != "ACCEPTED") == reached_smsc, message
            if reached_smsc:
                assert message["parts"][0]["smsc_id"]
        assert 0 < sum(1 for m in messages.values() if m["state"] == "ACCEPTED") < 300


async def test_kill_9_then_restart_loses_nothing(
        tmp_path: Path, processes: e2e.Processes) -> None:
    window, binds = 10, 2
    async with e2e.running_sim([e2e.mno("op", receipt_delay_ms=1500)]) as sim:
        api_port = e2e.free_port()
        # Explicit id forms: "auto" mis-matches across a restart (see test_daemon_e2e).
        table = e2e.operator("op", sim, binds=binds, window=window, tps=200,
                             submit_resp_id="decimal", receipt_id="decimal")
        path = e2e.write_config(tmp_path, [table], api_port=api_port)
        first = await processes.start(path, api_port)
        ids = await first.post_bulk(e2e.numbered(0, 400))  # 202 = durable
        await e2e.wait_for(lambda: len(e2e.submits(sim, "op")) >= 100, 10.0, what="100 submits")
        await first.kill()
        await e2e.wait_for(lambda: sim.mno("op").bound_count == 0, what="binds gone")
        sent_before = sum(per_destination(sim).values())
        assert sent_before < 400  # the kill came with messages still queued

        second = await processes.start(path, api_port)
        await e2e.wait_for(lambda: len(per_destination(sim)) == 400, 15.0,
                           what="every destination submitted")
        # Receipts the simulator had due while no bind was up are dropped, not retried:
        # those messages stay SUBMITTED; everything else reaches a final state.
        dropped = sim.mno("op").counters.receipts_dropped

        states: collections.Counter[str] = collections.Counter()

        async def settled() -> bool:
            states.clear()
            async with aiohttp.ClientSession() as http:
                for message_id in ids:
                    async with http.get(f"{second.url}/v1/messages/{message_id}") as resp:
                        assert resp.status == 200
                        states[(await resp.json())["state"]] += 1
            waiting = {s: n for s, n in states.items() if s not in e2e.FINAL_STATES}
            return set(waiting) <= {"SUBMITTED"} and sum(waiting.values()) <= dropped

        await e2e.wait_for(settled, 10.0, interval=0.3,
                           what=lambda: f"final states after restart: {states}, {dropped} dropped")
        assert await second.signal(signal.SIGTERM) == 0

    counts = per_destination(sim)
    assert set(counts) == {f"9370{i:07d}" for i in range(400)}  # nothing lost
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= window * binds, f"{duplicates} duplicates"
    messages = await e2e.stored_messages(tmp_path / "state", ids)
    assert len(messages) == 400
    assert not [m for m in messages.values() if m["state"] == "ACCEPTED"]


async def test_sigusr1_logs_where_every_task_waits(
        tmp_path: Path, processes: e2e.Processes) -> None:
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        api_port = e2e.free_port()
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim)], api_port=api_port)
        daemon = await processes.start(path, api_port)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGUSR1)
        await e2e.wait_for(lambda: "waits in" in daemon.log.read_text(), what="the task dump")
        dump = [line for line in daemon.log.read_text().splitlines() if "waits in" in line]
        assert any("_housekeep (lifecycle.py" in line for line in dump), dump
        assert await daemon.signal(signal.SIGTERM) == 0  # still running, still stops cleanly


async def run_to_exit(config: Path, within: float, hang: str) -> tuple[int, Path]:
    """`smppd run` on ``config`` to its end: its exit code and its JSON log (smppd.log
    beside the config); killed, and the test failed with the log, if it runs past
    ``within`` seconds (``hang`` says what it did wrong then)."""
    log = config.parent / "smppd.log"
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            str(e2e.SMPPD), "--log-format", "json", "run", "--config", str(config),
            stdout=out, stderr=out, cwd=config.parent)
    try:
        return await asyncio.wait_for(proc.wait(), within), log
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"smppd {hang}:\n" + log.read_text()) from None


async def test_a_failed_start_unbinds_and_exits_non_zero(tmp_path: Path) -> None:
    """The API port is taken: the binds already up are unbound, the process exits 1."""
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            path = e2e.write_config(tmp_path, [e2e.operator("op", sim, binds=2)],
                                    api_port=taken.getsockname()[1])
            code, log = await run_to_exit(path, 30.0, "kept running after start_failed")
        assert code == 1, log.read_text()
        assert '"start_failed"' in log.read_text()
        # none is left holding the quota (the binds were started before the API)
        assert sim.mno("op").bound_count == 0


class ApiFailsOnceBound(Daemon):
    """The API fails to start only once every bind is up: the worst moment."""

    async def _start_api(self) -> None:
        await e2e.wait_bound(self)
        raise OSError(98, "address already in use")


async def test_a_start_failing_with_binds_up_unbinds_each(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim, binds=2)])
        daemon = ApiFailsOnceBound(load_config(path))
        with pytest.raises(OSError):
            await daemon.start()
        recorder = sim.mno("op").recorder
        accepted = [e for e in recorder.entries("bind_transceiver_resp") if e["status"] == 0]
        assert len(accepted) == 2
        assert len(recorder.entries("unbind")) == 2  # an orderly unbind, each
        assert sim.mno("op").bound_count == 0


async def test_a_failed_start_does_not_wait_for_a_silent_smsc(tmp_path: Path) -> None:
    """The SMSC takes the connection and never answers the bind (a stopped process):
    the failed start exits 1 at once, not after a response timeout or a drain."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    smsc = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = smsc.sockets[0].getsockname()[1]
            path = e2e.write_config(tmp_path, [e2e.operator("op", [f"127.0.0.1:{port}"],
                                                            response_timeout=60.0,
                                                            enquire_link_interval=60.0,
                                                            inactivity_timeout=120.0)],
                                    api_port=taken.getsockname()[1], drain_timeout=30.0)
            # 20 s: a bound, not a measurement (the old code needed drain_timeout + 5 s)
            code, log = await run_to_exit(path, 20.0, "waited for the silent SMSC")
        assert code == 1, log.read_text()
    finally:
        smsc.close()
