"""Operators whose SMSC account wants binds of different types (issue 17.4):
``bind_types = ["transmitter", "receiver"]`` sends on the transmitter only and takes
the receipts on the receiver; the config says what is wrong with a plan that cannot
work, naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import e2e_helpers as e2e
import pytest

from simulators import SmscSimulator
from smppd.config import Config, ConfigError, load_config


def tx_rx(sim: SmscSimulator) -> dict[str, Any]:
    table = e2e.operator("op", sim, bind_types=["transmitter", "receiver"])
    del table["binds"]  # bind_types says how many
    return table


async def test_a_transmitter_and_a_receiver_submits_on_one_receipts_on_the_other(
        tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        path = e2e.write_config(tmp_path, [tx_rx(sim)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            ids = await e2e.submit(daemon, 20)
            finals = await e2e.wait_final(daemon, ids)
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{daemon.api_port}/v1/operators") as resp:
                shown = (await resp.json())["operators"][0]
            assert [(b["bind"], b["type"], b["state"]) for b in shown["binds"]] == [
                ("op#0", "transmitter", "bound"), ("op#1", "receiver", "bound")]
            assert shown["binds_configured"] == 2 and shown["binds_up"] == 2
            smsc = sim.mno("op")
            kinds = {h.conn_id: h.bind_type for h in smsc.handlers}
    assert sorted(kinds.values()) == ["receiver", "transmitter"]
    recorder = smsc.recorder
    assert {kinds[e["conn"]] for e in recorder.entries("submit_sm")} == {"transmitter"}
    assert len(recorder.entries("submit_sm")) == 20
    receipts = recorder.entries("deliver_sm")
    assert len(receipts) == 20 and {kinds[e["conn"]] for e in receipts} == {"receiver"}


async def test_an_operator_with_only_its_receiver_bound_is_not_healthy(tmp_path: Path) -> None:
    """SelectOperator skips an operator that cannot submit, even with a bind up."""
    smsc = e2e.mno("op")
    smsc.accounts[0].bind_types = frozenset({"receiver"})  # the SMSC refuses the transmitter
    async with e2e.running_sim([smsc]) as sim:
        path = e2e.write_config(tmp_path, [tx_rx(sim)])
        async with e2e.running_daemon(path) as daemon:
            op = daemon.operators["op"]
            await op.binds[1].wait_bound(5.0)
            assert op.bound_count == 1 and not op.healthy


OP = ('[[operators]]\nid = "op"\nhosts = ["127.0.0.1:2775"]\nsystem_id = "esme"\n'
      'password = "pw"\n')


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "smppd.toml"
    path.write_text(text)
    return load_config(path)


def problem(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


def test_bind_types_set_the_binds_and_their_types(tmp_path: Path) -> None:
    config = load(tmp_path, "[defaults]\nbinds = 3\nbind_type = \"transmitter\"\n" + OP
                  + 'bind_types = ["transmitter", "transmitter", "receiver"]\n')
    op = config.operators[0]
    assert op.binds == 3 and op.bind_plan == ["transmitter", "transmitter", "receiver"]
    assert config.total_binds == 3
    plain = load(tmp_path, OP + "binds = 2\n").operators[0]
    assert plain.bind_plan == ["transceiver", "transceiver"]


@pytest.mark.parametrize(("extra", "key", "message"), [
    ('bind_types = ["transmitter", "receiver"]\nbinds = 2', "operators.op.binds", "not both"),
    ('bind_types = ["receiver"]\nbind_type = "receiver"', "operators.op.bind_type",
     "not both"),
    ('bind_types = ["receiver", "receiver"]', "operators.op.bind_types", "no bind can submit"),
    ('bind_type = "receiver"', "operators.op.bind_type", "no bind can submit"),
    ("bind_types = []", "operators.op.bind_types", "must not be empty"),
    ('bind_types = ["transmitter", "both"]', "operators.op.bind_types[1]", "transceiver"),
])
def test_a_bind_plan_that_cannot_work_names_the_key(tmp_path: Path, extra: str, key: str,
                                                    message: str) -> None:
    error = problem(tmp_path, OP + extra + "\n")
    assert error.key == key, str(error)
    assert message in str(error)


def test_bind_types_is_per_operator(tmp_path: Path) -> None:
    error = problem(tmp_path, '[defaults]\nbind_types = ["transceiver"]\n' + OP)
    assert error.key == "defaults.bind_types" and "each [[operators]]" in str(error)


async def test_a_reload_to_a_transmitter_and_a_receiver(tmp_path: Path) -> None:
    async with e2e.running_sim([e2e.mno("op")]) as sim:
        path = e2e.write_config(tmp_path, [e2e.operator("op", sim)])
        async with e2e.running_daemon(path) as daemon:
            await e2e.wait_bound(daemon)
            e2e.write_config(tmp_path, [tx_rx(sim)])
            result = await daemon.reloader.reload(path)
            assert result.ok, result.errors
            assert "bind_types" in result.plan.rebind["op"]
            smsc = sim.mno("op")

            def shape() -> list[str]:
                return sorted(h.bind_type or "" for h in smsc.handlers if h.conn.is_open
                              and h.bind_type)
            await e2e.wait_for(lambda: shape() == ["receiver", "transmitter"]
                               and daemon.operators["op"].bound_count == 2,
                               what="a transmitter and a receiver bound")
            finals = await e2e.wait_final(daemon, await e2e.submit(daemon, 4))
            assert {m["state"] for m in finals.values()} == {"DELIVERED"}
