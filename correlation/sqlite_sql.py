"""The embedded store's schema and SQL statements (correlation.sqlite_store)."""

from __future__ import annotations

from correlation.store import FINAL_STATES, MESSAGE_FIELDS, PART_FIELDS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    data_coding INTEGER NOT NULL,
    body BLOB NOT NULL,
    operator_id TEXT,
    registered_delivery INTEGER NOT NULL,
    validity TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    reason TEXT,
    command_status INTEGER,
    receipt_stat TEXT,
    receipt_err TEXT,
    callback_url TEXT  -- added after the first release: see _connect
) WITHOUT ROWID;
-- Partial index: only ACCEPTED rows, so the backlog reads stay small as the table grows;
-- per operator, oldest first (refills read one operator's backlog from a cursor).
DROP INDEX IF EXISTS messages_accepted;
CREATE INDEX IF NOT EXISTS messages_accepted_by_operator ON messages (operator_id, created_at)
    WHERE state = 'ACCEPTED';
CREATE TABLE IF NOT EXISTS parts (
    message_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    total INTEGER NOT NULL,
    operator_id TEXT NOT NULL,
    smsc_id TEXT,
    smsc_key TEXT,
    state TEXT NOT NULL,
    command_status INTEGER,
    stat TEXT,
    err TEXT,
    submitted_at REAL,
    done_at REAL,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_smsc_key ON parts (operator_id, smsc_key);
CREATE TABLE IF NOT EXISTS orphan_receipts (
    id INTEGER PRIMARY KEY,
    operator_id TEXT NOT NULL,
    receipt TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- A receipt whose id form is unknown is findable under each of its candidate keys.
CREATE TABLE IF NOT EXISTS orphan_keys (
    operator_id TEXT NOT NULL,
    smsc_key TEXT NOT NULL,
    orphan_id INTEGER NOT NULL,
    PRIMARY KEY (operator_id, smsc_key, orphan_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orphan_keys_orphan ON orphan_keys (orphan_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: API cursors stay valid
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
-- Parts of concatenated MO messages whose other parts have not all come yet.
CREATE TABLE IF NOT EXISTS mo_parts (
    operator_id TEXT NOT NULL,
    source TEXT NOT NULL,
    reference INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    total INTEGER NOT NULL,
    destination TEXT NOT NULL,
    data_coding INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (operator_id, source, reference, seq)
) WITHOUT ROWID;
-- Idempotency keys per caller (scope: token and tenants). The global keys of versions
-- before it cannot be given a scope: their table goes.
DROP TABLE IF EXISTS idempotency;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,  -- SHA-256 of the request
    response TEXT,  -- the results as JSON; NULL until the first request is done
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
-- Events waiting to be POSTed to a webhook (smppd.webhooks), and the dead letters.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the X-Smppd-Delivery id
    kind TEXT NOT NULL,
    ordering_key TEXT,  -- the message id (its events go out in order); NULL: MO, no order
    tenant_id TEXT NOT NULL,
    url TEXT,  -- the message's callback_url; NULL: the tenant's at delivery
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,  -- due from then (a claim moves it past its lease)
    attempts INTEGER NOT NULL,
    last_error TEXT,
    dead_at REAL  -- set: a dead letter
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at)
    WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox (ordering_key, id)
    WHERE dead_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_dead ON webhook_outbox (id)
    WHERE dead_at IS NOT NULL;
"""
# Columns added to tables of earlier releases (CREATE TABLE IF NOT EXISTS keeps an old
# table as it is): table -> (column, its declaration).
_ADDED_COLUMNS = (("messages", "callback_url", "TEXT"),)

_MESSAGE_FIELDS = MESSAGE_FIELDS
_MESSAGE_COLUMNS = ", ".join(MESSAGE_FIELDS)
_PART_FIELDS = PART_FIELDS
_PART_COLUMNS = ", ".join(PART_FIELDS)
# Built once from the constant column lists above (no outside input): S608 does not apply.
_MARKS = ", ".join("?" * len(_MESSAGE_FIELDS))
_INSERT_MESSAGE = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({_MARKS})"  # noqa: S608
_INSERT_NEW_MESSAGE = _INSERT_MESSAGE + " ON CONFLICT (message_id) DO NOTHING"
_SELECT_PENDING = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE state = ? ORDER BY created_at"  # noqa: S608
# One operator's ACCEPTED messages after a (created_at, message_id) cursor, oldest first,
# each with the numbers of its parts that have an SMSC id already (comma-separated).
# As one JSON text (one row: sqlite3 takes the GIL back after every row it steps, and
# while the event loop is busy each of those waits for a GIL switch, ~5 ms): body as
# hex, times with all 17 digits (the cursor must read back exactly).
_JSON_MESSAGE = ", ".join(
    "hex(body)" if f == "body" else f"printf('%!.17g', {f})" if f.endswith("_at") else f
    for f in _MESSAGE_FIELDS
)
_SELECT_ACCEPTED_AFTER = (
    f"SELECT json_group_array(json_array({_JSON_MESSAGE},"  # noqa: S608
    " (SELECT group_concat(p.part) FROM parts p"
    " WHERE p.message_id = m.message_id AND p.smsc_id IS NOT NULL)))"
    " FROM (SELECT * FROM messages WHERE state = 'ACCEPTED' AND operator_id IS ?"
    " AND (created_at, message_id) > (?, ?) ORDER BY created_at, message_id LIMIT ?) m"
)
_ACCEPTED_BACKLOG = (
    "SELECT operator_id, max(created_at) FROM messages WHERE state = 'ACCEPTED'"
    " GROUP BY operator_id"
)
_SELECT_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?"  # noqa: S608
_SELECT_PARTS = f"SELECT {_PART_COLUMNS} FROM parts WHERE message_id = ? ORDER BY part"  # noqa: S608
_SUBMIT_MESSAGE = (
    "UPDATE messages SET state = ?, operator_id = ?, updated_at = ?"
    " WHERE message_id = ? AND state = ?"
)
_ALL_PARTS_SUBMITTED = " AND (SELECT count(*) FROM parts WHERE message_id = ? AND state != ?) >= ?"
_SUBMIT_MESSAGE_ALL_PARTS = _SUBMIT_MESSAGE + _ALL_PARTS_SUBMITTED
_FINALS = ", ".join(f"'{state}'" for state in sorted(FINAL_STATES))
_SET_FINAL_PART = (
    "UPDATE parts SET state = ?, stat = ?, err = ?, done_at = ? WHERE message_id = ? AND part = ?"
)
_FINAL_PART = _SET_FINAL_PART + " RETURNING total"
_INTERMEDIATE_PART = (
    "UPDATE parts SET stat = ?, err = ?"  # noqa: S608
    f" WHERE message_id = ? AND part = ? AND state NOT IN ({_FINALS})"
)
_FINAL_MESSAGE = (
    "UPDATE messages SET state = ?, receipt_stat = ?, receipt_err = ?, updated_at = ?"
    " WHERE message_id = ? AND state != ?"
)
# Batch writes take their rows as JSON (json_each): SQLite walks them in C with the GIL
# released, where executemany binds every row in Python and waits for the GIL each
# time (under a busy event loop that made the writer ~3x slower per row). Rows are
# grouped by the columns they share (operator, part, time, receipt status), so a
# statement reads at most three values per row: each json_extract parses its row again,
# and with seven per row that was most of a write's cost (12 -> 6 us per submit,
# 12 -> 4 per receipt, measured).
_SUBMITTED_PARTS = (  # ? = part, total, operator_id, state, submitted_at, [[m, id, key]], state
    f"INSERT INTO parts ({_PART_COLUMNS})"  # noqa: S608
    " SELECT value->>0, ?, ?, ?, value->>1, value->>2, ?, NULL, NULL, NULL, ?, NULL"
    " FROM json_each(?) WHERE true"
    " ON CONFLICT (message_id, part) DO UPDATE SET total = excluded.total,"
    " operator_id = excluded.operator_id, smsc_id = excluded.smsc_id,"
    " smsc_key = excluded.smsc_key, submitted_at = excluded.submitted_at,"
    " state = CASE WHEN state = ? THEN excluded.state ELSE state END"
)
_SUBMITTED_MESSAGES = (  # ? = state, operator_id, updated_at, [message_id], state
    "UPDATE messages SET state = ?, operator_id = ?, updated_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND state = ?"
)
# Of a JSON array of message ids, the positions of those whose part ? is missing or
# belongs to a multipart message, with its total (null when missing): one row of JSON,
# usually "[]" (each row a query returns costs the writer a wait for the GIL).
_UNUSUAL_PARTS = (
    "SELECT json_group_array(json_array(j.key, p.total)) FROM json_each(?) j LEFT JOIN parts p"
    " ON p.message_id = j.value AND p.part = ? WHERE p.total IS NOT 1"
)
_FINAL_PARTS = (  # ? = state, stat, err, done_at, [message_id], part
    "UPDATE parts SET state = ?, stat = ?, err = ?, done_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND part = ?"
)
_FINAL_MESSAGES = (  # ? = state, stat, err, updated_at, [message_id], state
    "UPDATE messages SET state = ?, receipt_stat = ?, receipt_err = ?, updated_at = ?"
    " WHERE message_id IN (SELECT value FROM json_each(?)) AND state != ?"
)
_INSERT_EVENTS = (
    "INSERT INTO events (kind, payload, created_at) SELECT ?, value, ? FROM json_each(?)"
    " ORDER BY key"
)
_LAST_EVENT_ID = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"


_WEBHOOK_COLUMNS = (
    "id, kind, tenant_id, url, body, created_at, attempts, last_error, dead_at, ordering_key")
# A new row's next_at: ?5 (the writer's lease, it delivers the row itself) when nothing
# earlier of its message waits, else due now (a claim takes it once the earlier is gone).
_NEW_NEXT_AT = (
    "CASE WHEN ?5 IS NULL OR EXISTS (SELECT 1 FROM webhook_outbox p WHERE"
    " p.ordering_key = m.message_id AND p.dead_at IS NULL) THEN ?2 ELSE ?5 END"
)
# DLR events: those of messages with a callback_url or of a tenant with a default one
# (?4, a JSON array), keyed by message so they go out in order.
_ENQUEUE_DLR = (
    "INSERT INTO webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"  # noqa: S608
    " next_at, attempts) SELECT ?1, m.message_id, m.tenant_id, m.callback_url, j.value, ?2,"
    f" {_NEW_NEXT_AT}, 0 FROM json_each(?3) j"
    " JOIN messages m ON m.message_id = j.value ->> 'message_id'"
    " WHERE m.callback_url IS NOT NULL OR m.tenant_id IN (SELECT value FROM json_each(?4))"
    " ORDER BY j.key"
)
# MO events: ?4 holds each event's tenant (null: not sent), in the events' order.
_ENQUEUE_MO = (
    "INSERT INTO webhook_outbox (kind, ordering_key, tenant_id, url, body, created_at,"
    " next_at, attempts) SELECT ?1, NULL, t.value, NULL, j.value, ?2, coalesce(?5, ?2), 0"
    " FROM json_each(?3) j JOIN json_each(?4) t ON t.key = j.key"
    " WHERE t.value IS NOT NULL ORDER BY j.key"
)
# The rows one enqueue wrote (ids ?1 < id <= ?2), as one row of JSON: [id, ordering key,
# tenant, url, body] of those it took for its lease, and the keys of the others.
_ENQUEUED = (
    "SELECT json_group_array(json_array(id, ordering_key, tenant_id, url, body))"
    " FILTER (WHERE next_at > created_at),"
    " json_group_array(ordering_key) FILTER (WHERE next_at <= created_at)"
    " FROM webhook_outbox WHERE id > ?1 AND id <= ?2"
)
# The oldest waiting event of each message (and any MO) that is due, as one row of JSON
# (each row a query returns costs the writer a wait for the GIL); the writer then claims
# them by moving next_at past the lease, in the same transaction.
_WEBHOOK_DUE = (
    "SELECT json_group_array(json_array(id, kind, tenant_id, url, body, created_at,"
    " attempts, last_error, NULL, ordering_key)) FROM (SELECT * FROM webhook_outbox o"
    " WHERE o.dead_at IS NULL AND o.next_at <= ?1 AND (o.ordering_key IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM webhook_outbox p WHERE p.ordering_key = o.ordering_key"
    " AND p.dead_at IS NULL AND p.id < o.id)) ORDER BY o.next_at LIMIT ?2)"
)
_WEBHOOK_CLAIM = (
    "UPDATE webhook_outbox SET next_at = ? WHERE id IN (SELECT value ->> 0 FROM json_each(?))"
)
_WEBHOOK_RETRY = (
    "UPDATE webhook_outbox SET next_at = ?, last_error = ?, attempts = attempts + 1"
    " WHERE id = ?"
)
_WEBHOOK_KILL = (
    "UPDATE webhook_outbox SET dead_at = ?, last_error = ?, attempts = attempts + 1"
    " WHERE id = ?"
)
_WEBHOOK_RELEASE = (
    "UPDATE webhook_outbox SET next_at = ? WHERE dead_at IS NULL"
    " AND id IN (SELECT value FROM json_each(?))"
)
_WEBHOOK_DEAD = (
    f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_outbox WHERE dead_at IS NOT NULL"  # noqa: S608
    " AND id > ?1 AND (?3 IS NULL OR tenant_id IN (SELECT value FROM json_each(?3)))"
    " ORDER BY id LIMIT ?2"
)
_WEBHOOK_REPLAY = (
    "UPDATE webhook_outbox SET dead_at = NULL, last_error = NULL, attempts = 0,"
    " next_at = ?, created_at = ? WHERE id = ? AND dead_at IS NOT NULL"
)
_WEBHOOK_PURGE_DEAD = (
    "DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox"
    " WHERE dead_at < ? ORDER BY id LIMIT ?)"
)
_WEBHOOK_DEPTH = (
    "SELECT count(*) FILTER (WHERE dead_at IS NULL),"
    " min(created_at) FILTER (WHERE dead_at IS NULL),"
    " count(*) FILTER (WHERE dead_at IS NOT NULL) FROM webhook_outbox"
)
