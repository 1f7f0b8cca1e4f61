-- Parts of concatenated MO messages whose other parts have not all come yet: each is
-- durable before its deliver_sm_resp (the SMSC does not resend an answered part), so
-- a message whose first parts came before a crash is still assembled after it.
CREATE TABLE smpp.mo_parts (
    operator_id text NOT NULL,
    source text NOT NULL,
    reference integer NOT NULL,
    seq smallint NOT NULL,
    total smallint NOT NULL,
    destination text NOT NULL,
    data_coding smallint NOT NULL,
    body bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (operator_id, source, reference, seq)
);
CREATE INDEX mo_parts_created_at ON smpp.mo_parts (created_at);
