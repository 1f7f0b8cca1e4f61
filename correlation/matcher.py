"""Receipt matching policy: which submitted part a delivery receipt answers.

A receipt can come before its submit_sm_resp (some SMSCs release the response only
once the receipt is acknowledged) or on another bind. So a receipt that matches
nothing is written at once to the store's orphan table, and its deliver_sm answered
as soon as that write is durable; it is also held in memory, where the submit that
arrives next claims it. After ``hold_seconds`` it leaves memory and stays in the
orphan table, where a late submit (after a restart too) still finds it.

An SMSC may also reuse its ids (a counter its restart resets): the store then holds
an older part under a receipt's key while the submit the receipt answers still waits
to be recorded (batched, and retried while the store is out). So the submits the SMSC
answered are remembered as they come (``expect_submits``), and that memory answers
before the store does.

Under the "auto" id form a receipt id has several readings (``correlation.ids``):
decimal "13" is key "d", read as hex it is "13", the key of submit id "19". Only the
preferred reading (the first, in the order ``IdRelations`` learned for the operator)
matches at once and is the key the orphan is written under: the others may be
another message's submit while this receipt's own one is still being recorded. They
are tried, and added to the orphan's keys, only at expiry, once the preferred one
had ``hold_seconds`` to show up.

Ordering matters with the store's FIFO queue: ``on_submitted`` looks for held
receipts only after its submit is recorded, and ``on_receipt`` holds a receipt in the
same step in which its lookup came back empty, so neither can miss the other. An
orphan carries the ``hold_id`` of its memory copy, so a receipt found both ways is
applied once, and an orphan written after its memory copy was claimed is dropped.

No I/O besides the store; the clock is injected.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from correlation.hot_index import HotIndex
from correlation.id_relation import IdRelations
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

log = logging.getLogger("smppd.matcher")

RECENT_SUBMITS = 20_000  # submits remembered in memory, the latest half at least

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
    keys: tuple[str, ...]  # the preferred reading first
    receipt: Receipt
    held_at: float
    hold_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    taken: bool = field(default=False)

    def orphan(self, keys: Sequence[str]) -> tuple[Sequence[str], dict[str, Any], float]:
        return keys, {**receipt_to_dict(self.receipt), "hold_id": self.hold_id}, self.held_at


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
        self.relations = IdRelations()
        self._auto: set[str] = set()  # operators whose receipt ids are read under "auto"
        # The latest submits answered by the SMSC (``expect_submits``) or recorded here:
        # newer than any part the store holds under their keys (an SMSC may reuse its
        # ids), and known before their write is visible to a lookup.
        self._recent = HotIndex(RECENT_SUBMITS)

    @property
    def held_count(self) -> int:
        return sum(1 for h in self._held_order if not h.taken)

    def learned_id_forms(self, operator_id: str) -> dict[str, str]:
        """The id forms learned for the operator under "auto" (for the API)."""
        return self.relations.learned(operator_id)

    def expect_submits(
        self, operator_id: str, submits: Sequence[tuple[str, int, int, str]], id_form: IdForm
    ) -> None:
        """Submits the SMSC answered, to be recorded by ``on_submitted_many`` later
        (the caller batches them, and retries while the store is out): a receipt that
        comes meanwhile matches them, not an older part stored under a reused id."""
        for message_id, part, total, smsc_id in submits:
            key = self._submit_key(operator_id, smsc_id, id_form)
            self._recent.put_part(operator_id, key, message_id, part, total)

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
            (message_id, part, total, operator_id, smsc_id,
             self._submit_key(operator_id, smsc_id, id_form), now)
            for message_id, part, total, smsc_id in submits
        ]
        for message_id, part, total, _, _, key, _ in rows:
            self._recent.put_part(operator_id, key, message_id, part, total)
        await self._store.record_submitted_many(rows)
        held = self._held
        orphans = await self._store.take_orphans_many(operator_id, [row[5] for row in rows])
        if not orphans and not any((operator_id, row[5]) in held for row in rows):
            return []  # the usual case: no receipt was waiting for these submits
        waiting: list[tuple[PartRef, Receipt, str]] = []  # (part, receipt, key matched)
        for message_id, part, total, _, _, key, _ in rows:
            ref = PartRef(message_id, part, total)
            claimed = set()
            if (operator_id, key) in held:
                for h in self._take_held(operator_id, key):
                    claimed.add(h.hold_id)
                    waiting.append((ref, h.receipt, key))
            waiting += [(ref, receipt_from_dict(d), key) for d in orphans.get(key, ())
                        if d.get("hold_id") not in claimed]  # else: its memory copy is used
        # One receipt write for every receipt that was waiting, in arrival order per part.
        try:
            applied = await self._apply_many([(ref, receipt) for ref, receipt, _ in waiting])
        except BaseException:
            await self._restore(operator_id, waiting)
            raise
        for _, receipt, key in waiting:
            self._learn(operator_id, receipt, key)
        return [r for r in applied if r is not None]

    async def on_receipt(
        self, operator_id: str, receipt: Receipt, id_form: IdForm
    ) -> MatchResult | None:
        """Match a receipt from any bind of the operator; None means it is held."""
        return (await self.on_receipts(operator_id, [receipt], id_form))[0]

    async def on_receipts(
        self, operator_id: str, receipts: Sequence[Receipt], id_form: IdForm
    ) -> list[MatchResult | None]:
        """``on_receipt`` for many receipts of one operator: one lookup, one orphan
        write and one receipt write for the batch. One answer per receipt, in order;
        None means held: no part yet, and the receipt durable in the orphan table once
        this returns (or its part vanished, as with ``on_receipt``)."""
        if id_form == "auto":
            self._auto.add(operator_id)
        key_sets = [self._keys(operator_id, receipt.message_id, id_form) for receipt in receipts]
        # The submits this process saw first: the store may hold an older part under the
        # same key (an SMSC reusing its ids) while the newer one is not written yet. The
        # rest are looked up, and this memory asked again once the lookup is back, in the
        # step that holds the misses (no await between), so neither side can miss the other.
        recent = self._recent
        refs = [recent.get(operator_id, keys[0]) for keys in key_sets]
        ask = [i for i, ref in enumerate(refs) if ref is None]
        if ask:
            looked_up = await self._store.lookup_parts(
                operator_id, [key_sets[i][:1] for i in ask])
            for i, ref in zip(ask, looked_up, strict=True):
                refs[i] = recent.get(operator_id, key_sets[i][0]) or ref
        now = self._clock()
        misses = [_Held(operator_id, keys, receipt, now)
                  for receipt, keys, ref in zip(receipts, key_sets, refs, strict=True)
                  if ref is None]
        for held in misses:
            self._hold(held)
        if misses:
            await self._put_orphans(operator_id, misses)
        found = [(ref, receipt, keys)
                 for ref, receipt, keys in zip(refs, receipts, key_sets, strict=True) if ref]
        applied = await self._apply_many([(ref, receipt) for ref, receipt, _ in found])
        # A part the store does not have (yet: its submit's write is still to come, or
        # is being retried): the receipt is held and kept as an orphan, not dropped.
        unknown = [_Held(operator_id, keys, receipt, now)
                   for (_, receipt, keys), result in zip(found, applied, strict=True)
                   if result is None]
        for held in unknown:
            self._hold(held)
        if unknown:
            await self._put_orphans(operator_id, unknown)
        for (_, receipt, keys), result in zip(found, applied, strict=True):
            if result is not None:
                self._learn(operator_id, receipt, keys[0])
        answers = iter(applied)
        return [next(answers) if ref is not None else None for ref in refs]

    async def expire_held(
        self, now: float,
        on_late_match: Callable[[str, MatchResult], Awaitable[None]] | None = None,
    ) -> int:
        """Move receipts held longer than hold_seconds out of memory, trying their other
        readings first; returns how many are left waiting in the orphan table. A receipt
        that matches now (a submit stored by another replica) goes to ``on_late_match``."""
        moved = 0
        deadline = now - self._hold_seconds
        while self._held_order and self._held_order[0].held_at <= deadline:
            held = self._held_order.popleft()
            if held.taken:
                continue
            # Another replica may have stored the submit meanwhile, or it is under another
            # reading: look once more, under every reading, with the receipt still
            # claimable in memory by a local submit while we wait.
            ref, key = await self._lookup_any(held)
            if held.taken:
                continue
            self._unhook(held)
            if ref is not None:
                (result,) = await self._apply_many([(ref, held.receipt)])
                await self._store.drop_orphan(held.operator_id, held.keys[0], held.hold_id)
                self._learn(held.operator_id, held.receipt, key)
                if result is not None and on_late_match is not None:
                    await on_late_match(held.operator_id, result)
                continue
            if len(held.keys) > 1:
                await self._store.widen_orphan(
                    held.operator_id, held.keys[0], held.hold_id, held.keys[1:])
            moved += 1
        return moved

    def _submit_key(self, operator_id: str, smsc_id: str, form: IdForm) -> str:
        key, learned = self.relations.submit_key(operator_id, smsc_id, form)
        if learned:
            log.warning("submit_sm_resp ids are hex: all-digit ones now read as hex", extra={
                "event": "id_form_learned", "operator": operator_id,
                "side": "submit_resp_id", "form": "hex"})
        return key

    def _keys(self, operator_id: str, receipt_id: str, form: IdForm) -> tuple[str, ...]:
        if form == "auto":
            return self.relations.receipt_keys(operator_id, receipt_id) or (receipt_id,)
        return (normalise_id(receipt_id, form),)

    def _learn(self, operator_id: str, receipt: Receipt, key: str) -> None:
        if operator_id not in self._auto:
            return
        form = self.relations.receipt_matched(operator_id, receipt.message_id, key)
        if form is not None:
            log.warning("receipt ids form learned", extra={
                "event": "id_form_learned", "operator": operator_id,
                "side": "receipt_id", "form": form})

    async def _put_orphans(self, operator_id: str, misses: list[_Held]) -> None:
        """Write held receipts to the orphan table under their preferred key (queued in
        the caller's step); not held any more if that fails (the caller's deliver_sm
        are answered with an error and sent again)."""
        try:
            await self._store.put_orphans(operator_id, [h.orphan(h.keys[:1]) for h in misses])
        except BaseException:
            for held in misses:
                self._unhook(held)
            raise
        for held in misses:
            if held.taken:  # claimed by a submit that looked before this write was done
                await self._store.drop_orphan(operator_id, held.keys[0], held.hold_id)

    async def _restore(self, operator_id: str,
                       waiting: Sequence[tuple[PartRef, Receipt, str]]) -> None:
        """Receipts taken for a submit whose receipt write failed: held and written again
        under the key they matched, so the expiry applies them once the store is back."""
        restored = [_Held(operator_id, (key,), receipt, self._clock())
                    for _, receipt, key in waiting]
        for held in restored:
            self._hold(held)
        try:
            await self._store.put_orphans(operator_id, [h.orphan(h.keys) for h in restored])
        except Exception:  # still held in memory: the expiry tries again
            log.exception("receipts not written back", extra={
                "event": "receipt_restore_failed", "operator": operator_id,
                "count": len(restored)})

    async def _lookup_any(self, held: _Held) -> tuple[PartRef | None, str]:
        for key in held.keys:
            ref = await self._store.lookup_part(held.operator_id, key)
            if ref is not None:
                return ref, key
        return None, held.keys[0]

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

    def _take_held(self, operator_id: str, key: str) -> list[_Held]:
        taken = [h for h in self._held.get((operator_id, key), ()) if not h.taken]
        for held in taken:
            self._unhook(held)  # its deque entry is skipped on expiry
        return taken

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
