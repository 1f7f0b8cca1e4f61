-- Idempotency keys per caller (scope: the token and the tenants of the request), with
-- the request's fingerprint and its results, so the same key with another body is
-- refused and the same request is answered again. The global keys of 0001 cannot be
-- given a scope: that table goes (keys are remembered 48 h; an upgrade forgets them).
DROP TABLE smpp.idempotency_keys;

CREATE TABLE smpp.idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,  -- SHA-256 of the request
    response jsonb,  -- the results; NULL until the first request is done
    created_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON smpp.idempotency_keys (created_at);
