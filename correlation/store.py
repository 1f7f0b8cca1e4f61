"""The correlation store seam: accepted messages, their submitted parts, receipts and events.

Two implementations sit behind ``CorrelationStore``: SQLite for the embedded mode
(``correlation.sqlite_store``) and PostgreSQL + Redis for the distributed one. Both
keep the same promises:

* ``accept`` returns only once the messages are durable: a 202 means "not lost".
* A message stays ``ACCEPTED`` until every part is submitted; ``pending_messages``
  lists those, and a restart resends them (at-least-once).
* Matching is per operator, not per bind: parts are found by
  ``(operator_id, smsc_key)``, where ``smsc_key`` is the SMSC message id normalised by
  ``correlation.ids``.

Message states: ACCEPTED -> SUBMITTED -> DELIVERED | UNDELIVERABLE | EXPIRED |
REJECTED | FAILED | UNKNOWN. A multipart message is DELIVERED when every part is,
and failed as soon as any part fails (``aggregate_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

# Message states.
ACCEPTED = "ACCEPTED"  # durable, not yet (fully) submitted: resent after a restart
SUBMITTED = "SUBMITTED"  # every part has an SMSC message id
DELIVERED = "DELIVERED"
UNDELIVERABLE = "UNDELIVERABLE"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
FAILED = "FAILED"  # we gave up: permanent submit error, retries exhausted, no route
UNKNOWN = "UNKNOWN"
# Part-only state: not yet submitted.
PENDING = "PENDING"

MESSAGE_STATES = frozenset(
    {ACCEPTED, SUBMITTED, DELIVERED, UNDELIVERABLE, EXPIRED, REJECTED, FAILED, UNKNOWN}
)
PART_STATES = (MESSAGE_STATES - {ACCEPTED}) | {PENDING}
FAILURE_STATES = frozenset({UNDELIVERABLE, EXPIRED, REJECTED, FAILED})
FINAL_STATES = FAILURE_STATES | {DELIVERED, UNKNOWN}


@dataclass(slots=True, kw_only=True)
class MessageContent:
    """Who sends what to whom: what a message carries from intake to the store and the
    SMSC (``body`` already encoded in ``data_coding``)."""

    message_id: str
    tenant_id: str
    source: str
    destination: str
    data_coding: int
    body: bytes


@dataclass(slots=True, kw_only=True)
class MessageRecord(MessageContent):
    """One accepted message, as stored."""

    created_at: float
    updated_at: float
    operator_id: str | None = None  # None: routing picks one at dispatch
    registered_delivery: int = 1
    validity: str | None = None
    priority: int = 0
    state: str = ACCEPTED
    attempts: int = 0
    reason: str | None = None
    command_status: int | None = None
    receipt_stat: str | None = None
    receipt_err: str | None = None
    callback_url: str | None = None  # where its DLR events are POSTed (smppd.webhooks)


# The stored fields of a message and of a part, in the tables' column order (both stores).
MESSAGE_FIELDS = (
    "message_id", "tenant_id", "source", "destination", "data_coding", "body", "operator_id",
    "registered_delivery", "validity", "priority", "state", "attempts", "created_at",
    "updated_at", "reason", "command_status", "receipt_stat", "receipt_err", "callback_url",
)  # fmt: skip
PART_FIELDS = (
    "message_id", "part", "total", "operator_id", "smsc_id", "smsc_key", "state",
    "command_status", "stat", "err", "submitted_at", "done_at",
)  # fmt: skip


@dataclass(slots=True, kw_only=True)
class PartRecord:
    """One submitted part of a message (part numbers start at 1)."""

    message_id: str
    part: int
    total: int
    operator_id: str
    smsc_id: str | None = None  # as the SMSC sent it in submit_sm_resp
    smsc_key: str | None = None  # normalised id, used for matching
    state: str = PENDING
    command_status: int | None = None
    stat: str | None = None
    err: str | None = None
    submitted_at: float | None = None
    done_at: float | None = None


@dataclass(slots=True, kw_only=True)
class EventRecord:
    """An event in the embedded event sink (DLR, MO), read by the API with a cursor."""

    id: int  # increasing; pass the last one seen as ``after_id``
    kind: str
    payload: dict[str, Any]
    created_at: float


class MoPartRecord(NamedTuple):
    """One part of a concatenated MO message, as kept until the whole is out."""

    operator_id: str
    source: str
    reference: int
    seq: int
    total: int
    destination: str
    data_coding: int
    body: bytes
    at: float


IDEMPOTENCY_WINDOW = 48 * 3600.0  # seconds an Idempotency-Key is remembered (the platform's)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What an idempotency key holds: the request's fingerprint and, once the first
    request is done, its results (None until then)."""

    fingerprint: str
    response: list[dict[str, Any]] | None
    created_at: float


