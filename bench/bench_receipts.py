"""Parses per second of a typical text receipt: python bench/bench_receipts.py"""

from __future__ import annotations

import time

from correlation.receipts import TAG_MESSAGE_STATE, TAG_RECEIPTED_MESSAGE_ID, parse_receipt

TEXT = (
    b"id:1234567890 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201"
    b" stat:DELIVRD err:000 text:Hello from the sim"
)
TLVS = {TAG_RECEIPTED_MESSAGE_ID: b"499602D2\x00", TAG_MESSAGE_STATE: b"\x02"}


def bench(label: str, short_message: bytes, tlvs: dict[int, bytes], n: int = 200_000) -> None:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            parse_receipt(short_message, tlvs)
        best = min(best, time.perf_counter() - start)
    print(f"{label}: {n / best:,.0f} parses/s ({best / n * 1e6:.2f} us each)")


if __name__ == "__main__":
    bench("text receipt", TEXT, {})
    bench("text + TLVs", TEXT, TLVS)
    bench("TLVs only", b"", TLVS)
