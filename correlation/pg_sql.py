"""The distributed store's SQL statements (correlation.pg_store)."""

from __future__ import annotations

from collections.abc import Sequence

from correlation.store import FINAL_STATES, MESSAGE_FIELDS, PART_FIELDS

_MESSAGE_FIELDS = MESSAGE_FIELDS
_PART_FIELDS = PART_FIELDS
_TIMESTAMPS = frozenset({"created_at", "updated_at", "submitted_at", "done_at"})


def _select_list(fields: Sequence[str]) -> str:
    """Columns to select, timestamps as epoch seconds."""
    return ", ".join(
        f"extract(epoch FROM {f})::float8 AS {f}" if f in _TIMESTAMPS else f for f in fields
    )


# Array types for unnest-ing message rows, one per field of _MESSAGE_FIELDS.
_MESSAGE_ARRAY_TYPES = (
    "text", "text", "text", "text", "int2", "bytea", "text", "int2", "text", "int2", "text",
    "int4", "float8", "float8", "text", "int8", "text", "text", "text",
)  # fmt: skip


def _unnest_select(fields: Sequence[str], types: Sequence[str]) -> str:
    """SELECT the fields from one array parameter each ($1, $2, ...), timestamps
    converted from epoch seconds."""
    columns = ", ".join(f"to_timestamp({f})" if f in _TIMESTAMPS else f for f in fields)
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    return f"SELECT {columns} FROM unnest({arrays}) AS r({', '.join(fields)})"  # noqa: S608


