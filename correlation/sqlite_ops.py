"""The embedded store's operations (``correlation.facade.StoreOps``): fn(conn, *args),
run in its writer thread inside the batch's transaction (correlation.sqlite_store)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from correlation import sqlite_outbox
from correlation.batching import Op, ReceiptRow, per_call, rows_of_calls, runs, split_receipts
from correlation.sqlite_outbox import _array, _enqueue, _json_or_none, _webhook_delivered_many
from correlation.sqlite_sql import (
    _ACCEPTED_BACKLOG,
    _FINAL_MESSAGE,
    _FINAL_MESSAGES,
    _FINAL_PART,
    _FINAL_PARTS,
    _INSERT_EVENTS,
    _INSERT_MESSAGE,
    _INSERT_NEW_MESSAGE,
    _INTERMEDIATE_PART,
    _LAST_EVENT_ID,
    _MESSAGE_COLUMNS,
    _MESSAGE_FIELDS,
    _PART_FIELDS,
    _SELECT_ACCEPTED_AFTER,
    _SELECT_MESSAGE,
    _SELECT_PARTS,
    _SELECT_PENDING,
    _SUBMIT_MESSAGE_ALL_PARTS,
    _SUBMITTED_MESSAGES,
    _SUBMITTED_PARTS,
    _UNUSUAL_PARTS,
)
from correlation.store import (
    ACCEPTED,
    FINAL_STATES,
    PENDING,
    SUBMITTED,
    MessageRecord,
    MoPartRecord,
    PartRef,
    Queued,
    WebhookTargets,
    aggregate_state,
)


def store_events_with_webhooks(conn: sqlite3.Connection, kind: str, texts: list[str],
                               at: float, targets: WebhookTargets,
                               until: float | None) -> Queued:
    array = _array(texts)
    _insert_events(conn, kind, array, len(texts), at)
    return _enqueue(conn, kind, array, at, targets, until)


def accepted_ids(
    conn: sqlite3.Connection, operator_id: str, created_before: float, limit: int
) -> list[tuple[str, float]]:
    return conn.execute(
        "SELECT message_id, created_at FROM messages WHERE state = 'ACCEPTED'"
        " AND operator_id = ? AND created_at < ? ORDER BY created_at, message_id LIMIT ?",
        (operator_id, created_before, limit),
    ).fetchall()


def _message_record(row: Sequence[Any]) -> MessageRecord:
    # Spelled out: 4x cheaper than MessageRecord(**dict(zip(...))), and a refill
    # builds one per spilled message.
    (message_id, tenant_id, source, destination, data_coding, body, operator_id,
     registered_delivery, validity, priority, state, attempts, created_at, updated_at,
     reason, command_status, receipt_stat, receipt_err, callback_url) = row
    return MessageRecord(
        message_id=message_id, tenant_id=tenant_id, source=source, destination=destination,
        data_coding=data_coding, body=body, operator_id=operator_id,
        registered_delivery=registered_delivery, validity=validity, priority=priority,
        state=state, attempts=attempts, created_at=created_at, updated_at=updated_at,
        reason=reason, command_status=command_status, receipt_stat=receipt_stat,
        receipt_err=receipt_err, callback_url=callback_url,
    )


def _backlog_item(item: list[Any]) -> tuple[MessageRecord, frozenset[int]]:
    """A message and the parts it has sent, from _SELECT_ACCEPTED_AFTER (fields in
    _MESSAGE_FIELDS order, then the parts)."""
    (message_id, tenant_id, source, destination, data_coding, body, operator_id,
     registered_delivery, validity, priority, state, attempts, created_at, updated_at,
     reason, command_status, receipt_stat, receipt_err, callback_url, sent) = item
    record = MessageRecord(
        message_id=message_id, tenant_id=tenant_id, source=source, destination=destination,
        data_coding=data_coding, body=bytes.fromhex(body), operator_id=operator_id,
        registered_delivery=registered_delivery, validity=validity, priority=priority,
        state=state, attempts=attempts, created_at=float(created_at),
        updated_at=float(updated_at), reason=reason, command_status=command_status,
        receipt_stat=receipt_stat, receipt_err=receipt_err, callback_url=callback_url,
    )
    return record, _part_numbers(sent) if sent is not None else _NO_PARTS


_NO_PARTS: frozenset[int] = frozenset()


def _part_numbers(listed: str | int | None) -> frozenset[int]:
    """Part numbers from group_concat (one part comes back as a plain integer)."""
    if listed is None:
        return frozenset()
    return frozenset(int(n) for n in str(listed).split(","))


def run_ops(
    conn: sqlite3.Connection, calls: list[tuple[Op, tuple[Any, ...]]]
) -> list[tuple[bool, Any]]:
    """Run the calls in order, a run of calls of one op through its variant for many."""
    results: list[tuple[bool, Any]] = []
    for op, arg_lists in runs(calls, _MANY):
        many = _MANY.get(op)
        values = many(conn, arg_lists) if many else [op(conn, *arg_lists[0])]
        results.extend((True, v) for v in values or [None] * len(arg_lists))
    return results


def accept(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(_INSERT_MESSAGE, rows)


def _accept_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    conn.executemany(_INSERT_MESSAGE, rows_of_calls(calls))


def accept_new(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[str]:
    # One execute per row: its rowcount says whether it was stored, and this costs no
    # more than finding the stored ids first and then an executemany (measured).
    return [row[0] for row in rows if conn.execute(_INSERT_NEW_MESSAGE, row).rowcount]


def pending(conn: sqlite3.Connection) -> list[MessageRecord]:
    return [_message_record(row) for row in conn.execute(_SELECT_PENDING, (ACCEPTED,))]


def accepted_after(
    conn: sqlite3.Connection, operator_id: str | None, created_at: float, message_id: str,
    limit: int,
) -> list[tuple[MessageRecord, frozenset[int]]]:
    page: str = conn.execute(
        _SELECT_ACCEPTED_AFTER, (operator_id, created_at, message_id, limit)
    ).fetchone()[0]
    found = [_backlog_item(item) for item in json.loads(page)]
    found.sort(key=lambda item: (item[0].created_at, item[0].message_id))
    return found


def accepted_backlog(conn: sqlite3.Connection) -> list[tuple[str | None, float]]:
    return conn.execute(_ACCEPTED_BACKLOG).fetchall()


def set_state(
    conn: sqlite3.Connection,
    message_id: str,
    state: str,
    at: float,
    reason: str | None,
    command_status: int | None,
    attempts: int | None,
) -> None:
    conn.execute(
        "UPDATE messages SET state = ?, updated_at = ?, reason = coalesce(?, reason),"
        " command_status = coalesce(?, command_status), attempts = coalesce(?, attempts)"
        " WHERE message_id = ?",
        (state, at, reason, command_status, attempts, message_id),
    )


def get_message(conn: sqlite3.Connection, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(_SELECT_MESSAGE, (message_id,)).fetchone()
    if row is None:
        return None
    message: dict[str, Any] = dict(zip(_MESSAGE_FIELDS, row, strict=True))
    parts = conn.execute(_SELECT_PARTS, (message_id,)).fetchall()
    message["parts"] = [dict(zip(_PART_FIELDS, p, strict=True)) for p in parts]
    return message


def submitted(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    _submit_rows(conn, rows)


def _submitted_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    _submit_rows(conn, rows_of_calls(calls))


def _submit_rows(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    """Each row: (message_id, part, total, operator_id, smsc_id, smsc_key, at).
    The rows go to SQLite as JSON, grouped by what they share (see ``_SUBMITTED_PARTS``)."""
    groups: dict[tuple[Any, ...], list[tuple[str, str, str]]] = {}
    for message_id, part, total, operator_id, smsc_id, smsc_key, at in calls:
        groups.setdefault((part, total, operator_id, at), []).append(
            (message_id, smsc_id, smsc_key))
    for (part, total, operator_id, at), rows in groups.items():
        conn.execute(_SUBMITTED_PARTS, (part, total, operator_id, SUBMITTED, at,
                                        json.dumps(rows), PENDING))
        if total == 1:  # the message is SUBMITTED with its only part
            conn.execute(_SUBMITTED_MESSAGES, (SUBMITTED, operator_id, at,
                                               json.dumps([row[0] for row in rows]), ACCEPTED))
    # A multipart message is SUBMITTED once every part is.
    conn.executemany(
        _SUBMIT_MESSAGE_ALL_PARTS,
        (
            (SUBMITTED, op_id, at, mid, ACCEPTED, mid, PENDING, total)
            for mid, _, total, op_id, _, _, at in calls
            if total != 1
        ),
    )


def _lookup(
    conn: sqlite3.Connection, operator_id: str, keys: Sequence[str]
) -> tuple[str, PartRef] | None:
    for key in keys:
        row = conn.execute(
            "SELECT message_id, part, total FROM parts WHERE operator_id = ? AND smsc_key = ?"
            " ORDER BY submitted_at DESC LIMIT 1",
            (operator_id, key),
        ).fetchone()
        if row is not None:
            return key, PartRef(*row)
    return None


def lookup_many(
    conn: sqlite3.Connection, operator_id: str, key_sets: list[Sequence[str]]
) -> list[tuple[str, PartRef] | None]:
    """Per key set, the key that matched and the newest part submitted under it."""
    return [_lookup(conn, operator_id, keys) for keys in key_sets]


def receipt(conn: sqlite3.Connection, message_id: str, part: int, state: str,
            stat: str | None, err: str | None, at: float) -> str | None:
    if state in FINAL_STATES:
        rows = conn.execute(_FINAL_PART, (state, stat, err, at, message_id, part)).fetchall()
        if not rows:
            return None
        if rows[0][0] == 1:  # the common case, one part: its state is the message's
            conn.execute(_FINAL_MESSAGE, (state, stat, err, at, message_id, state))
            return state
    else:  # intermediate (ENROUTE, ACCEPTD): never undoes a final receipt
        conn.execute(_INTERMEDIATE_PART, (stat, err, message_id, part))
    return _aggregate(conn, message_id, stat, err, at)


def _aggregate(
    conn: sqlite3.Connection, message_id: str, stat: str | None, err: str | None, at: float
) -> str | None:
    """The message's state from its parts' after a receipt, stored if it changed."""
    row = conn.execute("SELECT state FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    parts = conn.execute(
        "SELECT state, total FROM parts WHERE message_id = ? ORDER BY part", (message_id,)
    ).fetchall()
    if row is None or not parts:
        return None
    current: str = row[0]
    new_state = aggregate_state(current, [p[0] for p in parts], parts[0][1])
    if new_state != current:
        conn.execute(_FINAL_MESSAGE, (new_state, stat, err, at, message_id, new_state))
    return new_state


def receipts(conn: sqlite3.Connection, rows: list[ReceiptRow]) -> list[str | None]:
    """Each row as ``_receipt`` would record it, in order; the common case (final
    receipts for single-part messages, see ``split_receipts``) in three statements."""
    answers: list[str | None] = [None] * len(rows)
    set_based, in_order = split_receipts(rows)
    set_based_answers = _single_part_receipts(conn, [rows[i] for i in set_based])
    for i, answer in zip(set_based, set_based_answers, strict=True):
        answers[i] = answer
    for i in in_order:
        message_id, part, _, state, stat, err, at = rows[i]
        answers[i] = receipt(conn, message_id, part, state, stat, err, at)
    return answers


def _receipts_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> list[Any]:
    return per_call(receipts(conn, rows_of_calls(calls)), calls)


def _single_part_receipts(conn: sqlite3.Connection, rows: list[ReceiptRow]) -> list[str | None]:
    """Final receipts, each for a different message: ``_receipt`` for each, set-based,
    one group of rows per (part, state, stat, err, time)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (_, part, _, state, stat, err, at) in enumerate(rows):
        groups.setdefault((part, state, stat, err, at), []).append(i)
    answers: list[str | None] = [row[3] for row in rows]
    singles: dict[tuple[Any, ...], list[str]] = {}
    multipart: list[int] = []  # the receipt said one part, the table says more
    for (part, state, stat, err, at), positions in groups.items():
        ids = json.dumps([rows[i][0] for i in positions])
        (unusual,) = conn.execute(_UNUSUAL_PARTS, (ids, part)).fetchone()
        totals: dict[int, int | None] = {positions[j]: total for j, total in json.loads(unusual)}
        conn.execute(_FINAL_PARTS, (state, stat, err, at, ids, part))
        for i in positions:
            if i not in totals:
                singles.setdefault((state, stat, err, at), []).append(rows[i][0])
            elif totals[i] is None:  # no such part
                answers[i] = None
            else:
                multipart.append(i)
    for (state, stat, err, at), message_ids in singles.items():
        conn.execute(_FINAL_MESSAGES, (state, stat, err, at, json.dumps(message_ids), state))
    for i in sorted(multipart):  # aggregate, as _receipt does
        message_id, _, _, _, stat, err, at = rows[i]
        answers[i] = _aggregate(conn, message_id, stat, err, at)
    return answers