@dataclass(frozen=True, slots=True)
class WebhookTargets:
    """Which events of a write also go to the webhook outbox.

    DLR events (``owners`` None): the event of a message that has a ``callback_url``,
    or whose tenant is in ``tenants`` (those with a default URL), ordered per message.
    MO events: ``owners`` gives each event's tenant (None: not sent); no order."""

    tenants: Sequence[str] = ()
    owners: Sequence[str | None] | None = None


@dataclass(slots=True, kw_only=True)
class WebhookRecord:
    """One event in the webhook outbox: waiting, being delivered, or dead."""

    id: int  # increasing; also the X-Smppd-Delivery header (receivers dedupe on it)
    kind: str  # "dlr" or "mo"
    tenant_id: str
    url: str | None  # the message's callback_url; None: the tenant's at delivery
    body: str  # the event's JSON text, POSTed as it is
    created_at: float  # when it was queued (or replayed): its age counts from here
    attempts: int = 0
    last_error: str | None = None
    dead_at: float | None = None
    ordering_key: str | None = None  # the message id of a DLR event (None: MO, no order)


class Queued(NamedTuple):
    """What an outbox write queued: how many rows, those of them the writer took for
    its lease (see ``webhook_enqueue``), and the ordering keys of the others (each waits
    behind an earlier event of its message). Without a lease: only how many."""

    rows: int
    claimed: list[WebhookRecord]
    behind: list[str]


class OutboxDepth(NamedTuple):
    waiting: int  # not delivered, not dead
    oldest: float | None  # created_at of the oldest waiting one
    dead: int


class PartRef(NamedTuple):
    """Where a receipt belongs: the message, which part, and how many parts it has."""

    message_id: str
    part: int
    total: int


def aggregate_state(current: str, part_states: Sequence[str], total: int) -> str:
    """A message's state from its parts' states (only the parts known so far).

    Any failed part fails the message (first failing part's state); every part
    delivered makes it DELIVERED; every part final but not all delivered is UNKNOWN;
    otherwise the message keeps its current state.
    """
    for state in part_states:
        if state in FAILURE_STATES:
            return state
    if len(part_states) >= total:
        if all(state == DELIVERED for state in part_states):
            return DELIVERED
        if all(state in FINAL_STATES for state in part_states):
            return UNKNOWN
    return current