# Built once from the constant field lists above (no outside input): S608 does not apply.
_INSERT_MESSAGES = (
    f"INSERT INTO smpp.messages ({', '.join(_MESSAGE_FIELDS)})"
    f" {_unnest_select(_MESSAGE_FIELDS, _MESSAGE_ARRAY_TYPES)}"
)
_INSERT_NEW_MESSAGES = (
    _INSERT_MESSAGES + " ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)
_SELECT_MESSAGES = f"SELECT {_select_list(_MESSAGE_FIELDS)} FROM smpp.messages"  # noqa: S608
_SELECT_PENDING = _SELECT_MESSAGES + " WHERE state = $1 ORDER BY created_at, message_id"
_SELECT_MESSAGE = _SELECT_MESSAGES + " WHERE message_id = $1"
_SELECT_PARTS = (
    f"SELECT {_select_list(_PART_FIELDS)} FROM smpp.message_correlations"  # noqa: S608
    " WHERE message_id = $1 ORDER BY part"
)
# The state is spelled out, not a parameter, so the partial index messages_accepted serves it.
_ACCEPTED_IDS = (
    "SELECT message_id, extract(epoch FROM created_at)::float8 FROM smpp.messages"
    " WHERE state = 'ACCEPTED' AND operator_id = $1 AND created_at < to_timestamp($2)"
    " ORDER BY created_at, message_id LIMIT $3"
)
_ACCEPTED_AFTER = (
    f"SELECT {_select_list(_MESSAGE_FIELDS)}, ARRAY(SELECT c.part"  # noqa: S608
    " FROM smpp.message_correlations c WHERE c.message_id = m.message_id"
    " AND c.smsc_id IS NOT NULL) AS submitted_parts FROM smpp.messages m"
    " WHERE state = 'ACCEPTED' AND operator_id IS NOT DISTINCT FROM $1"
    " AND (created_at, message_id) > (to_timestamp($2), $3)"
    " ORDER BY created_at, message_id LIMIT $4"
)
_ACCEPTED_BACKLOG = (
    "SELECT operator_id, extract(epoch FROM max(created_at))::float8"
    " FROM smpp.messages WHERE state = 'ACCEPTED' GROUP BY operator_id"
)
_SET_STATE = (
    "UPDATE smpp.messages SET state = $2, updated_at = to_timestamp($3),"
    " reason = coalesce($4, reason), command_status = coalesce($5, command_status),"
    " attempts = coalesce($6, attempts) WHERE message_id = $1"
)
# A resubmit (after a restart) records the new id; a part that has a receipt keeps its state.
# Each (message_id, part) at most once per statement (ON CONFLICT DO UPDATE needs that).
_UPSERT_PARTS = (
    "INSERT INTO smpp.message_correlations"
    " (message_id, part, total, operator_id, smsc_id, smsc_key, state, submitted_at)"
    " SELECT m, p, t, o, si, sk, $8, to_timestamp(a) FROM unnest($1::text[], $2::int2[],"
    " $3::int2[], $4::text[], $5::text[], $6::text[], $7::float8[]) AS r(m, p, t, o, si, sk, a)"
    " ON CONFLICT (message_id, part) DO UPDATE SET total = excluded.total,"
    " operator_id = excluded.operator_id, smsc_id = excluded.smsc_id,"
    " smsc_key = excluded.smsc_key, submitted_at = excluded.submitted_at,"
    " state = CASE WHEN message_correlations.state = $9 THEN excluded.state"
    " ELSE message_correlations.state END"
)
# A message is SUBMITTED once every part is (a single part needs no count). The first
# qualifying row of each message sets it, as one UPDATE per row, in order, would.
_SUBMIT_MESSAGES = (
    "UPDATE smpp.messages m SET state = $6, operator_id = r.o, updated_at = to_timestamp(r.a)"
    " FROM (SELECT DISTINCT ON (r.m) r.m, r.o, r.a"
    " FROM unnest($1::text[], $2::text[], $3::float8[], $4::int2[])"
    " WITH ORDINALITY AS r(m, o, a, t, i)"
    " WHERE r.t = 1 OR (SELECT count(*) FROM smpp.message_correlations c"
    " WHERE c.message_id = r.m AND c.state <> $5) >= r.t"
    " ORDER BY r.m, r.t <> 1, r.i) r"
    " WHERE m.message_id = r.m AND m.state = $7"
)
_FINALS = ", ".join(f"'{state}'" for state in sorted(FINAL_STATES))
# One round trip for the common case: a single-part message takes its part's state.
_FINAL_RECEIPT = (
    "WITH p AS (UPDATE smpp.message_correlations"
    " SET state = $3, stat = $4, err = $5, done_at = to_timestamp($6)"
    " WHERE message_id = $1 AND part = $2 RETURNING total),"
    " m AS (UPDATE smpp.messages SET state = $3, receipt_stat = $4, receipt_err = $5,"
    " updated_at = to_timestamp($6)"
    " WHERE message_id = $1 AND state <> $3 AND EXISTS (SELECT 1 FROM p WHERE total = 1))"
    " SELECT total FROM p"
)
# The common case of a batch (see correlation.batching.split_receipts): final receipts,
# each for a different single-part message, in one statement. Every row's part comes
# back with its total, so a missing part answers None.
_FINAL_RECEIPTS = (
    "WITH r AS (SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::text[],"
    " $5::text[], $6::float8[]) AS r(message_id, part, state, stat, err, at)),"
    " p AS (UPDATE smpp.message_correlations c SET state = r.state, stat = r.stat,"
    " err = r.err, done_at = to_timestamp(r.at) FROM r"
    " WHERE c.message_id = r.message_id AND c.part = r.part"
    " RETURNING c.message_id, c.total),"
    " m AS (UPDATE smpp.messages m SET state = r.state, receipt_stat = r.stat,"
    " receipt_err = r.err, updated_at = to_timestamp(r.at)"
    " FROM r JOIN p ON p.message_id = r.message_id"
    " WHERE m.message_id = r.message_id AND p.total = 1 AND m.state <> r.state)"
    " SELECT message_id, total FROM p"
)
_INTERMEDIATE_RECEIPT = (
    "UPDATE smpp.message_correlations SET stat = $3, err = $4"  # noqa: S608
    f" WHERE message_id = $1 AND part = $2 AND state NOT IN ({_FINALS})"
)
_MESSAGE_AND_PARTS_STATES = (
    "SELECT (SELECT state FROM smpp.messages WHERE message_id = $1) AS current,"
    " array_agg(state ORDER BY part) AS states, (array_agg(total ORDER BY part))[1] AS total"
    " FROM smpp.message_correlations WHERE message_id = $1"
)
_FINAL_MESSAGE = (
    "UPDATE smpp.messages SET state = $2, receipt_stat = $3, receipt_err = $4,"
    " updated_at = to_timestamp($5) WHERE message_id = $1 AND state <> $2"
)
# The newest submit under the first key that has one: one index probe per key.
LOOKUP_SQL = (
    "SELECT k.key, p.message_id, p.part, p.total"
    " FROM unnest($2::text[]) WITH ORDINALITY AS k(key, i)"
    " CROSS JOIN LATERAL (SELECT message_id, part, total FROM smpp.message_correlations"
    " WHERE operator_id = $1 AND smsc_key = k.key ORDER BY submitted_at DESC LIMIT 1) p"
    " ORDER BY k.i LIMIT 1"
)
# lookup_parts in one query: per key set (i), the newest submit under its first key
# (lowest ord) that has one; key sets with none are left out.
LOOKUP_MANY_SQL = (
    "SELECT DISTINCT ON (k.i) k.i, k.key, p.message_id, p.part, p.total"
    " FROM unnest($2::int4[], $3::text[], $4::int4[]) AS k(i, key, ord)"
    " CROSS JOIN LATERAL (SELECT message_id, part, total FROM smpp.message_correlations"
    " WHERE operator_id = $1 AND smsc_key = k.key ORDER BY submitted_at DESC LIMIT 1) p"
    " ORDER BY k.i, k.ord"
)
_PUT_ORPHAN = (
    "WITH o AS (INSERT INTO smpp.orphan_receipts (operator_id, receipt, created_at)"
    " VALUES ($1, $3::jsonb, to_timestamp($4)) RETURNING id)"
    " INSERT INTO smpp.orphan_keys (operator_id, smsc_key, orphan_id)"
    " SELECT $1, k, o.id FROM o, unnest($2::text[]) AS k ON CONFLICT DO NOTHING"
)
# Deleting the receipt cascades to its keys (so it is taken once, under any key).
_TAKE_ORPHANS = (
    "DELETE FROM smpp.orphan_receipts o USING smpp.orphan_keys k"
    " WHERE k.orphan_id = o.id AND k.operator_id = $1 AND k.smsc_key = $2"
    " RETURNING o.id, o.receipt::text"
)
# Each receipt once, even when several of its keys are asked for.
_TAKE_ORPHANS_MANY = (
    "DELETE FROM smpp.orphan_receipts o USING smpp.orphan_keys k"
    " WHERE k.orphan_id = o.id AND k.operator_id = $1 AND k.smsc_key = ANY($2::text[])"
    " RETURNING o.id, k.smsc_key, o.receipt::text"
)
# An orphan put by the matcher carries its hold_id: found under the key it was put with.
_DROP_ORPHAN = (
    "DELETE FROM smpp.orphan_receipts o USING smpp.orphan_keys k"
    " WHERE k.orphan_id = o.id AND k.operator_id = $1 AND k.smsc_key = $2"
    " AND o.receipt->>'hold_id' = $3"
)
_WIDEN_ORPHAN = (
    "INSERT INTO smpp.orphan_keys (operator_id, smsc_key, orphan_id)"
    " SELECT $1, more.key, k.orphan_id FROM smpp.orphan_keys k"
    " JOIN smpp.orphan_receipts o ON o.id = k.orphan_id, unnest($4::text[]) AS more(key)"
    " WHERE k.operator_id = $1 AND k.smsc_key = $2 AND o.receipt->>'hold_id' = $3"
    " ON CONFLICT DO NOTHING"
)
_EVENT_COLUMNS = "id, kind, payload::text, extract(epoch FROM created_at)::float8"
# Ids are drawn as rows are inserted, in input order (ORDER BY i), and come back so.
_INSERT_EVENTS = (
    "INSERT INTO smpp.events (kind, payload, created_at)"
    " SELECT k, p::jsonb, to_timestamp(a)"
    " FROM unnest($1::text[], $2::text[], $3::float8[]) WITH ORDINALITY AS e(k, p, a, i)"
    " ORDER BY i RETURNING id"
)

_WEBHOOK_COLUMNS = (
    "id, kind, tenant_id, url, body, extract(epoch FROM created_at)::float8 AS created_at,"
    " attempts, last_error, extract(epoch FROM dead_at)::float8 AS dead_at, ordering_key"
)
# A new row's next_at: $5 (the writer's lease, it delivers the row itself) when nothing
# earlier of its message waits, else due now (a claim takes it once the earlier is gone).
_NEW_NEXT_AT = (
    "CASE WHEN $5::float8 IS NULL OR EXISTS (SELECT 1 FROM smpp.webhook_outbox p WHERE"
    " p.ordering_key = m.message_id AND p.dead_at IS NULL) THEN to_timestamp($2)"
    " ELSE to_timestamp($5) END"
)
# What an enqueue wrote: every row's id and key; the body of those taken for the lease.
_ENQUEUED = (
    " RETURNING id, ordering_key, tenant_id, url, next_at > created_at AS claimed,"
    " CASE WHEN next_at > created_at THEN body END AS body"
)
# DLR events: those of messages with a callback_url or of a tenant with a default one
# ($4), keyed by message so they go out in order; in the events' order.
_ENQUEUE_DLR = (
    "INSERT INTO smpp.webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"  # noqa: S608
    " next_at, attempts) SELECT $1, m.message_id, m.tenant_id, m.callback_url, e.p,"
    f" to_timestamp($2), {_NEW_NEXT_AT}, 0"
    " FROM unnest($3::text[]) WITH ORDINALITY AS e(p, i)"
    " JOIN smpp.messages m ON m.message_id = e.p::jsonb ->> 'message_id'"
    " WHERE m.callback_url IS NOT NULL OR m.tenant_id = ANY($4::text[]) ORDER BY e.i"
    + _ENQUEUED
)
# MO events: $4 holds each event's tenant (NULL: not sent).
_ENQUEUE_MO = (
    "INSERT INTO smpp.webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"  # noqa: S608
    " next_at, attempts) SELECT $1, NULL, e.t, NULL, e.p, to_timestamp($2),"
    " to_timestamp(coalesce($5::float8, $2)), 0"
    " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS e(p, t, i)"
    " WHERE e.t IS NOT NULL ORDER BY e.i" + _ENQUEUED
)
# The oldest waiting event of each message (and any MO) that is due, claimed by moving
# next_at past the lease. SKIP LOCKED: replicas claiming at once take different rows; a
# message's later event stays blocked while the earlier one exists, claimed or not.
_WEBHOOK_CLAIM = (
    "UPDATE smpp.webhook_outbox SET next_at = to_timestamp($3) WHERE id IN (SELECT o.id"  # noqa: S608
    " FROM smpp.webhook_outbox o WHERE o.dead_at IS NULL AND o.next_at <= to_timestamp($1)"
    " AND (o.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM smpp.webhook_outbox p"
    " WHERE p.ordering_key = o.ordering_key AND p.dead_at IS NULL AND p.id < o.id))"
    f" ORDER BY o.next_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING {_WEBHOOK_COLUMNS}"
)
_WEBHOOK_RETRY = (
    "UPDATE smpp.webhook_outbox SET next_at = to_timestamp($1), last_error = $2,"
    " attempts = attempts + 1 WHERE id = $3"
)
_WEBHOOK_KILL = (
    "UPDATE smpp.webhook_outbox SET dead_at = to_timestamp($1), last_error = $2,"
    " attempts = attempts + 1 WHERE id = $3"
)
_WEBHOOK_RELEASE = (
    "UPDATE smpp.webhook_outbox SET next_at = to_timestamp($1) WHERE dead_at IS NULL"
    " AND id = ANY($2::bigint[])"
)
_WEBHOOK_DEAD = (
    f"SELECT {_WEBHOOK_COLUMNS} FROM smpp.webhook_outbox WHERE dead_at IS NOT NULL"  # noqa: S608
    " AND id > $1 AND ($3::text[] IS NULL OR tenant_id = ANY($3)) ORDER BY id LIMIT $2"
)
_WEBHOOK_REPLAY = (
    "UPDATE smpp.webhook_outbox SET dead_at = NULL, last_error = NULL, attempts = 0,"
    " next_at = to_timestamp($1), created_at = to_timestamp($1)"
    " WHERE id = $2 AND dead_at IS NOT NULL RETURNING id"
)
_WEBHOOK_DEPTH = (
    "SELECT count(*) FILTER (WHERE dead_at IS NULL),"
    " extract(epoch FROM min(created_at) FILTER (WHERE dead_at IS NULL))::float8,"
    " count(*) FILTER (WHERE dead_at IS NOT NULL) FROM smpp.webhook_outbox"
)
