"""Micro-benchmark of the per-message text path: python bench/bench_encoding.py"""

from __future__ import annotations

import time
from collections.abc import Callable

from smppd.protocol.constants import DataCoding
from smppd.protocol.encoding import count_segments, decode_text, encode_text
from smppd.protocol.split import split_message

GSM_160 = ("Your code is 123456. Valid for 10 minutes, do not share it with anyone! " * 3)[:160]
UCS2_70 = ("Ваш код 123456 😀 действует 10 минут. " * 2)[:70]
TEXT_500 = ("Long message with an extension char € every so often, for splitting. " * 8)[:500]


def bench(name: str, fn: Callable[[], object], seconds: float = 1.0) -> None:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1000):
            fn()
        n += 1000
    print(f"{name:<44} {n / elapsed:>12,.0f} ops/s")


def main() -> None:
    gsm_bytes = encode_text(GSM_160, DataCoding.SMSC_DEFAULT)
    payload_500 = encode_text(TEXT_500, DataCoding.SMSC_DEFAULT)
    bench("encode_text 160-char GSM", lambda: encode_text(GSM_160, DataCoding.SMSC_DEFAULT))
    bench("encode_text 70-char UCS2", lambda: encode_text(UCS2_70, DataCoding.UCS2))
    bench("decode_text 160-char GSM", lambda: decode_text(gsm_bytes, DataCoding.SMSC_DEFAULT))
    bench("count_segments 500-char GSM", lambda: count_segments(TEXT_500))
    bench(
        "split_message 500-char GSM (udh, 4 parts)",
        lambda: split_message(payload_500, DataCoding.SMSC_DEFAULT, "udh", 42),
    )


if __name__ == "__main__":
    main()
