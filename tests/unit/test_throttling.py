"""throttling: token bucket window guarantee, adaptive back-off, reconnect back-off.

All time is a fake clock; nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys

import pytest
from conftest import FakeClock, max_in_window
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling import AdaptiveRate, Backoff, RateLimiter, TokenBucket


def count_in(times: list[float], lo: float, hi: float) -> int:
    return sum(lo <= t < hi for t in times)


def overload(bucket: TokenBucket, clock: FakeClock, until: float) -> list[float]:
    """Ask for a send again the moment the bucket says it may come; return grant times."""
    grants = []
    while clock.now < until:
        wait = bucket.try_acquire()
        if wait == 0.0:
            grants.append(clock.now)
        else:
            clock.now += wait
    return grants


# -- TokenBucket: the one-second-window guarantee ----------------------------------

# rate, headroom, burst, start time, steps of (advance or None, nudge, attempts)
Scenario = tuple[float, float, int | None, float, list[tuple[float | None, float, int]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    rate = draw(
        st.sampled_from([0.5, 1.0, 2.0, 2.5, 3.0, 7.0, 200.0, 10_000.0])
        | st.integers(1, 40).map(float)
        | st.floats(0.05, 40.0)
    )
    headroom = draw(st.sampled_from([0.0, 0.02, 0.1]))
    per_second = max(1, math.floor(rate * (1 - headroom)))
    burst = draw(st.none() | st.integers(1, per_second))
    start = draw(st.sampled_from([0.0, 0.999999, 1e6 + 0.3]) | st.floats(0.0, 1e7))
    # Each step: advance by dt (None: by exactly the last wait returned), nudged by a
    # nanosecond or so to probe the window boundaries, then ask n times.
    step = st.tuples(
        st.none() | st.just(0.0) | st.floats(0.0, 2.0 / rate) | st.floats(0.0, 1.5),
        st.just(0.0) | st.floats(-3e-9, 3e-9),
        st.integers(1, 3),
    )
    return rate, headroom, burst, start, draw(st.lists(step, min_size=20, max_size=400))


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_no_one_second_window_exceeds_the_rate(scenario: Scenario) -> None:
    rate, headroom, burst, start, steps = scenario
    clock = FakeClock(start)
    bucket = TokenBucket(rate, burst, headroom=headroom, clock=clock)
    grants: list[float] = []
    last_wait = 0.0
    for dt, nudge, attempts in steps:
        clock.now = max(clock.now, clock.now + (last_wait if dt is None else dt) + nudge)
        for _ in range(attempts):
            wait = bucket.try_acquire()
            if wait == 0.0:
                grants.append(clock.now)
            else:
                assert wait > 0.0
                last_wait = wait
    assert max_in_window(grants) <= max(1, math.floor(rate * (1 - headroom)))


def test_ten_second_overload_at_200_tps() -> None:
    clock = FakeClock(5_000.25)
    grants = overload(TokenBucket(200, clock=clock), clock, until=5_010.25)
    assert max_in_window(grants) <= 200
    # Every full window inside the run, aligned or not, is nearly full.
    counts = [count_in(grants, 5_000.25 + s / 10, 5_001.25 + s / 10) for s in range(91)]
    assert min(counts) >= 195
    assert max(counts) <= 200
    assert len(grants) >= 1_990


def test_high_rate_stays_exact_at_a_large_clock_value() -> None:
    clock = FakeClock(1e6 + 0.123)
    grants = overload(TokenBucket(10_000, clock=clock), clock, until=1e6 + 3.123)
    assert max_in_window(grants) <= 10_000
    assert len(grants) >= 29_900


def test_grants_one_nanosecond_past_the_boundary_not_before() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(1, clock=clock)
    assert bucket.try_acquire() == 0.0
    clock.now = 0.999999
    assert bucket.try_acquire() == pytest.approx(1e-6, abs=1e-8)
    clock.now = 1.0
    assert bucket.try_acquire() > 0.0  # would be the second grant in [0, 1]
    clock.now = 1.000000002
    assert bucket.try_acquire() == 0.0


def test_sleeping_the_returned_wait_is_enough() -> None:
    clock = FakeClock(0.1)
    bucket = TokenBucket(3, clock=clock)
    assert bucket.try_acquire() == 0.0
    for _ in range(100):
        wait = bucket.try_acquire()
        assert wait > 0.0
        clock.now += wait
        assert bucket.try_acquire() == 0.0


def test_fractional_rates_round_down_and_slow_rates_space_out() -> None:
    clock = FakeClock(0.0)
    grants = overload(TokenBucket(2.5, clock=clock), clock, until=10.0)
    assert max_in_window(grants) == 2
    assert len(grants) == 20

    clock = FakeClock(0.0)
    bucket = TokenBucket(0.5, clock=clock)
    grants = overload(bucket, clock, until=10.0)
    assert len(grants) == 5
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(grants))
    assert bucket.interval == pytest.approx(2.0)


def test_headroom_paces_below_the_limit() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(200, headroom=0.02, clock=clock)
    grants = overload(bucket, clock, until=5.0)
    assert max_in_window(grants) == 196
    assert bucket.limit == 200
    assert bucket.rate == 200


def test_burst_goes_back_to_back_then_paces_slower() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(10, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.burst == 3
    assert bucket.interval == pytest.approx(1 / 8)  # 10 - 3 + 1
    grants = overload(bucket, clock, until=10.0)
    clock.now += 5.0  # idle: the burst refills
    grants += overload(bucket, clock, until=20.0)
    assert max_in_window(grants) <= 10


def test_set_limit_takes_effect_at_runtime() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(100, clock=clock)
    grants = overload(bucket, clock, until=2.0)
    bucket.set_limit(20)
    assert (bucket.limit, bucket.rate) == (20, 20)
    lowered = overload(bucket, clock, until=4.0)
    # The last grant before the change plus those after it obey the new limit.
    assert max_in_window([grants[-1], *lowered]) <= 20
    assert count_in(lowered, 3.0, 4.0) >= 19
    bucket.set_limit(500)
    raised = overload(bucket, clock, until=6.0)
    assert max_in_window(raised) <= 500
    assert count_in(raised, 5.0, 6.0) >= 495


def test_raising_the_limit_brings_the_next_send_forward() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(0.1, clock=clock)  # one send per 10 s
    assert bucket.try_acquire() == 0.0
    clock.now = 0.05
    assert bucket.try_acquire() > 9.0
    bucket.set_limit(10)
    clock.now = 0.11
    assert bucket.try_acquire() == 0.0


def test_set_rate_is_clamped_to_the_limit() -> None:
    bucket = TokenBucket(100, clock=FakeClock(0.0))
    bucket.set_rate(30)
    assert bucket.rate == 30
    assert bucket.interval == pytest.approx(1 / 30)
    bucket.set_rate(1_000)
    assert bucket.rate == 100


@pytest.mark.parametrize(
    ("rate", "burst", "headroom"),
    [
        (0, None, 0.0),
        (-5, None, 0.0),
        (math.nan, None, 0.0),
        (math.inf, None, 0.0),
        (10, 1.5, 0.0),
        (10, 0, 0.0),
        (10, None, 1.0),
        (10, None, -0.1),
    ],
)
def test_bad_settings_are_refused(rate: float, burst: float | None, headroom: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, headroom=headroom, clock=FakeClock(0.0))
    with pytest.raises(ValueError):
        TokenBucket(10, clock=FakeClock(0.0)).set_limit(0 if burst is None else -1)


async def test_acquire_shares_one_bucket_between_binds() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(50, clock=clock, sleep=clock.sleep)
    grants: list[float] = []

    async def bind() -> None:
        while clock.now < 3.0:
            await bucket.acquire()
            grants.append(clock.now)

    await asyncio.gather(*(bind() for _ in range(5)))
    assert max_in_window(grants) <= 50
    assert 150 <= len(grants) <= 155


# -- AdaptiveRate ----------------------------------------------------------------------


def adaptive(limit: float = 100.0) -> tuple[AdaptiveRate, TokenBucket, FakeClock]:
    clock = FakeClock(0.0)
    bucket = TokenBucket(limit, clock=clock, sleep=clock.sleep)
    return AdaptiveRate(bucket, clock=clock, sleep=clock.sleep), bucket, clock


def test_adaptive_is_a_rate_limiter() -> None:
    limiter: RateLimiter = adaptive()[0]
    assert limiter.limit == 100


def test_throttled_halves_the_rate_and_pauses() -> None:
    rate, bucket, clock = adaptive()
    assert rate.allow_request()
    assert rate.throttle_delay() == 0.0
    rate.throttled()
    assert bucket.rate == 50
    assert bucket.interval == pytest.approx(1 / 50)
    assert not rate.allow_request()
    assert rate.throttle_delay() == 1.0
    assert rate.try_acquire() == 1.0
    clock.now = 0.4
    rate.throttled()  # more errors from submits in flight: no second cut
    assert bucket.rate == 50
    assert rate.throttle_delay() == pytest.approx(0.6)
    clock.now = 1.0
    assert rate.allow_request()
    assert rate.try_acquire() == 0.0


def test_cuts_stop_at_the_floor() -> None:
    rate, bucket, clock = adaptive()
    seen = []
    for _ in range(8):
        rate.throttled()
        seen.append(bucket.rate)
        clock.now += 1.0
    assert seen == [50, 25, 12.5, 6.25, 5, 5, 5, 5]  # floor: 5 % of 100

    slow, bucket, _ = adaptive(limit=0.5)
    slow.throttled()
    assert bucket.rate == 0.5  # a limit below the floor is itself the floor


def test_recovery_is_additive_and_capped_at_the_limit() -> None:
    rate, bucket, clock = adaptive()
    rate.throttled()  # 50 TPS, paused until t=1
    clock.now = 0.5
    rate.not_throttled()  # answers during the pause do not count
    assert bucket.rate == 50
    shape = {}
    for tick in range(1, 141):  # a success every 0.1 s from t=1.1 to t=15
        clock.now = 1.0 + tick / 10
        rate.not_throttled()
        shape[tick] = bucket.rate
    assert shape[10] == pytest.approx(55)  # +5 % of the limit per second
    assert shape[50] == pytest.approx(75)
    assert shape[100] == pytest.approx(100)
    assert shape[140] == 100
    assert all(a <= b for a, b in itertools.pairwise(shape.values()))


def test_an_idle_spell_is_not_a_run_of_successes() -> None:
    rate, bucket, clock = adaptive()
    rate.throttled()
    clock.now = 61.0  # a minute of silence, then one answer
    rate.not_throttled()
    assert bucket.rate == pytest.approx(55)


async def test_acquire_waits_out_the_pause() -> None:
    rate, _, clock = adaptive()
    rate.throttled()
    await rate.acquire()
    assert clock.now == pytest.approx(1.0)


def test_set_limit_through_adaptive_resets_the_rate() -> None:
    rate, bucket, _ = adaptive()
    rate.throttled()
    rate.set_limit(40)
    assert (rate.limit, rate.rate, bucket.rate) == (40, 40, 40)
    rate.set_rate(10)
    assert rate.rate == 10


# -- Backoff ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, random=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_base_is_a_minimum_for_every_delay() -> None:
    # reconnect_min = 1.0: the first retries came 0.1 s and 0.2 s apart (issue 13.7)
    backoff = Backoff(1.0, 60.0, random=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0] * 5
    backoff.reset()
    assert backoff.next_delay() == 1.0


@given(st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=200))
def test_backoff_delays_stay_within_their_bounds(draws: list[float]) -> None:
    values = iter(draws)
    backoff = Backoff(0.2, 10.0, random=lambda: next(values))
    for n in range(len(draws)):
        delay = backoff.next_delay()
        assert 0.2 <= delay < min(10.0, 0.2 * 2 ** (n + 1)) + 1e-12


def test_backoff_never_overflows() -> None:
    backoff = Backoff(1.0, 60.0, factor=10.0, random=lambda: 0.5)
    for _ in range(10_000):
        assert 1.0 <= backoff.next_delay() <= 60.0


def test_backoff_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


# -- Standalone -------------------------------------------------------------------------


def test_throttling_imports_no_other_package() -> None:
    code = (
        "import sys, throttling; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'smppd', 'control', 'correlation', 'vault'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
