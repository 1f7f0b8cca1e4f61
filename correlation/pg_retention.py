"""Retention of the distributed store: rows older than the retention period deleted in
batches (the daemon runs it daily; safe from several replicas at once)."""

from __future__ import annotations

import logging
import time

import asyncpg

log = logging.getLogger(__name__)



# -- retention ---------------------------------------------------------------------------

PURGE_DEAD = (
    "WITH d AS (DELETE FROM smpp.webhook_outbox WHERE id IN (SELECT id"
    " FROM smpp.webhook_outbox WHERE dead_at < to_timestamp($1) LIMIT $2) RETURNING 1)"
    " SELECT count(*), 0 FROM d"
)
# Each deletes up to $2 rows older than $1 (epoch seconds) and says how many it deleted.
_PURGES: dict[str, str] = {
    # Finished messages (anything past ACCEPTED: a SUBMITTED one older than the retention
    # period outlived its validity, no receipt will come) and their parts.
    "messages": (
        "WITH m AS (DELETE FROM smpp.messages WHERE message_id IN ("
        " SELECT message_id FROM smpp.messages"
        " WHERE updated_at < to_timestamp($1) AND state <> 'ACCEPTED' LIMIT $2)"
        " RETURNING message_id),"
        " p AS (DELETE FROM smpp.message_correlations c USING m"
        " WHERE c.message_id = m.message_id RETURNING 1)"
        " SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM p)"
    ),
    "orphan_receipts": (
        "WITH d AS (DELETE FROM smpp.orphan_receipts WHERE id IN (SELECT id"
        " FROM smpp.orphan_receipts WHERE created_at < to_timestamp($1) LIMIT $2) RETURNING 1)"
        " SELECT count(*), 0 FROM d"
    ),
    "mo_messages": (
        "WITH d AS (DELETE FROM smpp.mo_messages WHERE id IN (SELECT id"
        " FROM smpp.mo_messages WHERE received_at < to_timestamp($1) LIMIT $2) RETURNING 1)"
        " SELECT count(*), 0 FROM d"
    ),
    "mo_parts": (  # incomplete MO messages whose other parts never came
        "WITH d AS (DELETE FROM smpp.mo_parts WHERE ctid IN (SELECT ctid"
        " FROM smpp.mo_parts WHERE created_at < to_timestamp($1) LIMIT $2) RETURNING 1)"
        " SELECT count(*), 0 FROM d"
    ),
    "events": (
        "WITH d AS (DELETE FROM smpp.events WHERE id IN (SELECT id"
        " FROM smpp.events WHERE created_at < to_timestamp($1) LIMIT $2) RETURNING 1)"
        " SELECT count(*), 0 FROM d"
    ),
    # Dead letters no one replayed (the webhook worker also runs it, pg_ops, with
    # [webhooks] dead_retention).
    "webhook_outbox": PURGE_DEAD,
    "idempotency_keys": (
        "WITH d AS (DELETE FROM smpp.idempotency_keys WHERE (scope, key) IN (SELECT scope,"
        " key FROM smpp.idempotency_keys WHERE created_at < to_timestamp($1) LIMIT $2)"
        " RETURNING 1) SELECT count(*), 0 FROM d"
    ),
}


async def purge_older_than(
    pool: asyncpg.Pool, days: float, *, now: float | None = None, batch_size: int = 10_000
) -> dict[str, int]:
    """Delete rows older than ``days``; returns the count per table.

    Deleted: messages past ACCEPTED (final, or SUBMITTED with no receipt) last updated
    before the cutoff, with their parts in ``message_correlations``; orphan receipts,
    MO messages, events and idempotency keys created before it. ACCEPTED messages are
    never purged (they still have to be sent). Keep ``days`` above the longest validity
    period, so no receipt can still arrive for a purged part. Runs in transactions of
    ``batch_size`` rows so replicas and the writer are not blocked; the daemon calls it
    daily, and a run from two replicas at once is harmless.
    """
    cutoff = (time.time() if now is None else now) - days * 86400
    counts = {table: 0 for table in _PURGES} | {"message_correlations": 0}
    for table, sql in _PURGES.items():
        while True:
            row = await pool.fetchrow(sql, cutoff, batch_size)
            assert row is not None
            counts[table] += row[0]
            if table == "messages":
                counts["message_correlations"] += row[1]
            if row[0] < batch_size:
                break
    log.info("purged rows older than %s days: %s", days, counts)
    return counts

