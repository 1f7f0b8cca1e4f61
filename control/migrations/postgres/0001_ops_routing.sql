-- Routing data (the routing-engine seed): operators, destination prefixes, rules and
-- the operators of each rule. Times are epoch seconds (double precision).
CREATE SCHEMA IF NOT EXISTS ops_routing;

CREATE TABLE IF NOT EXISTS ops_routing.operators (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    mcc           text NOT NULL DEFAULT '',
    mnc           text NOT NULL DEFAULT '',
    country_code  text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS ops_routing.destination_prefixes (
    prefix        text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,15}$'),
    operator_id   text NOT NULL REFERENCES ops_routing.operators (id) ON DELETE CASCADE,
    country_code  text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS ops_routing.routing_rules (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    priority      integer NOT NULL DEFAULT 100,
    tenant_id     text,
    prefix        text CHECK (prefix IS NULL OR prefix ~ '^[0-9]{1,15}$'),
    source        text,
    message_type  text,
    active_from   double precision,
    active_until  double precision,
    enabled       boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS ops_routing.routing_rule_operators (
    rule_id        bigint NOT NULL REFERENCES ops_routing.routing_rules (id) ON DELETE CASCADE,
    operator_id    text NOT NULL REFERENCES ops_routing.operators (id) ON DELETE CASCADE,
    weight         integer NOT NULL DEFAULT 100 CHECK (weight >= 0),
    failover_order integer NOT NULL DEFAULT 0 CHECK (failover_order >= 0),
    PRIMARY KEY (rule_id, operator_id)
);
