"""JetStream publishes in bulk: send many, then wait for all their acks.

nats-py's ``publish_async`` does the same but costs ~20 µs of Python per message
(a semaphore behind ``wait_for``, a fresh token per message); this costs ~9 µs,
which matters at one DLR event per message. The acks come back on one wildcard
inbox subscription, each to the reply subject its message named.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"  # no stream listens on the subject


class AckedPublisher:
    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._tokens = itertools.count()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._prefix = f"{self._nc.new_inbox()}."
        self._sub = await self._nc.subscribe(f"{self._prefix}*", cb=self._on_ack)

    async def publish_all(
        self, subject: str, messages: Sequence[tuple[bytes, dict[str, str]]], timeout: float
    ) -> None:
        """Publish (payload, headers) pairs; returns once JetStream stored every one.
        Raises on the first error or after ``timeout`` seconds without every ack."""
        loop = asyncio.get_running_loop()
        tokens = []
        futures = []
        try:
            for payload, headers in messages:
                token = str(next(self._tokens))
                future: asyncio.Future[None] = loop.create_future()
                self._pending[token] = future
                tokens.append(token)
                futures.append(future)
                await self._nc.publish(subject, payload, reply=self._prefix + token,
                                       headers=headers)
            await asyncio.wait_for(asyncio.gather(*futures), timeout=timeout)
        finally:
            for token in tokens:
                self._pending.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix):], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            future.set_exception(NoStreamResponseError())
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            future.set_exception(APIError(description="unreadable publish ack"))
            return
        if isinstance(reply, dict) and "error" in reply:
            try:
                APIError.from_error(reply["error"])  # raises the error's own class
            except APIError as exc:
                future.set_exception(exc)
                return
        future.set_result(None)
