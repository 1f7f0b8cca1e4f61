"""A receipt that comes before its submit is known here is held; when another replica
(sharing the store) recorded the submit meanwhile, the receipt matches as its hold
expires, and the daemon publishes the DLR event: the housekeeping hands the late
match from the matcher to the dispatcher (smppd.runtime.lifecycle)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import e2e_helpers as e2e

from correlation.ids import normalise_id
from correlation.receipts import format_receipt
from correlation.store import MessageRecord
from smppd.protocol.constants import ESM_DELIVERY_RECEIPT
from smppd.protocol.pdu import DeliverSm, encode

SMSC_ID = "4242"


async def test_a_receipt_held_for_a_peers_submit_is_published_at_expiry(tmp_path: Path) -> None:
    async with e2e.daemon_on_sim(tmp_path, e2e.mno("op"), submit_resp_id="decimal",
                                 receipt_id="decimal", hold=0.5) as (sim, daemon):
        now = datetime.now(UTC)
        receiver = sim.mno("op").accounts[e2e.SYSTEM_ID].next_receiver()
        assert receiver is not None
        receiver.send_deliver(encode(DeliverSm(
            source_addr="93701234567", destination_addr="SMPPD",
            esm_class=ESM_DELIVERY_RECEIPT,
            short_message=format_receipt(SMSC_ID, "DELIVRD", submit_date=now,
                                         done_date=now))))
        recorder = sim.mno("op").recorder
        # Answered once the receipt is durable as an orphan: nothing matched it yet.
        await e2e.wait_for(lambda: recorder.entries("deliver_sm_resp"), what="deliver_sm_resp")
        assert await daemon.events("dlr", 0, 10) == []

        # The peer that sent the message stores it and its submit_sm_resp.
        at = time.time()
        await daemon.store.accept([MessageRecord(
            message_id="peer-1", tenant_id="t1", source="SMPPD",
            destination="93701234567", data_coding=0, body=b"hi", created_at=at,
            updated_at=at, operator_id="op")])
        await daemon.store.record_submitted_many([
            ("peer-1", 1, 1, "op", SMSC_ID, normalise_id(SMSC_ID, "decimal"), at)])

        events = await e2e.wait_for(lambda: daemon.events("dlr", 0, 10), timeout=10.0,
                                    what="the DLR event of the late match")
        assert [(e["message_id"], e["state"], e["final"]) for e in events] == [
            ("peer-1", "DELIVERED", True)]
        message = await daemon.message("peer-1")
        assert message is not None and message["state"] == "DELIVERED"
