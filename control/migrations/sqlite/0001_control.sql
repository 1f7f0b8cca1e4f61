-- Embedded mode: the ops_routing and numbering tables in one SQLite file, the schema
-- name folded into the table name (ops_routing.operators -> ops_routing_operators).
CREATE TABLE IF NOT EXISTS ops_routing_operators (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    mcc           TEXT NOT NULL DEFAULT '',
    mnc           TEXT NOT NULL DEFAULT '',
    country_code  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS ops_routing_destination_prefixes (
    prefix        TEXT PRIMARY KEY,
    operator_id   TEXT NOT NULL REFERENCES ops_routing_operators (id) ON DELETE CASCADE,
    country_code  TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS ops_routing_routing_rules (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 100,
    tenant_id     TEXT,
    prefix        TEXT,
    source        TEXT,
    message_type  TEXT,
    active_from   REAL,
    active_until  REAL,
    enabled       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS ops_routing_routing_rule_operators (
    rule_id        INTEGER NOT NULL REFERENCES ops_routing_routing_rules (id) ON DELETE CASCADE,
    operator_id    TEXT NOT NULL REFERENCES ops_routing_operators (id) ON DELETE CASCADE,
    weight         INTEGER NOT NULL DEFAULT 100 CHECK (weight >= 0),
    failover_order INTEGER NOT NULL DEFAULT 0 CHECK (failover_order >= 0),
    PRIMARY KEY (rule_id, operator_id)
);

CREATE TABLE IF NOT EXISTS numbering_sender_ids (
    sender            TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('MSISDN', 'SHORT_CODE', 'ALPHANUMERIC')),
    tenant_id         TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('ACTIVE', 'SUSPENDED', 'QUARANTINED', 'RELEASED')),
    quarantine_until  REAL,
    updated_at        REAL NOT NULL DEFAULT (strftime('%s', 'now'))
);

CREATE INDEX IF NOT EXISTS numbering_sender_ids_tenant ON numbering_sender_ids (tenant_id);
