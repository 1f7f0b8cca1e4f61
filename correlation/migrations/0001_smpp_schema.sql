-- The smpp schema: messages, their submitted parts (smpp.message_correlations, the
-- platform's contract name), orphan receipts, MO messages, events, idempotency keys.
-- Timestamps are timestamptz; the store converts to and from epoch seconds.

CREATE SCHEMA IF NOT EXISTS smpp;

CREATE TABLE smpp.messages (
    message_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    source text NOT NULL,
    destination text NOT NULL,
    data_coding smallint NOT NULL,
    body bytea NOT NULL,
    operator_id text,
    registered_delivery smallint NOT NULL,
    validity text,
    priority smallint NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    reason text,
    command_status bigint,
    receipt_stat text,
    receipt_err text
);
-- Partial: only ACCEPTED rows, so the restart scan stays small as the table grows.
CREATE INDEX messages_accepted ON smpp.messages (created_at) WHERE state = 'ACCEPTED';
-- For the retention job.
CREATE INDEX messages_updated_at ON smpp.messages (updated_at);

-- One row per submitted part. No foreign key to messages: a receipt path that only
-- knows the part must not pay for one, and retention deletes both together.
CREATE TABLE smpp.message_correlations (
    message_id text NOT NULL,
    part smallint NOT NULL,
    total smallint NOT NULL,
    operator_id text NOT NULL,
    smsc_id text,
    smsc_key text,
    state text NOT NULL,
    command_status bigint,
    stat text,
    err text,
    submitted_at timestamptz,
    done_at timestamptz,
    PRIMARY KEY (message_id, part)
);
-- Receipt matching: (operator, normalised SMSC id), newest submit first.
CREATE INDEX message_correlations_lookup
    ON smpp.message_correlations (operator_id, smsc_key, submitted_at DESC);

CREATE TABLE smpp.orphan_receipts (
    id bigserial PRIMARY KEY,
    operator_id text NOT NULL,
    receipt jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX orphan_receipts_created_at ON smpp.orphan_receipts (created_at);
-- A receipt whose id form is unknown is findable under each of its candidate keys.
CREATE TABLE smpp.orphan_keys (
    operator_id text NOT NULL,
    smsc_key text NOT NULL,
    orphan_id bigint NOT NULL REFERENCES smpp.orphan_receipts (id) ON DELETE CASCADE,
    PRIMARY KEY (operator_id, smsc_key, orphan_id)
);
CREATE INDEX orphan_keys_orphan ON smpp.orphan_keys (orphan_id);

CREATE TABLE smpp.mo_messages (
    id bigserial PRIMARY KEY,
    operator_id text NOT NULL,
    source text NOT NULL,
    destination text NOT NULL,
    data_coding smallint NOT NULL,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX mo_messages_received_at ON smpp.mo_messages (received_at);

CREATE TABLE smpp.events (
    id bigserial PRIMARY KEY,  -- never reused: API cursors stay valid
    kind text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX events_kind ON smpp.events (kind, id);
CREATE INDEX events_created_at ON smpp.events (created_at);

CREATE TABLE smpp.idempotency_keys (
    key text PRIMARY KEY,
    message_id text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_created_at ON smpp.idempotency_keys (created_at);
