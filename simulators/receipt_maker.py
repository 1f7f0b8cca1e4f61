"""Delivery receipts of the simulator: what to send (outcome, delay), as bytes, and when.

``ReceiptMaker.plan`` turns one accepted submit_sm into the deliver_sm frames to send
and their delays, from the MNO's receipt config and a seeded ``random.Random`` (so a
run is reproducible). Frames are built directly as bytes (sequence number 0, patched
in when sent): at 50,000 receipts a second the generic encoder would be the
bottleneck. ``DueQueue`` holds them until due with one timer for all of them.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import random
import time
from collections.abc import Callable
from typing import Generic, NamedTuple, Protocol, TypeVar

from smppd.protocol.constants import (
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    HEADER_LEN,
    REG_DELIVERY_FAILURE,
    REG_DELIVERY_FINAL,
    Tag,
)
from smppd.protocol.encoding import decode_text

from .config import ReceiptConfig
from .wire import DELIVER_SM, HEADER, TLV_HEAD

# err field of the text form and GSM error code of network_error_code, per outcome.
_ERRORS = {"DELIVRD": 0, "ACCEPTD": 0, "ENROUTE": 0, "UNDELIV": 1, "EXPIRED": 27, "REJECTD": 11}
_STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "ACCEPTD": 6, "REJECTD": 8}
_NETWORK_TYPE_GSM = 3
_TEXT_MAX = 20  # as correlation.receipts.format_receipt truncates it


class SubmitLike(Protocol):
    """The submit_sm fields a receipt needs: a decoded ``SubmitSm`` or a ``SubmitView``."""

    @property
    def source_addr_ton(self) -> int: ...
    @property
    def source_addr_npi(self) -> int: ...
    @property
    def source_addr(self) -> str: ...
    @property
    def dest_addr_ton(self) -> int: ...
    @property
    def dest_addr_npi(self) -> int: ...
    @property
    def destination_addr(self) -> str: ...
    @property
    def esm_class(self) -> int: ...
    @property
    def registered_delivery(self) -> int: ...
    @property
    def data_coding(self) -> int: ...
    @property
    def short_message(self) -> bytes: ...


class SubmitView(NamedTuple):
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes


def peek_submit(frame: bytes) -> SubmitView | None:
    """The fields a receipt needs from a submit_sm frame, without a full decode.

    None when the body does not parse; the caller then decodes it properly to get the
    error status. Field length limits are not checked here.
    """
    find = frame.index
    try:
        p = find(0, HEADER_LEN) + 1  # service_type
        src_ton, src_npi = frame[p], frame[p + 1]
        e = find(0, p + 2)
        src = frame[p + 2:e].decode("latin-1")
        dst_ton, dst_npi = frame[e + 1], frame[e + 2]
        p = find(0, e + 3)
        dst = frame[e + 3:p].decode("latin-1")
        esm = frame[p + 1]
        p = find(0, find(0, p + 4) + 1) + 1  # schedule_delivery_time, validity_period
        registered, data_coding, length = frame[p], frame[p + 2], frame[p + 4]
        if p + 5 + length > len(frame):
            return None
        return SubmitView(src_ton, src_npi, src, dst_ton, dst_npi, dst, esm, registered,
                          data_coding, frame[p + 5:p + 5 + length])
    except (ValueError, IndexError):
        return None


def wants_receipt(registered_delivery: int, stat: str) -> bool:
    """Does the submit's registered_delivery ask for a final receipt with this outcome?"""
    asked = registered_delivery & 0x03
    return asked == REG_DELIVERY_FINAL or (asked == REG_DELIVERY_FAILURE and stat != "DELIVRD")


