"""TPS limiting for SMPP submits: token buckets, adaptive back-off, reconnect back-off.

Standalone: imports nothing from smppd, control or correlation.
"""

from throttling.adaptive import AdaptiveRate
from throttling.backoff import Backoff
from throttling.bucket import Clock, RateLimiter, Sleep, TokenBucket

__all__ = ["AdaptiveRate", "Backoff", "Clock", "RateLimiter", "Sleep", "TokenBucket"]
