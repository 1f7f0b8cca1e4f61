"""AckedPublisher against real NATS JetStream (127.0.0.1:4222)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NoStreamResponseError
from servers import NATS_URL

from smppd.cluster.nats_publish import AckedPublisher


@pytest.fixture
async def stream() -> AsyncIterator[tuple[Any, str, AckedPublisher, str]]:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    name, subject = f"T{tag}_PUB", f"t{tag}.pub"
    await js.add_stream(StreamConfig(name=name, subjects=[subject], duplicate_window=60))
    publisher = AckedPublisher(nc)
    await publisher.start()
    yield js, subject, publisher, name
    await js.delete_stream(name)
    await nc.close()


async def test_every_message_is_stored_once_acked(stream: Any) -> None:
    js, subject, publisher, name = stream
    messages = [(f"event {i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(500)]
    await publisher.publish_all(subject, messages, timeout=5.0)
    # A republish (after a crash, a retry) dedupes on Nats-Msg-Id.
    await publisher.publish_all(subject, messages[:10], timeout=5.0)
    assert (await js.stream_info(name)).state.messages == 500
    sub = await js.pull_subscribe(subject, durable=None)
    got = []
    while len(got) < 500:
        got += [m.data for m in await sub.fetch(500 - len(got), timeout=2.0)]
    assert got == [payload for payload, _ in messages]


async def test_a_subject_no_stream_stores_raises(stream: Any) -> None:
    publisher = stream[2]
    with pytest.raises(NoStreamResponseError):
        await publisher.publish_all(f"nowhere.{uuid.uuid4().hex}", [(b"x", {})], timeout=5.0)
