"""The cluster-wide token bucket against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import time
import uuid
from fractions import Fraction

import pytest
import redis.asyncio as aioredis
from servers import REDIS_URL

from throttling.redis_bucket import SWITCH_PAUSE, RedisTokenBucket


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """Most grants in any half-open window [t, t + width)."""
    ordered = sorted(Fraction(t) for t in times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
async def redis_client():
    client = aioredis.from_url(REDIS_URL)
    await client.ping()  # fails loudly when Redis is down: the test command starts it
    yield client
    await client.aclose()


async def test_two_replicas_share_one_budget(redis_client):
    key = f"test:bucket:{uuid.uuid4().hex}"
    # The default 2 % headroom absorbs the jitter between Redis's clock and ours.
    replicas = [RedisTokenBucket(redis_client, key, 100, replicas=2) for _ in range(2)]
    grants: list[float] = []
    deadline = time.monotonic() + 1.5

    async def send(bucket: RedisTokenBucket) -> None:
        while time.monotonic() < deadline:
            await bucket.acquire()
            grants.append(time.monotonic())

    await asyncio.gather(*(send(b) for b in replicas))
    # Both replicas together, paced on Redis's clock: never more than 100 in a second.
    assert max_in_any_window(grants) <= 100
    assert len(grants) >= 135  # and the budget is actually used (1.5 s at 98/s)


async def test_unreachable_redis_falls_back_to_a_local_share():
    now = [1000.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    bucket = RedisTokenBucket(dead, "test:dead", 200, replicas=4, headroom=0.0,
                              clock=lambda: now[0], sleep=fake_sleep)
    grants = []
    for _ in range(60):
        await bucket.acquire()
        grants.append(now[0])
    await dead.aclose()
    assert bucket.degraded and bucket.redis_errors >= 1
    # The switch waits one second, then paces at 200 / 4 = 50 per second.
    assert grants[0] >= 1000.0 + SWITCH_PAUSE
    assert max_in_any_window(grants) <= 50
