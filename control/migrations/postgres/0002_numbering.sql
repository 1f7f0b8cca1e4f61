-- Sender ids leased to tenants (numbering service). Times are epoch seconds.
CREATE SCHEMA IF NOT EXISTS numbering;

CREATE TABLE IF NOT EXISTS numbering.sender_ids (
    sender            text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('MSISDN', 'SHORT_CODE', 'ALPHANUMERIC')),
    tenant_id         text NOT NULL,
    state             text NOT NULL CHECK (state IN ('ACTIVE', 'SUSPENDED', 'QUARANTINED', 'RELEASED')),
    quarantine_until  double precision,
    updated_at        double precision NOT NULL DEFAULT extract(epoch FROM now())
);

CREATE INDEX IF NOT EXISTS sender_ids_tenant ON numbering.sender_ids (tenant_id);