def count_orphans(conn: sqlite3.Connection) -> int:
    count: int = conn.execute("SELECT count(*) FROM orphan_receipts").fetchone()[0]
    return count


def put_orphan(
    conn: sqlite3.Connection, operator_id: str, keys: list[str], text: str, at: float
) -> None:
    cursor = conn.execute(
        "INSERT INTO orphan_receipts (operator_id, receipt, created_at) VALUES (?, ?, ?)",
        (operator_id, text, at),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO orphan_keys (operator_id, smsc_key, orphan_id) VALUES (?, ?, ?)",
        [(operator_id, key, cursor.lastrowid) for key in keys],
    )


def take_orphans(conn: sqlite3.Connection, operator_id: str, smsc_key: str) -> list[str]:
    rows = conn.execute(
        "SELECT o.id, o.receipt FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id"
        " WHERE k.operator_id = ? AND k.smsc_key = ? ORDER BY o.id",
        (operator_id, smsc_key),
    ).fetchall()
    ids = [(orphan_id,) for orphan_id, _ in rows]
    conn.executemany("DELETE FROM orphan_keys WHERE orphan_id = ?", ids)
    conn.executemany("DELETE FROM orphan_receipts WHERE id = ?", ids)
    return [receipt for _, receipt in rows]


def put_mo_parts(conn: sqlite3.Connection, parts: list[MoPartRecord]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO mo_parts (operator_id, source, reference, seq, total,"
        " destination, data_coding, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        parts,
    )


def drop_mo_parts(conn: sqlite3.Connection, keys: list[tuple[str, str, int]]) -> None:
    conn.executemany(
        "DELETE FROM mo_parts WHERE operator_id = ? AND source = ? AND reference = ?", keys)


def load_mo_parts(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT operator_id, source, reference, seq, total, destination, data_coding, body,"
        " created_at FROM mo_parts ORDER BY created_at").fetchall()


def _held_orphan_ids(
    conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str
) -> list[int]:
    rows = conn.execute(
        "SELECT o.id, o.receipt FROM orphan_keys k JOIN orphan_receipts o ON o.id = k.orphan_id"
        " WHERE k.operator_id = ? AND k.smsc_key = ?",
        (operator_id, smsc_key),
    ).fetchall()
    return [orphan_id for orphan_id, receipt in rows
            if json.loads(receipt).get("hold_id") == hold_id]


def drop_orphan(conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str) -> int:
    ids = [(orphan_id,) for orphan_id in _held_orphan_ids(conn, operator_id, smsc_key, hold_id)]
    conn.executemany("DELETE FROM orphan_keys WHERE orphan_id = ?", ids)
    conn.executemany("DELETE FROM orphan_receipts WHERE id = ?", ids)
    return len(ids)


def widen_orphan(conn: sqlite3.Connection, operator_id: str, smsc_key: str, hold_id: str,
                 more_keys: list[str]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO orphan_keys (operator_id, smsc_key, orphan_id) VALUES (?, ?, ?)",
        [(operator_id, key, orphan_id)
         for orphan_id in _held_orphan_ids(conn, operator_id, smsc_key, hold_id)
         for key in more_keys],
    )


def take_orphans_many(
    conn: sqlite3.Connection, operator_id: str, smsc_keys: list[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in dict.fromkeys(smsc_keys):  # each key once, in order
        rows = take_orphans(conn, operator_id, key)
        if rows:
            found[key] = rows
    return found


def ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM idempotency_keys WHERE 0").fetchone()


def find_messages(conn: sqlite3.Connection, message_ids: list[str]) -> list[MessageRecord]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608 -- constant columns
        " WHERE message_id IN (SELECT value FROM json_each(?))",
        (json.dumps(message_ids),),
    )
    return [_message_record(row) for row in rows]


def idem_claim(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str, at: float,
               expired_before: float) -> tuple[str, str | None, float]:
    # A claim older than the window is taken over as if absent; the rows older than it
    # go meanwhile (the embedded store has no retention job).
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (expired_before,))
    conn.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, response, created_at)"
        " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (scope, key) DO NOTHING",
        (scope, key, fingerprint, at),
    )
    row = conn.execute(
        "SELECT fingerprint, response, created_at FROM idempotency_keys"
        " WHERE scope = ? AND key = ?", (scope, key)).fetchone()
    return str(row[0]), row[1], float(row[2])


