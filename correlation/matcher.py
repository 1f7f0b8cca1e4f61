"""Receipt matching policy: which submitted part a delivery receipt answers.

A receipt can beat its submit_sm_resp (the SMSC answers the submit, the handset
acknowledges, and the deliver_sm overtakes the response on another bind). So a
receipt that matches nothing is held in memory for ``hold_seconds``; the submit that
arrives meanwhile claims it. After that it goes to the store's orphan table, where a
late submit still finds it.

Under the "auto" id form a receipt id has several readings (``candidate_keys``:
decimal "13" is key "d", read as hex it is "13", the key of submit id "19"). Only
the preferred reading (the first) matches at once and claims a held receipt: the
others may be another message's submit while this receipt's own one is still being
recorded. They are tried only at expiry, once the preferred one had
``hold_seconds`` to show up.

Ordering matters with the store's FIFO queue: ``on_submitted`` looks for held
receipts only after its submit is recorded, and ``on_receipt`` holds a receipt in the
same step in which its lookup came back empty, so neither can miss the other.

No I/O besides the store; the clock is injected.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from correlation.ids import IdForm, candidate_keys, normalise_id
from correlation.receipts import DlrStatus, Receipt
from correlation.store import (
    DELIVERED,
    EXPIRED,
    FINAL_STATES,
    REJECTED,
    SUBMITTED,
    UNDELIVERABLE,
    UNKNOWN,
    CorrelationStore,
    PartRef,
)

# Receipt status -> part state; intermediate receipts leave the part SUBMITTED.
PART_STATE_BY_STATUS: dict[DlrStatus, str] = {
    DlrStatus.DELIVERED: DELIVERED,
    DlrStatus.UNDELIVERABLE: UNDELIVERABLE,
    DlrStatus.EXPIRED: EXPIRED,
    DlrStatus.REJECTED: REJECTED,
    DlrStatus.DELETED: UNDELIVERABLE,  # deleted by the SMSC: it will not be delivered
    DlrStatus.UNKNOWN: UNKNOWN,
    DlrStatus.ENROUTE: SUBMITTED,
    DlrStatus.ACCEPTED: SUBMITTED,
}


@dataclass(frozen=True, slots=True)
class MatchResult:
    """A receipt matched to a part, and what it did to the message."""

    message_id: str
    part: int
    total: int
    message_state: str  # the message's aggregate state after this receipt
    final: bool  # message_state is final: publish the message's DLR
    stat: str
    err: str | None
    part_state: str
    receipt: Receipt


@dataclass(slots=True, eq=False)
class _Held:
    operator_id: str
    keys: tuple[str, ...]
    receipt: Receipt
    held_at: float
    taken: bool = field(default=False)
    # Resolved once the receipt is safe: matched, or written to the orphan table.
    settled: asyncio.Future[None] | None = None


def receipt_keys(receipt_id: str, form: IdForm) -> tuple[str, ...]:
    """The keys a receipt id may match: every reading under 'auto', else the one."""
    if form == "auto":
        return candidate_keys(receipt_id) or (receipt_id,)
    return (normalise_id(receipt_id, form),)


class ReceiptMatcher:
    """Matches receipts to submitted parts through a CorrelationStore."""

    def __init__(
        self, store: CorrelationStore, clock: Callable[[], float], hold_seconds: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._hold_seconds = hold_seconds
        self._held: dict[tuple[str, str], list[_Held]] = {}  # (operator, key) -> receipts
        self._held_order: deque[_Held] = deque()  # oldest first
        self._unsettled: dict[int, _Held] = {}  # id(receipt) -> held, until settled
        # Called with receipts matched at expiry (a submit stored by another replica).
        self.on_late_match: Callable[[str, MatchResult], Awaitable[None]] | None = None

    @property
    def held_count(self) -> int:
        return sum(1 for h in self._held_order if not h.taken)

    async def on_submitted(
        self,
        operator_id: str,
        message_id: str,
        part: int,
        total: int,
        smsc_id: str,
        id_form: IdForm,
    ) -> list[MatchResult]:
        """Record a submit_sm_resp; returns the receipts that were waiting for it."""
        return await self.on_submitted_many(
            operator_id, [(message_id, part, total, smsc_id)], id_form)

    async def on_submitted_many(
        self,
        operator_id: str,
        submits: Sequence[tuple[str, int, int, str]],
        id_form: IdForm,
    ) -> list[MatchResult]:
        """``on_submitted`` for many parts of one operator in one store write; each
        submit is (message_id, part, total, smsc_id)."""
        now = self._clock()
        rows = [
            (message_id, part, total, operator_id, smsc_id, normalise_id(smsc_id, id_form), now)
            for message_id, part, total, smsc_id in submits
        ]
        await self._store.record_submitted_many(rows)
        held = self._held
        orphans = await self._store.take_orphans_many(operator_id, [row[5] for row in rows])
        waiting: list[tuple[PartRef, Receipt]] = []
        taken: list[_Held] = []
        if not orphans and not any((operator_id, row[5]) in held for row in rows):
            return []  # the usual case: no receipt was waiting for these submits
        for message_id, part, total, _, _, key, _ in rows:
            ref = PartRef(message_id, part, total)
            if (operator_id, key) in held:
                for h in self._take_held(operator_id, key):
                    taken.append(h)
                    waiting.append((ref, h.receipt))
            waiting += [(ref, receipt_from_dict(d)) for d in orphans.get(key, ())]
        # One receipt write for every receipt that was waiting, in arrival order per part.
        try:
            applied = await self._apply_many(waiting)
        except BaseException as exc:
            for h in taken:  # their deliver_sm are answered with an error: redelivered
                self._settle(h, error=exc)
            raise
        self.settle_taken(taken)
        return [r for r in applied if r is not None]

    async def on_receipt(
        self, operator_id: str, receipt: Receipt, id_form: IdForm
    ) -> MatchResult | None:
        """Match a receipt from any bind of the operator; None means it is held."""
        return (await self.on_receipts(operator_id, [receipt], id_form))[0]

    async def on_receipts(
        self, operator_id: str, receipts: Sequence[Receipt], id_form: IdForm
    ) -> list[MatchResult | None]:
        """``on_receipt`` for many receipts of one operator: one lookup and one store
        write for the batch. One answer per receipt, in order; None means held (or
        its part vanished, as with ``on_receipt``)."""
        key_sets = [receipt_keys(receipt.message_id, id_form) for receipt in receipts]
        refs = await self._store.lookup_parts(operator_id, [keys[:1] for keys in key_sets])
        # No await between the misses and their holds: a submit recorded meanwhile finds them.
        now = self._clock()
        loop = asyncio.get_running_loop()
        for receipt, keys, ref in zip(receipts, key_sets, refs, strict=True):
            if ref is None:
                self._hold(_Held(operator_id, keys, receipt, now, settled=loop.create_future()))
        found = [(ref, receipt) for ref, receipt in zip(refs, receipts, strict=True) if ref]
        applied = iter(await self._apply_many(found))
        return [next(applied) if ref is not None else None for ref in refs]

    def settled(self, receipt: Receipt) -> Awaitable[None]:
        """Done once a held receipt is matched or durably in the orphan table (an
        error if its write failed), so the deliver_sm is answered only when a crash
        can no longer lose it. Ask right after ``on_receipt(s)`` held it."""
        held = self._unsettled.get(id(receipt))
        if held is not None and held.settled is not None:
            return asyncio.shield(held.settled)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def expire_held(self, now: float) -> int:
        """Move receipts held longer than hold_seconds to the orphan table; returns how many."""
        moved = 0
        deadline = now - self._hold_seconds
        while self._held_order and self._held_order[0].held_at <= deadline:
            held = self._held_order.popleft()
            if held.taken:
                continue
            # Another replica may have stored the submit meanwhile: look once more, under
            # every reading now, with the receipt still claimable in memory by a local
            # submit while we wait.
            ref = await self._store.lookup_part(held.operator_id, *held.keys)
            if held.taken:
                continue
            if ref is not None:
                self._unhook(held)
                (result,) = await self._apply_many([(ref, held.receipt)])
                self._settle(held)
                if result is not None and self.on_late_match is not None:
                    await self.on_late_match(held.operator_id, result)
                continue
            # Unhook and queue the write in one step (put_orphan queues before it suspends):
            # the rest stay claimable in memory until their turn.
            self._unhook(held)
            fields = receipt_to_dict(held.receipt)
            await self._store.put_orphan(held.operator_id, held.keys, fields, held.held_at)
            self._settle(held)
            moved += 1
        return moved

    async def _apply_many(
        self, matched: Sequence[tuple[PartRef, Receipt]]
    ) -> list[MatchResult | None]:
        if not matched:
            return []
        now = self._clock()
        rows = []
        for ref, receipt in matched:
            part_state = PART_STATE_BY_STATUS[receipt.status]
            rows.append((ref.message_id, ref.part, ref.total, part_state, receipt.stat,
                         receipt.err, now))
        states = await self._store.record_receipts(rows)
        return [
            _result(ref, receipt, row[3], state) if state is not None else None
            for (ref, receipt), row, state in zip(matched, rows, states, strict=True)
        ]

    def _hold(self, held: _Held) -> None:
        # Claimable by a submit under the preferred reading only (see the module docstring).
        self._held.setdefault((held.operator_id, held.keys[0]), []).append(held)
        self._held_order.append(held)
        self._unsettled[id(held.receipt)] = held

    def _take_held(self, operator_id: str, key: str) -> list[_Held]:
        taken = [h for h in self._held.get((operator_id, key), ()) if not h.taken]
        for held in taken:
            held.taken = True  # its deque entry is skipped on expiry
            self._unhook(held)
        return taken

    def settle_taken(self, taken: list[_Held]) -> None:
        for held in taken:
            self._settle(held)

    def _settle(self, held: _Held, error: BaseException | None = None) -> None:
        self._unsettled.pop(id(held.receipt), None)
        if held.settled is not None and not held.settled.done():
            if error is None:
                held.settled.set_result(None)
            else:
                held.settled.set_exception(RuntimeError(f"receipt not recorded: {error!r}"))

    def _unhook(self, held: _Held) -> None:
        held.taken = True
        key = (held.operator_id, held.keys[0])
        waiting = self._held.get(key)
        if waiting is None:
            return
        waiting[:] = [h for h in waiting if h is not held]
        if not waiting:
            del self._held[key]


def _result(ref: PartRef, receipt: Receipt, part_state: str, state: str) -> MatchResult:
    return MatchResult(
        message_id=ref.message_id,
        part=ref.part,
        total=ref.total,
        message_state=state,
        final=state in FINAL_STATES,
        stat=receipt.stat,
        err=receipt.err,
        part_state=part_state,
        receipt=receipt,
    )


def receipt_to_dict(receipt: Receipt) -> dict[str, Any]:
    """A JSON-serialisable form of a receipt, for the orphan table."""
    nec = receipt.network_error_code
    return {
        "message_id": receipt.message_id,
        "stat": receipt.stat,
        "err": receipt.err,
        "sub": receipt.sub,
        "dlvrd": receipt.dlvrd,
        "submit_date": _iso(receipt.submit_date),
        "done_date": _iso(receipt.done_date),
        "text": receipt.text,
        "network_error_code": nec.hex() if nec is not None else None,
        "message_state": receipt.message_state,
    }


def receipt_from_dict(d: dict[str, Any]) -> Receipt:
    nec = d.get("network_error_code")
    return Receipt(
        message_id=d["message_id"],
        stat=d["stat"],
        err=d.get("err"),
        sub=d.get("sub"),
        dlvrd=d.get("dlvrd"),
        submit_date=_date(d.get("submit_date")),
        done_date=_date(d.get("done_date")),
        text=d.get("text"),
        network_error_code=bytes.fromhex(nec) if nec is not None else None,
        message_state=d.get("message_state"),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
