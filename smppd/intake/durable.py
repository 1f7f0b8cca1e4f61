"""Retry a store or event write on the message path until it is durable.

A write that fails there (PostgreSQL cut, a disk full for a while) must not be
dropped: a submit whose SMSC id is never stored is resent after a restart and its
receipts never match. So the write is tried again, with a growing pause, until it
succeeds or the task is cancelled at shutdown (what was not written is then what a
restart resends). Meanwhile the dispatcher's hold-back stops new sends once too many
answered submits wait (``Dispatcher.max_unrecorded``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from throttling.backoff import Backoff

T = TypeVar("T")

log = logging.getLogger("smppd.dispatch")

FIRST_PAUSE = 0.05  # seconds: the shortest pause between two tries (jittered above)
MAX_PAUSE = 5.0


async def until_durable(what: str, write: Callable[[], Awaitable[T]], *,
                        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                        **context: Any) -> T:
    """``await write()`` until it returns; one WARNING when it first fails and one
    INFO when it is through, with the number of attempts."""
    backoff = Backoff(FIRST_PAUSE, MAX_PAUSE)
    attempts = 0
    while True:
        attempts += 1
        try:
            result = await write()
        except Exception as exc:
            if attempts == 1:
                log.warning("write failed, retrying until it is durable", extra={
                    "event": "write_retrying", "what": what, "error": repr(exc), **context})
            await sleep(backoff.next_delay())
            continue
        if attempts > 1:
            log.info("write durable after retries", extra={
                "event": "write_durable", "what": what, "attempts": attempts, **context})
        return result