class CorrelationStore(Protocol):
    """Async store of messages, parts, receipts and events; every method is safe to
    call from the event loop (implementations do their I/O off the loop)."""

    # True when only this process sends the store's ACCEPTED messages (SQLite: one
    # daemon per file): the dispatcher may then leave what is beyond an operator's
    # queue limit in the store alone (``accepted_after``). False when replicas share it.
    backlog_is_private: bool

    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None:
        """Finish queued writes, then release connections."""

    async def accept(self, messages: Sequence[MessageRecord]) -> None:
        """Store new messages; returns only once they are durable."""

    async def accept_new(self, messages: Sequence[MessageRecord]) -> list[str]:
        """``accept``, skipping any message whose id is already stored (a redelivered
        dispatch command, or one a concurrent replica stored first); returns the ids
        this call stored, in order. Durable before it returns."""

    async def pending_messages(self) -> list[MessageRecord]:
        """Messages still ACCEPTED (not every part submitted), oldest first: resend
        them after a restart."""

    async def record_submitted(
        self,
        message_id: str,
        part: int,
        total: int,
        operator_id: str,
        smsc_id: str,
        smsc_key: str,
        at: float,
    ) -> None:
        """A part got its submit_sm_resp; once every part has, the message is SUBMITTED.

        The part is findable by ``lookup_part`` as soon as this is called (before it
        returns), so a receipt processed meanwhile matches.
        """

    async def record_submitted_many(
        self, rows: Sequence[tuple[str, int, int, str, str, str, float]]
    ) -> None:
        """``record_submitted`` for many parts in one write; each row is
        (message_id, part, total, operator_id, smsc_id, smsc_key, at)."""

    async def set_message_state(
        self,
        message_id: str,
        state: str,
        *,
        at: float,
        reason: str | None = None,
        command_status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        """Set a message's state (e.g. FAILED on a permanent submit error); None
        arguments leave the stored value as it is."""

    async def lookup_part(self, operator_id: str, smsc_key: str, *more_keys: str) -> PartRef | None:
        """The part submitted to ``operator_id`` under the first of the keys that
        matches, or None."""

    async def lookup_parts(
        self, operator_id: str, key_sets: Sequence[Sequence[str]]
    ) -> list[PartRef | None]:
        """``lookup_part`` for many receipts of one operator in one go: one answer per
        key set (a receipt's candidate keys), in order."""

    async def record_receipt(
        self,
        message_id: str,
        part: int,
        state: str,
        stat: str | None,
        err: str | None,
        at: float,
    ) -> str | None:
        """Record a receipt for a part, returning the message's new aggregate state
        (None if the part is unknown). ``state`` is a final part state, or SUBMITTED
        for an intermediate receipt (ENROUTE, ACCEPTD), which never overrides a final
        one."""

    async def record_receipts(
        self, rows: Sequence[tuple[str, int, int, str, str | None, str | None, float]]
    ) -> list[str | None]:
        """``record_receipt`` for many receipts in one write; each row is
        (message_id, part, total, state, stat, err, at), ``total`` being the part's
        PartRef.total. One answer per row, in order, the same as ``record_receipt``
        called once per row in that order would give."""

    async def put_orphan(
        self, operator_id: str, smsc_keys: Sequence[str], receipt: dict[str, Any], at: float
    ) -> None:
        """Keep a receipt that matched no part, findable under each of ``smsc_keys``
        (its candidate keys); ``receipt`` must be JSON-serialisable."""

    async def put_orphans(
        self, operator_id: str, orphans: Sequence[tuple[Sequence[str], dict[str, Any], float]]
    ) -> None:
        """``put_orphan`` for many receipts, each (smsc_keys, receipt, at), queued in the
        caller's step (before it suspends) and committed together."""

    async def drop_orphan(self, operator_id: str, smsc_key: str, hold_id: str) -> None:
        """Remove the orphan stored under ``smsc_key`` whose receipt's ``hold_id`` field
        is ``hold_id`` (a receipt matched by other means meanwhile)."""

    async def widen_orphan(
        self, operator_id: str, smsc_key: str, hold_id: str, more_keys: Sequence[str]
    ) -> None:
        """Make the orphan stored under ``smsc_key`` with that ``hold_id`` findable under
        ``more_keys`` too (its other readings, once the preferred one had its time)."""

    async def take_orphans(self, operator_id: str, smsc_key: str) -> list[dict[str, Any]]:
        """Remove and return the orphan receipts stored under the key, oldest first."""

    async def take_orphans_many(
        self, operator_id: str, smsc_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """``take_orphans`` for many keys of one operator in one go: key -> its orphan
        receipts, oldest first (keys with none are left out)."""

    async def put_mo_parts(self, parts: Sequence[MoPartRecord]) -> None:
        """Keep parts of concatenated MO messages (a part stored again replaces itself),
        so a message whose first parts were answered survives a restart."""

    async def drop_mo_parts(self, keys: Sequence[tuple[str, str, int]]) -> None:
        """Forget the parts of these (operator_id, source, reference) messages."""

    async def load_mo_parts(self) -> list[MoPartRecord]:
        """Every stored MO part, oldest first (at start)."""

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        """The message's fields plus ``parts`` (a list of part dicts), for the API."""

    async def ping(self) -> None:
        """Raise unless the database answers a query now (readiness)."""

    async def find_messages(self, message_ids: Sequence[str]) -> dict[str, MessageRecord]:
        """The stored messages among ``message_ids`` (absent ones left out), after every
        write queued before the call."""

    async def idempotency_claim(self, scope: str, key: str, fingerprint: str,
                                window: float = IDEMPOTENCY_WINDOW) -> IdempotencyRecord:
        """Claim ``key`` within ``scope`` (the caller) for a request with this
        fingerprint, unless a claim younger than ``window`` seconds holds it; returns
        the claim that holds (this one, or the earlier: the first writer wins, also
        between replicas)."""

    async def idempotency_complete(self, scope: str, key: str, fingerprint: str,
                                   response: list[dict[str, Any]]) -> None:
        """Store the results of the request holding the claim (once; a later call
        leaves them as they are)."""

    async def idempotency_release(self, scope: str, key: str, fingerprint: str) -> None:
        """Drop an unfinished claim of this fingerprint (its request was refused)."""

    async def store_event(self, kind: str, payload: dict[str, Any]) -> int:
        """Append an event (e.g. "dlr", "mo") to the embedded sink; returns its id."""

    async def store_events(self, kind: str, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """``store_event`` for many events of one kind in one write; their ids, in order."""

    async def list_events(
        self, kind: str | None = None, after_id: int = 0, limit: int = 100, *,
        tenants: Sequence[str] | None = None,
    ) -> list[EventRecord]:
        """Events with id > after_id (of one kind, or all), oldest first; with
        ``tenants``, only events about messages of those tenants."""

    async def accepted_ids(
        self, operator_id: str, created_before: float, limit: int
    ) -> list[tuple[str, float]]:
        """The operator's ACCEPTED messages created before ``created_before``, oldest
        first, at most ``limit``: (message_id, created_at). The active/standby lease
        holder sends them, whichever replica accepted them (smppd.cluster.leader)."""

    async def accepted_after(
        self, operator_id: str | None, after: tuple[float, str] | None, limit: int
    ) -> list[tuple[MessageRecord, frozenset[int]]]:
        """The operator's ACCEPTED messages after the cursor ``after``, a
        (created_at, message_id) pair (None: from the first), in that order, at most
        ``limit``; each with the numbers of its parts that have an SMSC id already."""

    async def accepted_backlog(self) -> dict[str | None, float]:
        """Operator id -> created_at of its newest ACCEPTED message, for every operator
        that has one (a restart resumes each operator's backlog from the store)."""

    # -- the webhook outbox (smppd.webhooks): at least once, per message in order ------

    async def store_events_with_webhooks(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets, *,
        lease: float | None = None,
    ) -> Queued:
        """``store_events`` and ``webhook_enqueue`` in one transaction: an event is
        in the outbox if and only if it is in the events table."""

    async def webhook_enqueue(
        self, kind: str, payloads: Sequence[dict[str, Any]], targets: WebhookTargets, *,
        lease: float | None = None,
    ) -> Queued:
        """Queue the events ``targets`` selects for delivery, due now. With a ``lease``,
        those that no earlier waiting event of their message holds back are taken for
        the caller in the same write, as ``webhook_claim`` would take them (two events of
        one message in one call are both taken: the caller keeps their order), and
        returned; the others wait for a claim. Durable before it returns."""

    async def webhook_claim(self, now: float, limit: int, lease: float) -> list[WebhookRecord]:
        """Take up to ``limit`` due deliveries for ``lease`` seconds (not due again
        before then, for this or any replica): only the oldest undelivered, not dead,
        event of each message, so a message's events go out one at a time in order."""

    async def webhook_delivered(self, ids: Sequence[int]) -> None:
        """These deliveries succeeded: out of the outbox."""

    async def webhook_retry(self, delivery_id: int, next_at: float, error: str) -> None:
        """A failed attempt: due again at ``next_at``, ``error`` kept (attempts + 1)."""

    async def webhook_kill(self, delivery_id: int, at: float, error: str) -> None:
        """Give up: the delivery goes to the dead letters (attempts + 1); the message's
        later events are delivered."""

    async def webhook_release(self, ids: Sequence[int], now: float) -> None:
        """Claimed deliveries not attempted (shutdown): due again at ``now``."""

    async def webhook_dead(self, after_id: int = 0, limit: int = 100, *,
                           tenants: Sequence[str] | None = None) -> list[WebhookRecord]:
        """Dead deliveries with id > after_id, oldest first (of those tenants only)."""

    async def webhook_replay(self, delivery_id: int, now: float) -> bool:
        """A dead delivery back in the outbox, due now, attempts and age from zero;
        False if there is no dead delivery with that id."""

    async def webhook_purge_dead(self, before: float, limit: int = 10_000) -> int:
        """Delete at most ``limit`` dead letters that died before ``before`` (never a
        waiting delivery); returns how many (the retention of ``[webhooks] dead_retention``)."""

    async def webhook_depth(self) -> OutboxDepth:
        """How many deliveries wait (and since when), and how many are dead."""
