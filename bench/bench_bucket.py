"""try_acquire calls per second: python bench/bench_bucket.py

Two cases: every call granted (a fake clock that moves one interval per call) and
every call refused (a bucket that is always empty), each with the real-clock variant
where time.monotonic is part of the cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from throttling import TokenBucket


def bench(label: str, bucket: TokenBucket, n: int = 300_000) -> None:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            bucket.try_acquire()
        best = min(best, time.perf_counter() - start)
    print(f"{label}: {n / best:,.0f} calls/s ({best / n * 1e9:.0f} ns each)")


def stepping_clock(step: float) -> Callable[[], float]:
    now = 1e6

    def clock() -> float:
        nonlocal now
        now += step
        return now

    return clock


if __name__ == "__main__":
    bench(
        "mostly granted, fake clock, 10k TPS",
        TokenBucket(10_000, clock=stepping_clock(1e-4 + 1e-9)),
    )
    bench("refused, fake clock, 10k TPS", TokenBucket(10_000, clock=stepping_clock(0.0)))
    bench("monotonic clock, 10k TPS (mostly refused)", TokenBucket(10_000))
    bench("monotonic clock, 1M TPS (mostly granted)", TokenBucket(1_000_000))
