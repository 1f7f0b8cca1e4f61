-- Delivery and MO webhooks (smppd.webhooks): a message may name its callback_url, and
-- every event to be POSTed waits in the outbox until it is delivered, or stays there as
-- a dead letter (dead_at set) once its maximum age is past.
ALTER TABLE smpp.messages ADD COLUMN callback_url text;

CREATE TABLE smpp.webhook_outbox (
    id bigserial PRIMARY KEY,  -- also the X-Smppd-Delivery header
    kind text NOT NULL,
    ordering_key text,  -- the message id (its events go out in order); NULL: MO, no order
    tenant_id text NOT NULL,
    url text,  -- the message's callback_url; NULL: the tenant's at delivery
    body text NOT NULL,  -- the event's JSON as published (text: jsonb would reorder keys)
    created_at timestamptz NOT NULL,
    next_at timestamptz NOT NULL,  -- due from then (a claim moves it past its lease)
    attempts integer NOT NULL,
    last_error text,
    dead_at timestamptz
);
CREATE INDEX webhook_outbox_due ON smpp.webhook_outbox (next_at) WHERE dead_at IS NULL;
CREATE INDEX webhook_outbox_order ON smpp.webhook_outbox (ordering_key, id)
    WHERE dead_at IS NULL;
CREATE INDEX webhook_outbox_dead ON smpp.webhook_outbox (id) WHERE dead_at IS NOT NULL;