def idem_complete(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str,
                  response: str) -> None:
    conn.execute(
        "UPDATE idempotency_keys SET response = ? WHERE scope = ? AND key = ?"
        " AND fingerprint = ? AND response IS NULL",
        (response, scope, key, fingerprint),
    )


def idem_release(conn: sqlite3.Connection, scope: str, key: str, fingerprint: str) -> None:
    conn.execute(
        "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND fingerprint = ?"
        " AND response IS NULL", (scope, key, fingerprint),
    )


def store_event(conn: sqlite3.Connection, kind: str, payload: str, at: float) -> int:
    cursor = conn.execute(
        "INSERT INTO events (kind, payload, created_at) VALUES (?, ?, ?)", (kind, payload, at)
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def store_events(conn: sqlite3.Connection, kind: str, texts: list[str], at: float) -> list[int]:
    return _insert_events(conn, kind, _array(texts), len(texts), at)


def _insert_events(
    conn: sqlite3.Connection, kind: str, array: str, count: int, at: float
) -> list[int]:
    # One INSERT ... SELECT in the writer's transaction draws consecutive ids, in
    # json_each's order, after the highest ever drawn (AUTOINCREMENT): read that
    # instead of a RETURNING row per event (each row costs the writer a wait for the GIL).
    before = conn.execute(_LAST_EVENT_ID).fetchone()
    first = (before[0] if before else 0) + 1
    cursor = conn.execute(_INSERT_EVENTS, (kind, at, array))
    if cursor.lastrowid != first + count - 1:
        raise RuntimeError("events: ids were not drawn consecutively")
    return list(range(first, first + count))


def list_events(
    conn: sqlite3.Connection, kind: str | None, after_id: int, limit: int,
    tenants: list[str] | None,
) -> list[tuple[int, str, str, float]]:
    # ? IS NULL: all kinds / all tenants. A tenant's events are those whose message_id
    # is one of its messages.
    return conn.execute(
        "SELECT id, kind, payload, created_at FROM events e"
        " WHERE (?1 IS NULL OR kind = ?1) AND id > ?2 AND (?4 IS NULL OR EXISTS ("
        " SELECT 1 FROM messages m WHERE m.message_id = e.payload ->> 'message_id'"
        " AND m.tenant_id IN (SELECT value FROM json_each(?4))))"
        " ORDER BY id LIMIT ?3",
        (kind, after_id, limit, _json_or_none(tenants)),
    ).fetchall()



# The outbox's operations (correlation.sqlite_outbox) are StoreOps too.
webhook_claim = sqlite_outbox.webhook_claim
webhook_dead = sqlite_outbox.webhook_dead
webhook_delivered = sqlite_outbox.webhook_delivered
webhook_depth = sqlite_outbox.webhook_depth
webhook_enqueue = sqlite_outbox.webhook_enqueue
webhook_kill = sqlite_outbox.webhook_kill
webhook_purge_dead = sqlite_outbox.webhook_purge_dead
webhook_release = sqlite_outbox.webhook_release
webhook_replay = sqlite_outbox.webhook_replay
webhook_retry = sqlite_outbox.webhook_retry

# Calls with a variant for many calls: fn(conn, [args of each call]) -> one result per
# call, or None when each call's result is None.
_MANY: dict[Op, Callable[[sqlite3.Connection, list[tuple[Any, ...]]], list[Any] | None]] = {
    accept: _accept_many,
    submitted: _submitted_many,
    receipts: _receipts_many,
    webhook_delivered: _webhook_delivered_many,
}
