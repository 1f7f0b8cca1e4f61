"""The embedded store's webhook outbox operations (``correlation.facade.StoreOps``, through
``correlation.sqlite_ops``): fn(conn, *args) in the writer thread's transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from correlation.sqlite_sql import (
    _ENQUEUE_DLR,
    _ENQUEUE_MO,
    _ENQUEUED,
    _WEBHOOK_CLAIM,
    _WEBHOOK_DEAD,
    _WEBHOOK_DEPTH,
    _WEBHOOK_DUE,
    _WEBHOOK_KILL,
    _WEBHOOK_PURGE_DEAD,
    _WEBHOOK_RELEASE,
    _WEBHOOK_REPLAY,
    _WEBHOOK_RETRY,
)
from correlation.store import Queued, WebhookRecord, WebhookTargets


def _outbox_args(targets: WebhookTargets) -> tuple[str, str | None]:
    """(the tenants with a default URL, each MO event's tenant or None) as JSON."""
    owners = None if targets.owners is None else json.dumps(list(targets.owners))
    return json.dumps(list(targets.tenants)), owners


def _webhook_record(row: Sequence[Any]) -> WebhookRecord:
    (delivery_id, kind, tenant_id, url, body, created_at, attempts, last_error, dead_at,
     ordering_key) = row
    return WebhookRecord(id=delivery_id, kind=kind, tenant_id=tenant_id, url=url, body=body,
                         created_at=created_at, attempts=attempts, last_error=last_error,
                         dead_at=dead_at, ordering_key=ordering_key)


def _array(texts: list[str]) -> str:
    """JSON texts as one JSON array: json_each hands SQLite each one (one parameter)."""
    return "[" + ", ".join(texts) + "]"


def _enqueue(conn: sqlite3.Connection, kind: str, array: str, at: float,
             targets: WebhookTargets, until: float | None) -> Queued:
    tenants, owners = _outbox_args(targets)
    if owners is None:
        cursor = conn.execute(_ENQUEUE_DLR, (kind, at, array, tenants, until))
    else:
        cursor = conn.execute(_ENQUEUE_MO, (kind, at, array, owners, until))
    count = max(cursor.rowcount, 0)
    if until is None or count == 0:
        return Queued(count, [], [])
    # One statement's rows have consecutive ids (AUTOINCREMENT, one writer): the taken
    # ones as one row of JSON, not a RETURNING row each (a wait for the GIL each).
    last = cursor.lastrowid or 0
    claimed, behind = conn.execute(_ENQUEUED, (last - count, last)).fetchone()
    records = [WebhookRecord(id=i, kind=kind, tenant_id=tenant_id, url=url, body=body,
                             created_at=at, ordering_key=key)
               for i, key, tenant_id, url, body in json.loads(claimed or "[]")]
    return Queued(count, records, json.loads(behind or "[]"))


def webhook_enqueue(conn: sqlite3.Connection, kind: str, texts: list[str], at: float,
                    targets: WebhookTargets, until: float | None) -> Queued:
    return _enqueue(conn, kind, _array(texts), at, targets, until)


def webhook_claim(conn: sqlite3.Connection, now: float, limit: int,
                  until: float) -> list[WebhookRecord]:
    due: str = conn.execute(_WEBHOOK_DUE, (now, limit)).fetchone()[0]
    if due == "[]":
        return []
    conn.execute(_WEBHOOK_CLAIM, (until, due))
    return [_webhook_record(row) for row in json.loads(due)]


def webhook_delivered(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.execute("DELETE FROM webhook_outbox WHERE id IN (SELECT value FROM json_each(?))",
                 (json.dumps(ids),))


def _webhook_delivered_many(conn: sqlite3.Connection, calls: list[tuple[Any, ...]]) -> None:
    webhook_delivered(conn, [i for (ids,) in calls for i in ids])


def webhook_retry(conn: sqlite3.Connection, delivery_id: int, next_at: float, error: str) -> None:
    conn.execute(_WEBHOOK_RETRY, (next_at, error, delivery_id))


def webhook_kill(conn: sqlite3.Connection, delivery_id: int, at: float, error: str) -> None:
    conn.execute(_WEBHOOK_KILL, (at, error, delivery_id))


def webhook_release(conn: sqlite3.Connection, ids: list[int], now: float) -> None:
    conn.execute(_WEBHOOK_RELEASE, (now, json.dumps(ids)))


def webhook_dead(conn: sqlite3.Connection, after_id: int, limit: int,
                 tenants: list[str] | None) -> list[WebhookRecord]:
    rows = conn.execute(_WEBHOOK_DEAD, (after_id, limit, _json_or_none(tenants))).fetchall()
    return [_webhook_record(row) for row in rows]


def webhook_replay(conn: sqlite3.Connection, delivery_id: int, now: float) -> bool:
    return conn.execute(_WEBHOOK_REPLAY, (now, now, delivery_id)).rowcount > 0


def webhook_purge_dead(conn: sqlite3.Connection, before: float, limit: int) -> int:
    return conn.execute(_WEBHOOK_PURGE_DEAD, (before, limit)).rowcount


def webhook_depth(conn: sqlite3.Connection) -> tuple[Any, ...]:
    depth: tuple[Any, ...] = conn.execute(_WEBHOOK_DEPTH).fetchone()
    return depth


def _json_or_none(values: list[str] | None) -> str | None:
    return None if values is None else json.dumps(values)
