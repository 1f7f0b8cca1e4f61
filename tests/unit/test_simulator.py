"""The SMSC simulator, over real TCP on 127.0.0.1, with our own SmppConnection as the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from correlation.receipts import parse_receipt
from simulators import Behaviour, ConfigError, SmscSimulator, load_config, parse_config
from simulators.counters import AccountCounters
from simulators.id_formats import parse_id_format
from simulators.receipt_maker import SubmitView, peek_submit
from smppd.link.connection import BaseHandler, ConnectionClosedError, SmppConnection
from smppd.protocol.constants import ESM_DELIVERY_RECEIPT, ESM_UDHI, CommandId, Status, Tag
from smppd.protocol.encoding import decode_text
from smppd.protocol.pdu import (
    Bind,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    encode,
    tlv_cstr,
    tlv_int,
)
from smppd.protocol.session import Closed, Role, Session
from smppd.protocol.split import parse_udh

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 5.0


def sim_config(**alpha: Any) -> dict[str, Any]:
    """Two MNOs on free ports: alpha (tunable per test) and beta."""
    base: dict[str, Any] = {
        "name": "alpha",
        "port": 0,
        "submit_id_format": "HEX",
        "receipt_id_format": "decimal",
        "account": [
            {"system_id": "esme1", "password": "secret1", "tps": 3, "max_binds": 2},
            {"system_id": "txonly", "password": "pw", "bind_types": ["transmitter"]},
        ],
        "receipts": {"delay_ms": 0, "outcomes": {"DELIVRD": 1}},
    }
    base.update(alpha)
    return {
        "admin": {"port": 0},
        "mno": [base, {"name": "beta", "port": 0,
                       "account": [{"system_id": "esme2", "password": "pw2"}]}],
    }


class Client(BaseHandler):
    """Answers deliver_sm and keeps them in a queue."""

    def __init__(self) -> None:
        self.delivered: asyncio.Queue[DeliverSm] = asyncio.Queue()

    def request_received(self, conn: SmppConnection, pdu: Pdu) -> None:
        if isinstance(pdu, DeliverSm):
            self.delivered.put_nowait(pdu)
            conn.respond(pdu, pdu.response(message_id=""))
        else:
            super().request_received(conn, pdu)

    async def next(self) -> DeliverSm:
        return await asyncio.wait_for(self.delivered.get(), TIMEOUT)


async def connect(port: int, system_id: str = "esme1", password: str = "secret1",
                  kind: type[Bind] = BindTransceiver) -> tuple[SmppConnection, Client, Pdu]:
    loop = asyncio.get_running_loop()
    client = Client()
    _, conn = await loop.create_connection(
        lambda: SmppConnection(Session(Role.ESME, window_size=50), client), "127.0.0.1", port)
    resp = await asyncio.wait_for(
        conn.request(kind(system_id=system_id, password=password), check_status=False),
        TIMEOUT)
    return conn, client, resp


async def submit(conn: SmppConnection, **fields: Any) -> Pdu:
    fields.setdefault("source_addr", "SMPPD")
    fields.setdefault("destination_addr", "93700123456")
    fields.setdefault("short_message", b"hello")
    return await asyncio.wait_for(conn.request(SubmitSm(**fields), check_status=False), TIMEOUT)


async def ping(conn: SmppConnection) -> Pdu:
    """A round trip: everything sent before it has been processed by the SMSC."""
    return await asyncio.wait_for(conn.request(EnquireLink()), TIMEOUT)


@pytest.fixture
async def sim(clock: Any) -> AsyncIterator[SmscSimulator]:
    async with SmscSimulator(parse_config(sim_config()), clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def http(sim: SmscSimulator) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{sim.admin_port}"


async def start(clock: Any, **alpha: Any) -> SmscSimulator:
    simulator = SmscSimulator(parse_config(sim_config(**alpha)), clock=clock)
    await simulator.start()
    return simulator


# --- binds -------------------------------------------------------------------------


async def test_bind_ok_and_refusals(sim: SmscSimulator) -> None:
    port = sim.port_of("alpha")
    conn, _, resp = await connect(port)
    assert resp.command_status == Status.ESME_ROK
    assert resp.system_id == "SMSC"  # type: ignore[attr-defined]
    assert conn.state.bound
    _, _, bad_pw = await connect(port, password="wrong")
    assert bad_pw.command_status == Status.ESME_RINVPASWD
    _, _, unknown = await connect(port, system_id="nobody")
    assert unknown.command_status == Status.ESME_RINVSYSID
    _, _, not_allowed = await connect(port, "txonly", "pw", BindReceiver)
    assert not_allowed.command_status == Status.ESME_RBINDFAIL
    # the account on the other MNO does not exist here
    _, _, other = await connect(port, "esme2", "pw2")
    assert other.command_status == Status.ESME_RINVSYSID


async def test_bind_limit_counts_current_binds(sim: SmscSimulator) -> None:
    port = sim.port_of("alpha")
    first, _, _ = await connect(port)
    await connect(port, kind=BindTransmitter)
    _, _, third = await connect(port, kind=BindReceiver)
    assert third.command_status == Status.ESME_RALYBND
    await first.unbind()
    await asyncio.wait_for(first.closed, TIMEOUT)
    # the server sees the close a moment later: retry the bind until the slot is free
    for _ in range(50):
        _, _, again = await connect(port)
        if again.command_status == Status.ESME_ROK:
            break
        await asyncio.sleep(0.01)
    assert again.command_status == Status.ESME_ROK
    totals = sim.mno("alpha").counters
    assert totals.binds == 3
    assert totals.alybnd_refusals >= 1


# --- TPS and queue-full -------------------------------------------------------------


async def test_tps_enforced_per_aligned_second(sim: SmscSimulator, clock: Any) -> None:
    clock.now = 1000.2
    conn, _, _ = await connect(sim.port_of("alpha"))
    statuses = [(await submit(conn)).command_status for _ in range(4)]
    assert statuses == [0, 0, 0, Status.ESME_RTHROTTLED]
    clock.now = 1000.99
    assert (await submit(conn)).command_status == Status.ESME_RTHROTTLED
    clock.now = 1001.0
    assert (await submit(conn)).command_status == Status.ESME_ROK
    counters = sim.mno("alpha").accounts["esme1"].counters
    assert counters.accepted == {1000: 3, 1001: 1}
    assert counters.throttled == {1000: 2}
    totals = sim.mno("alpha").counters
    assert (totals.submits, totals.accepted, totals.throttled) == (6, 4, 2)


def test_account_counters_keep_bounded_history() -> None:
    counters = AccountCounters(tps=1, history=3)
    for second in range(10):
        assert counters.admit(second + 0.5)
        assert not counters.admit(second + 0.6)
    assert list(counters.accepted) == [7, 8, 9]
    assert list(counters.throttled) == [7, 8, 9]


async def test_queue_full(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.queue_full = True
    resp = await submit(conn)
    assert resp.command_status == Status.ESME_RMSGQFUL
    assert sim.mno("alpha").counters.queue_full == 1


# --- message ids and receipts -------------------------------------------------------


@pytest.mark.parametrize(("spec", "n", "expected"), [
    ("decimal", 255, "255"),
    ("decimal:8", 255, "00000255"),
    ("hex", 255, "ff"),
    ("HEX", 255, "FF"),
    ("HEX:6", 255, "0000FF"),
    ("uuid", 255, "00000000-0000-0000-0000-0000000000ff"),
])
def test_id_formats(spec: str, n: int, expected: str) -> None:
    assert parse_id_format(spec)(n) == expected


async def test_first_id_starts_the_counter(clock: Any) -> None:
    # A restarted SMSC given first_id hands out none of the ids of its earlier life.
    sim = await start(clock, first_id=5001, submit_id_format="decimal")
    try:
        conn, _, _ = await connect(sim.port_of("alpha"))
        first, second = await submit(conn), await submit(conn)
        assert isinstance(first, SubmitSmResp) and isinstance(second, SubmitSmResp)
        assert (first.message_id, second.message_id) == ("5001", "5002")
        conn.abort()
    finally:
        await sim.stop()


def test_bad_id_format() -> None:
    with pytest.raises(ValueError, match="unknown id format"):
        parse_id_format("octal")


async def test_receipt_ids_in_two_bases_with_tlvs(clock: Any) -> None:
    sim = await start(clock, receipts={"delay_ms": 0, "outcomes": {"UNDELIV": 1}},
                      account=[{"system_id": "esme1", "password": "secret1", "tps": 1000}])
    try:
        conn, client, _ = await connect(sim.port_of("alpha"))
        for _ in range(11):  # get past 9 so hex and decimal differ
            resp = await submit(conn, registered_delivery=1, short_message=b"Salaam!")
        receipts = [await client.next() for _ in range(11)]
    finally:
        await sim.stop()
    assert isinstance(resp, SubmitSmResp)
    assert resp.message_id == "B"  # HEX in submit_sm_resp
    last = receipts[-1]
    assert last.esm_class == ESM_DELIVERY_RECEIPT
    assert (last.source_addr, last.destination_addr) == ("93700123456", "SMPPD")
    assert tlv_cstr(last.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "11"  # decimal in the receipt
    assert tlv_int(last.tlvs, Tag.MESSAGE_STATE) == 5
    assert last.tlvs[Tag.NETWORK_ERROR_CODE] == bytes((3, 0, 1))
    parsed = parse_receipt(last.short_message, {})  # the text form alone
    assert (parsed.message_id, parsed.stat) == ("11", "UNDELIV")
    assert b"text:Salaam!" in last.short_message


async def test_receipt_only_when_asked_and_intermediate_first(clock: Any) -> None:
    sim = await start(clock, receipts={"delay_ms": 0, "intermediate": "ENROUTE",
                                       "outcomes": {"DELIVRD": 1}})
    try:
        conn, client, _ = await connect(sim.port_of("alpha"))
        await submit(conn, registered_delivery=0)
        await submit(conn, registered_delivery=2)  # failures only: DELIVRD gives none
        await submit(conn, registered_delivery=1)
        first, second = await client.next(), await client.next()
        await ping(conn)
        assert client.delivered.empty()
    finally:
        await sim.stop()
    assert tlv_int(first.tlvs, Tag.MESSAGE_STATE) == 1  # ENROUTE
    assert tlv_int(second.tlvs, Tag.MESSAGE_STATE) == 2  # DELIVRD
    assert tlv_cstr(second.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "3"


async def test_receipts_follow_the_outcome_mix_deterministically(clock: Any) -> None:
    outcomes = {"DELIVRD": 50, "UNDELIV": 30, "EXPIRED": 10, "REJECTD": 10}
    stats: list[list[str]] = []
    for _ in range(2):
        sim = await start(clock, receipts={"delay_ms": [0, 2], "outcomes": outcomes},
                          account=[{"system_id": "esme1", "password": "secret1", "tps": 1000}])
        try:
            conn, client, _ = await connect(sim.port_of("alpha"))
            for _ in range(40):
                await submit(conn, registered_delivery=1)
            got = [parse_receipt((await client.next()).short_message, {}) for _ in range(40)]
        finally:
            await sim.stop()
        stats.append(sorted(r.message_id + r.stat for r in got))
    assert stats[0] == stats[1]  # same seed, same outcomes
    assert len({s[-7:] for s in stats[0]}) >= 3


async def test_receipt_before_response(sim: SmscSimulator) -> None:
    conn, client, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.receipt_before_response = True
    await submit(conn, registered_delivery=1)
    assert client.delivered.qsize() == 1  # already there when the response arrived
    out = [e["command"] for e in sim.mno("alpha").recorder.entries() if e["direction"] == "out"]
    assert out[-2:] == ["deliver_sm", "submit_sm_resp"]


async def test_receipt_on_another_bind(sim: SmscSimulator) -> None:
    port = sim.port_of("alpha")
    tx, tx_client, _ = await connect(port, kind=BindTransmitter)
    _rx, rx_client, _ = await connect(port, kind=BindReceiver)
    await submit(tx, registered_delivery=1)
    receipt = await rx_client.next()
    assert tlv_cstr(receipt.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "1"
    assert tx_client.delivered.empty()


async def test_receipt_waits_for_a_receiving_bind(sim: SmscSimulator) -> None:
    port = sim.port_of("alpha")
    tx, _, _ = await connect(port, kind=BindTransmitter)
    await submit(tx, registered_delivery=1)
    await ping(tx)
    mno = sim.mno("alpha")
    assert len(mno.accounts["esme1"].undelivered) == 1
    _, rx_client, _ = await connect(port, kind=BindReceiver)
    receipt = await rx_client.next()
    assert tlv_cstr(receipt.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "1"
    assert mno.counters.receipts_dropped == 0


async def test_receipts_round_robin_across_receivers(clock: Any) -> None:
    sim = await start(clock, receipts={"delay_ms": 0, "route": "round_robin"})
    try:
        port = sim.port_of("alpha")
        a, a_client, _ = await connect(port)
        _, b_client, _ = await connect(port)
        for _ in range(2):
            await submit(a, registered_delivery=1)
        got = {tlv_cstr((await c.next()).tlvs, Tag.RECEIPTED_MESSAGE_ID)
               for c in (a_client, b_client)}
    finally:
        await sim.stop()
    assert got == {"1", "2"}


def test_peek_submit_matches_full_decode() -> None:
    pdu = SubmitSm(source_addr="SRC", source_addr_ton=5, destination_addr="93700",
                   dest_addr_ton=1, dest_addr_npi=1, esm_class=0x40, registered_delivery=1,
                   data_coding=8, validity_period="000001000000000R", short_message=b"\x00A")
    view = peek_submit(encode(pdu))
    assert view == SubmitView(5, 0, "SRC", 1, 1, "93700", 0x40, 1, 8, b"\x00A")
    assert peek_submit(encode(pdu)[:30]) is None


# --- MO ------------------------------------------------------------------------------


async def test_mo_single_and_concatenated(sim: SmscSimulator) -> None:
    _conn, client, _ = await connect(sim.port_of("alpha"))
    mno = sim.mno("alpha")
    assert mno.inject_mo("93700123456", "1234", "Hi there") == 1
    single = await client.next()
    assert (single.source_addr, single.destination_addr) == ("93700123456", "1234")
    assert single.esm_class == 0
    assert decode_text(single.short_message, single.data_coding) == "Hi there"

    text = "x" * 200
    assert mno.inject_mo("93700123456", "1234", text) == 2
    parts = [await client.next(), await client.next()]
    concat = [parse_udh(p.short_message) for p in parts]
    assert all(p.esm_class & ESM_UDHI for p in parts)
    assert [(c.total, c.seq) for c in concat if c] == [(2, 1), (2, 2)]
    assert concat[0] and concat[1] and concat[0].reference == concat[1].reference
    assert "".join(decode_text(c.body, 0) for c in concat if c) == text


async def test_mo_needs_a_receiving_bind(sim: SmscSimulator) -> None:
    from simulators import MoError

    await connect(sim.port_of("alpha"), kind=BindTransmitter)
    with pytest.raises(MoError):
        sim.mno("alpha").inject_mo("1", "2", "x")


# --- misbehaviours -------------------------------------------------------------------


def send_submit(conn: SmppConnection) -> asyncio.Future[Pdu]:
    future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
    conn.send(SubmitSm(source_addr="S", destination_addr="D"), future)
    return future


async def test_black_hole(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.black_hole = True
    pending = send_submit(conn)
    await ping(conn)  # processed after the submit
    assert not pending.done()
    assert sim.mno("alpha").counters.submits == 1
    pending.cancel()


async def test_generic_nack(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.generic_nack = True
    resp = await submit(conn)
    assert isinstance(resp, GenericNack)
    assert resp.command_status == Status.ESME_RSYSERR


async def test_slow_responses(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.response_delay_ms = 100
    loop = asyncio.get_running_loop()
    began = loop.time()
    slow = send_submit(conn)
    await ping(conn)
    assert not slow.done()  # the enquire_link overtook it
    assert (await asyncio.wait_for(slow, TIMEOUT)).command_status == 0
    assert loop.time() - began >= 0.09


async def test_drop_connection_after_n_submits(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.drop_after = 2
    futures = [send_submit(conn) for _ in range(3)]
    closed = await asyncio.wait_for(conn.closed, TIMEOUT)
    assert isinstance(closed, Closed)
    assert [f.result().command_status for f in futures[:2]] == [0, 0]
    with pytest.raises(ConnectionClosedError):
        futures[2].result()
    assert sim.mno("alpha").behaviour.drop_after is None  # one-shot


async def test_silent_enquire_link(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    sim.mno("alpha").behaviour.silent_enquire_link = True
    probe: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
    conn.send(EnquireLink(), probe)
    await submit(conn)  # answered, so the enquire_link before it was seen and ignored
    assert not probe.done()
    probe.cancel()


async def test_unbind_from_the_smsc(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    assert sim.mno("alpha").unbind_all() == 1
    closed = await asyncio.wait_for(conn.closed, TIMEOUT)
    assert closed.reason == "peer_unbound"


async def test_reject_all_binds(sim: SmscSimulator) -> None:
    sim.mno("alpha").behaviour.reject_binds = Status.ESME_RBINDFAIL
    _, _, resp = await connect(sim.port_of("alpha"))
    assert resp.command_status == Status.ESME_RBINDFAIL
    assert sim.mno("alpha").counters.bind_refusals == 1


# --- recording -----------------------------------------------------------------------


async def test_records_what_went_on_the_wire(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    await submit(conn, data_coding=8, esm_class=0, short_message=b"\x00A",
                 tlvs={Tag.SAR_MSG_REF_NUM: b"\x00\x07", Tag.SAR_TOTAL_SEGMENTS: b"\x02",
                       Tag.SAR_SEGMENT_SEQNUM: b"\x01"})
    entries = sim.mno("alpha").recorder.entries()
    commands = [(e["direction"], e["command"]) for e in entries]
    assert commands == [("in", "bind_transceiver"), ("out", "bind_transceiver_resp"),
                        ("in", "submit_sm"), ("out", "submit_sm_resp")]
    sub = entries[2]
    assert (sub["source_addr"], sub["destination_addr"], sub["data_coding"]) == \
        ("SMPPD", "93700123456", 8)
    assert (sub["sar_msg_ref_num"], sub["sar_total_segments"], sub["sar_segment_seqnum"]) == \
        (7, 2, 1)
    assert sub["short_message"] == "0041"
    assert entries[3]["message_id"] == "1"
    assert "password" not in str(entries)


async def test_records_an_unbind_from_the_esme(sim: SmscSimulator) -> None:
    conn, _, _ = await connect(sim.port_of("alpha"))
    await conn.unbind()
    recorder = sim.mno("alpha").recorder
    for _ in range(100):  # the server side sees the close just after the client
        if recorder.entries("unbind_resp"):
            break
        await asyncio.sleep(0.01)
    assert [(e["direction"], e["command"]) for e in recorder.entries()][-2:] == [
        ("in", "unbind"), ("out", "unbind_resp")]


async def test_recording_off(sim: SmscSimulator) -> None:
    mno = sim.mno("alpha")
    mno.recorder.enabled = False
    conn, _, _ = await connect(sim.port_of("alpha"))
    assert (await submit(conn)).command_status == 0
    assert len(mno.recorder) == 0


# --- admin API -----------------------------------------------------------------------


async def test_admin_list_counters_pdus(sim: SmscSimulator, http: Any, clock: Any) -> None:
    client, base = http
    clock.now = 2000.5
    conn, _, _ = await connect(sim.port_of("alpha"))
    for _ in range(4):
        await submit(conn)
    async with client.get(f"{base}/mnos") as r:
        mnos = (await r.json())["mnos"]
    assert [(m["name"], m["port"]) for m in mnos] == [("alpha", sim.port_of("alpha")),
                                                    ("beta", sim.port_of("beta"))]
    async with client.get(f"{base}/mnos/alpha/counters") as r:
        counters = await r.json()
    assert counters["totals"]["submits"] == 4
    assert counters["totals"]["throttled"] == 1
    assert counters["accounts"]["esme1"]["accepted"] == {"2000": 3}
    assert counters["accounts"]["esme1"]["max_accepted_per_second"] == 3
    async with client.get(f"{base}/mnos/alpha/pdus?command=submit_sm_resp&limit=2") as r:
        pdus = (await r.json())["pdus"]
    assert [p["status_name"] for p in pdus] == ["ESME_ROK", "ESME_RTHROTTLED"]
    async with client.get(f"{base}/mnos/nope/counters") as r:
        assert r.status == 404
        assert (await r.json())["field"] == "name"


async def test_admin_behaviour_put_patch_and_bad_bodies(sim: SmscSimulator, http: Any) -> None:
    client, base = http
    url = f"{base}/mnos/alpha/behaviour"
    async with client.patch(url, json={"black_hole": True}) as r:
        assert r.status == 200
    async with client.patch(url, json={"response_delay_ms": 5}) as r:
        body = await r.json()
    assert body["black_hole"] is True and body["response_delay_ms"] == 5
    async with client.put(url, json={"queue_full": True}) as r:
        body = await r.json()
    assert body["black_hole"] is False and body["queue_full"] is True  # PUT replaces
    assert sim.mno("alpha").behaviour.queue_full is True
    for bad, field in [({"black_hole": "yes"}, "black_hole"), ({"bogus": 1}, "bogus"),
                       ({"drop_after": 0}, "drop_after"), ({"record": 3}, "record")]:
        async with client.patch(url, json=bad) as r:
            assert r.status == 400
            assert (await r.json())["field"] == field
    async with client.patch(url, data=b"{not json") as r:
        assert r.status == 400
        assert (await r.json())["field"] == "body"
    async with client.patch(url, json=[1]) as r:
        assert r.status == 400
    async with client.patch(url, json={"record": False}) as r:
        assert r.status == 200
    assert sim.mno("alpha").recorder.enabled is False


async def test_admin_password_rotation(sim: SmscSimulator, http: Any) -> None:
    client, base = http
    url = f"{base}/mnos/alpha/accounts/esme1/password"
    port = sim.port_of("alpha")
    async with client.put(url, json={"passwords": ["secret1", "secret2"]}) as r:
        assert r.status == 200
        assert "secret" not in await r.text()
    assert (await connect(port, password="secret1"))[2].command_status == 0
    assert (await connect(port, password="secret2"))[2].command_status == 0
    async with client.put(url, json={"password": "secret2"}) as r:
        assert r.status == 200
    assert (await connect(port, password="secret1"))[2].command_status == Status.ESME_RINVPASWD
    async with client.put(url, json={"password": "much-too-long"}) as r:
        assert r.status == 400
        assert (await r.json())["field"] == "password"
    async with client.put(f"{base}/mnos/alpha/accounts/ghost/password",
                          json={"password": "x"}) as r:
        assert r.status == 404


async def test_admin_mo_unbind_all_reset(sim: SmscSimulator, http: Any) -> None:
    client, base = http
    conn, esme, _ = await connect(sim.port_of("alpha"))
    async with client.post(f"{base}/mnos/alpha/mo", json={
            "source_addr": "93700111222", "destination_addr": "1234",
            "text": "سلام", "system_id": "esme1"}) as r:
        assert r.status == 202
        assert (await r.json())["parts"] == 1
    mo = await esme.next()
    assert mo.data_coding == 8
    assert decode_text(mo.short_message, 8) == "سلام"
    async with client.post(f"{base}/mnos/alpha/mo", json={"source_addr": "1"}) as r:
        assert r.status == 400
        assert (await r.json())["field"] == "destination_addr"
    async with client.post(f"{base}/mnos/alpha/mo", json={
            "source_addr": "1", "destination_addr": "2", "text": "x", "concat": "zip"}) as r:
        assert (await r.json())["field"] == "concat"
    async with client.post(f"{base}/mnos/alpha/unbind-all") as r:
        assert (await r.json())["unbinding"] == 1
    assert (await asyncio.wait_for(conn.closed, TIMEOUT)).reason == "peer_unbound"
    sim.mno("alpha").behaviour.black_hole = True
    async with client.post(f"{base}/mnos/alpha/reset") as r:
        assert r.status == 200
    mno = sim.mno("alpha")
    assert mno.behaviour.black_hole is False
    assert mno.counters.binds == 0 and len(mno.recorder) == 0


# --- config --------------------------------------------------------------------------


def test_shipped_config() -> None:
    config = load_config(ROOT / "conf" / "simulator.toml")
    assert [m.port for m in config.mnos] == [2775, 2776, 2777, 2778, 2779]
    assert [m.networks for m in config.mnos] == [
        ["412/40"], ["412/50"], ["412/01", "412/20"], ["412/03"], ["412/88"]]
    assert config.admin_port == 8780
    for mno in config.mnos:
        (account,) = mno.accounts
        assert 100 <= account.tps <= 500 and account.max_binds == 4
        assert all(len(p) <= 8 for p in account.passwords)
        assert mno.receipts.enabled and 50 <= mno.receipts.delay_ms[0] <= 200


@pytest.mark.parametrize(("change", "key"), [
    ({"tps_typo": 1}, "mno[0].tps_typo"),
    ({"receipts": {"delay_ms": [5, 1]}}, "mno[0].receipts.delay_ms"),
    ({"receipts": {"outcomes": {"LOST": 1}}}, "mno[0].receipts.outcomes.LOST"),
    ({"submit_id_format": "base64"}, "mno[0].submit_id_format"),
    ({"account": [{"system_id": "a", "password": "123456789"}]}, "mno[0].account[0].password"),
    ({"behaviour": {"black_hole": 1}}, "mno[0].behaviour.black_hole"),
    ({"first_id": 0}, "mno[0].first_id"),
    ({"account": [{"system_id": "a", "password": 5}]}, "mno[0].account[0].password"),
    ({"account": [{"system_id": "a", "passwords": ["a", 5]}]}, "mno[0].account[0].passwords[1]"),
    ({"account": []}, "mno[0].account"),
    ({"accounts": []}, "mno[0].accounts"),  # the file's name is [[mno.account]]
    ({"receipts": "fast"}, "mno[0].receipts"),
    ({"port": True}, "mno[0].port"),
])
def test_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(sim_config(**change))
    assert info.value.key == key


@pytest.mark.parametrize(("change", "message"), [
    ({"tps_typo": 1}, "mno[0].tps_typo: unknown key"),
    ({"behaviour": {"black_hole": 1}}, "mno[0].behaviour.black_hole: must be a valid boolean"),
    ({"window": 0}, "mno[0].window: must be greater than 0"),
    ({"account": [{"system_id": "a"}]},
     "mno[0].account[0].passwords: required: a password or a non-empty list of passwords"),
    ({"account": [{"system_id": "a", "password": "x", "passwords": ["y"]}]},
     "mno[0].account[0].passwords: give password or passwords, not both"),
    ({"account": [{"system_id": "a", "password": "123456789"}]},
     "mno[0].account[0].password: each password must be a string of 1..8 characters"),
    ({"receipts": {"outcomes": {"DELIVRD": 0}}},
     "mno[0].receipts.outcomes: at least one positive weight"),
    ({"receipts": {"intermediate": "DELIVRD"}},
     "mno[0].receipts.intermediate: must be 'ACCEPTD' or 'ENROUTE'"),
    ({"behaviour": {"reject_binds": 0}},
     "mno[0].behaviour.reject_binds: a non-zero command_status (or null)"),
])
def test_config_errors_say_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(sim_config(**change))
    assert str(info.value) == message


def test_config_file_level_rules() -> None:
    alpha = sim_config()["mno"][0]
    cases = [({"mno": []}, "mno: at least one [[mno]]"),
             ({"mno": [alpha, dict(alpha)]}, "mno: duplicate name"),
             ({"mno": [alpha], "admin": {"port": "x"}}, "admin.port: must be a valid integer"),
             ({"mno": [alpha], "extra": 1}, "extra: unknown key")]
    for raw, message in cases:
        with pytest.raises(ConfigError) as info:
            parse_config(raw)
        assert str(info.value) == message
    config = parse_config({"mno": [alpha], "admin": {"enabled": False}})
    assert config.admin_port is None and config.admin_host == "127.0.0.1"


def test_config_defaults() -> None:
    (mno,) = parse_config({"mno": [{"name": "a", "account": [
        {"system_id": "e", "password": "pw"}]}]}).mnos
    (account,) = mno.accounts
    assert (mno.port, mno.host, mno.window, mno.first_id, mno.submit_id_format) == (
        0, "127.0.0.1", 100, 1, "decimal")
    assert (account.passwords, account.tps, account.max_binds) == (["pw"], 100, 4)
    assert account.bind_types == {"transmitter", "receiver", "transceiver"}
    assert mno.receipts.delay_ms == (50.0, 200.0) and mno.receipts.outcomes == {"DELIVRD": 1.0}
    assert mno.behaviour.to_dict() == Behaviour().to_dict()
    assert parse_config(sim_config(receipts={"delay_ms": 7})).mnos[0].receipts.delay_ms == (
        7.0, 7.0)


def test_command_ids_recorded_by_name() -> None:
    from simulators.recorder import Recorder

    rec = Recorder(limit=2)
    for seq in range(3):
        rec.record(0.0, "in", CommandId.SUBMIT_SM, 0, seq, 1)
    assert [e["sequence"] for e in rec.entries()] == [1, 2]
    assert rec.entries()[0]["command"] == "submit_sm"
