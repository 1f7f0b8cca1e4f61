"""PDU codec rates on one core, ours against aiosmpplib's PDU layer.

Run: .venv/bin/python bench/bench_codec.py

Typical traffic: a submit_sm with ~100 characters of GSM text and one TLV, and a
deliver_sm delivery receipt (receipt text + receipted_message_id + message_state).
"encode" serialises an already built message object; "decode" turns one complete
PDU's bytes into a message object. aiosmpplib's decode also decodes the text (it has
no bytes-only path), so a row with our decode plus text decoding is shown too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiosmpplib import protocol as aio
from aiosmpplib.state import NPI, TON, OptionalParam, PhoneNumber

from smppd.protocol import pdu as p
from smppd.protocol.constants import ESM_DELIVERY_RECEIPT, DataCoding, Tag
from smppd.protocol.encoding import decode_text, encode_text

TEXT = ("Your verification code is 482913. It expires in 10 minutes. "
        "Do not share it with anyone, ok?")
RECEIPT = ("id:7f3e2a91c0 sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 "
           "stat:DELIVRD err:000 text:Your verification")
MESSAGE_ID = "7f3e2a91c0"
GOAL = 150_000


def rate(fn: Callable[[], object], seconds: float = 0.25, repeats: int = 8) -> float:
    """Best of ``repeats`` short runs, in calls per second (best-of resists a busy machine)."""
    best = 0.0
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(1000):
                fn()
            n += 1000
        best = max(best, n / elapsed)
    return best


def our_pdus() -> tuple[p.SubmitSm, p.DeliverSm]:
    submit = p.SubmitSm(
        sequence_number=1234, source_addr_ton=5, source_addr="Roshan", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr="93700123456", registered_delivery=1,
        short_message=encode_text(TEXT, DataCoding.SMSC_DEFAULT),
        tlvs={Tag.USER_MESSAGE_REFERENCE: p.int_tlv(42, 2)})
    deliver = p.DeliverSm(
        sequence_number=99, source_addr_ton=1, source_addr_npi=1, source_addr="93700123456",
        dest_addr_ton=5, destination_addr="Roshan", esm_class=ESM_DELIVERY_RECEIPT,
        short_message=RECEIPT.encode("ascii"),
        tlvs={Tag.RECEIPTED_MESSAGE_ID: p.cstr_tlv(MESSAGE_ID), Tag.MESSAGE_STATE: b"\x02"})
    return submit, deliver


def aio_pdus() -> tuple[aio.SubmitSm, aio.DeliverSm]:
    submit = aio.SubmitSm(
        sequence_num=1234, short_message=TEXT,
        source=PhoneNumber("Roshan", TON.ALPHANUMERIC, NPI.UNKNOWN),
        destination=PhoneNumber("93700123456", TON.INTERNATIONAL, NPI.ISDN),
        optional_params=[OptionalParam(Tag.USER_MESSAGE_REFERENCE, 42)])
    deliver = aio.DeliverSm(
        sequence_num=99, short_message=RECEIPT, esm_class=ESM_DELIVERY_RECEIPT,
        registered_delivery=0,
        source=PhoneNumber("93700123456", TON.INTERNATIONAL, NPI.ISDN),
        destination=PhoneNumber("Roshan", TON.ALPHANUMERIC, NPI.UNKNOWN),
        optional_params=[OptionalParam(Tag.RECEIPTED_MESSAGE_ID, MESSAGE_ID),
                         OptionalParam(Tag.MESSAGE_STATE, 2)])
    return submit, deliver


def aio_decoder(cls: type[aio.SubmitSm], data: bytes) -> Callable[[], object]:
    def run() -> object:
        return cls.from_pdu(data, aio.SmppMessage.parse_header(data))
    return run


def main() -> None:
    submit, deliver = our_pdus()
    a_submit, a_deliver = aio_pdus()
    submit_wire, deliver_wire = p.encode(submit), p.encode(deliver)
    a_submit_wire, a_deliver_wire = a_submit.pdu(), a_deliver.pdu()  # text encoded once, cached
    assert p.decode(a_submit_wire)[0] is not None and p.decode(a_deliver_wire)[0] is not None
    gsm = DataCoding.SMSC_DEFAULT

    def ours_decode_with_text(data: bytes) -> Callable[[], object]:
        def run() -> object:
            pdu = p.decode(data)[0]
            return decode_text(pdu.short_message, gsm)  # type: ignore[union-attr]
        return run

    rows = [
        ("submit_sm", len(submit_wire), "encode", rate(lambda: p.encode(submit)),
         rate(a_submit.pdu)),
        ("submit_sm", len(submit_wire), "decode", rate(lambda: p.decode(submit_wire)),
         rate(aio_decoder(aio.SubmitSm, a_submit_wire))),
        ("submit_sm", len(submit_wire), "decode+text", rate(ours_decode_with_text(submit_wire)),
         None),
        ("deliver_sm receipt", len(deliver_wire), "encode", rate(lambda: p.encode(deliver)),
         rate(a_deliver.pdu)),
        ("deliver_sm receipt", len(deliver_wire), "decode", rate(lambda: p.decode(deliver_wire)),
         rate(aio_decoder(aio.DeliverSm, a_deliver_wire))),
        ("deliver_sm receipt", len(deliver_wire), "decode+text",
         rate(ours_decode_with_text(deliver_wire)), None),
    ]
    print(f"{'PDU':<20}{'bytes':>6}  {'op':<12}{'smppd /s':>12}{'aiosmpplib /s':>15}"
          f"{'ratio':>7}  goal {GOAL:,}/s")
    for name, size, op, ours, theirs in rows:
        other = f"{theirs:>15,.0f}" if theirs else f"{'-':>15}"
        ratio = f"{ours / theirs:>6.1f}x" if theirs else f"{'':>7}"
        verdict = "" if op == "decode+text" else "ok" if ours >= GOAL else "MISS"
        print(f"{name:<20}{size:>6}  {op:<12}{ours:>12,.0f}{other}{ratio}  {verdict}")


if __name__ == "__main__":
    main()