class ReceiptMaker:
    """Plans and builds the receipts of one MNO."""

    def __init__(self, config: ReceiptConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._stats = list(config.outcomes)
        self._cumulative = list(itertools.accumulate(config.outcomes.values()))
        self._dates: dict[int, str] = {}  # minute -> "yymmddHHMM"

    def plan(self, submit: SubmitLike, message_id: str, now: float
             ) -> list[tuple[float, bytes]]:
        """(delay in seconds, deliver_sm frame) per receipt ``submit`` gets; maybe none."""
        config = self.config
        rng = self.rng
        cumulative = self._cumulative
        index = 0
        if len(cumulative) > 1:
            index = min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]),
                        len(cumulative) - 1)
        stat = self._stats[index]
        if not wants_receipt(submit.registered_delivery, stat):
            return []
        low, high = config.delay_ms
        delay = (low if low == high else rng.uniform(low, high)) / 1000.0
        plan: list[tuple[float, bytes]] = []
        if config.intermediate is not None:
            half = delay / 2
            plan.append((half, self.build(submit, message_id, config.intermediate, now,
                                          now + half)))
        plan.append((delay, self.build(submit, message_id, stat, now, now + delay)))
        return plan

    def build(self, submit: SubmitLike, message_id: str, stat: str, submitted: float,
              done: float) -> bytes:
        """The deliver_sm frame (sequence 0) of one receipt; addresses swapped."""
        err = _ERRORS[stat]
        mid = message_id.encode("latin-1")
        text = b""
        if self.config.text:
            # the same text as correlation.receipts.format_receipt, with dates cached
            text = (
                f"id:{message_id} sub:001 dlvrd:001 submit date:{self._date(submitted)}"
                f" done date:{self._date(done)} stat:{stat} err:{err:03d}"
                f" text:{original_text(submit)}"
            ).encode("latin-1", errors="replace")[:254]
        tlvs = b""
        if self.config.tlvs:
            tlvs = (TLV_HEAD.pack(Tag.RECEIPTED_MESSAGE_ID, len(mid) + 1) + mid + b"\0"
                    + TLV_HEAD.pack(Tag.MESSAGE_STATE, 1) + bytes((_STATES[stat],)))
            if err:
                tlvs += TLV_HEAD.pack(Tag.NETWORK_ERROR_CODE, 3) + bytes(
                    (_NETWORK_TYPE_GSM, err >> 8, err & 0xFF))
        body = b"".join((
            b"\0",  # service_type
            bytes((submit.dest_addr_ton, submit.dest_addr_npi)),
            submit.destination_addr.encode("latin-1"), b"\0",
            bytes((submit.source_addr_ton, submit.source_addr_npi)),
            submit.source_addr.encode("latin-1"), b"\0",
            # esm_class, protocol_id, priority, two empty times, registered_delivery,
            # replace_if_present, data_coding, sm_default_msg_id, sm_length
            bytes((ESM_DELIVERY_RECEIPT, 0, 0, 0, 0, 0, 0, 0, 0, len(text))),
            text,
            tlvs,
        ))
        return HEADER.pack(HEADER_LEN + len(body), DELIVER_SM, 0, 0) + body

    def _date(self, timestamp: float) -> str:
        minute = int(timestamp // 60)
        date = self._dates.get(minute)
        if date is None:
            if len(self._dates) > 64:
                self._dates.clear()
            date = self._dates[minute] = time.strftime("%y%m%d%H%M", time.localtime(timestamp))
        return date


def original_text(submit: SubmitLike) -> str:
    """The first characters of the submitted text, for the receipt's ``text:`` field."""
    body = submit.short_message
    if submit.esm_class & ESM_UDHI and body:
        body = body[1 + body[0]:]
    return decode_text(body[:2 * _TEXT_MAX], submit.data_coding)[:_TEXT_MAX]


T = TypeVar("T")


class DueQueue(Generic[T]):
    """Items released to ``deliver`` when due (loop time), with a single timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[T], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # ties keep insertion order
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, delay: float, item: T) -> None:
        due = self._loop.time() + delay
        heapq.heappush(self._heap, (due, next(self._order), item))
        if due < self._timer_due:
            self._arm(due)

    def clear(self) -> None:
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_due = None, float("inf")

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_due = None, float("inf")
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            self._deliver(heapq.heappop(heap)[2])
        if heap:
            self._arm(heap[0][0])
