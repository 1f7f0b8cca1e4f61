"""The OpenAPI 3.1 document of the control API, served at /v1/openapi.json.

Written by hand, next to the handlers; tests/test_openapi.py checks that every route
the app registers is here (and that the live app conforms, with schemathesis).
"""

from __future__ import annotations

import copy
from typing import Any

from control.handlers import BASE_ROLES, ROUTES

TENANT = {"type": "string", "pattern": "^[A-Za-z0-9._\\-]{1,64}$"}
E164 = {"type": "string", "pattern": "^\\+?[1-9][0-9]{6,14}$"}
DIGITS = {"type": "string", "pattern": "^[0-9]{1,15}$"}
OP_ID = {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}
NULLABLE_NUM = {"type": ["number", "null"]}
MESSAGE_TYPE = {"enum": ["transactional", "promotional", "otp", "service", None]}
OPEN_OBJECT = {"type": "object", "additionalProperties": True}
# A sender: E.164 (9 to 15 digits), a short code (3 to 8 digits) or alphanumeric (up to
# 11 characters, not all digits).
SOURCE = {"type": "string", "anyOf": [
    {"pattern": "^\\+?[1-9][0-9]{8,14}$"}, {"pattern": "^[0-9]{3,8}$"},
    {"pattern": "^[A-Za-z0-9 ._&'\\-]{0,10}[A-Za-z ._&'\\-][A-Za-z0-9 ._&'\\-]{0,10}$",
     "maxLength": 11}]}
REASONS = ["OK", "NOT_REGISTERED", "WRONG_TENANT", "LEASE_SUSPENDED", "QUARANTINE_ACTIVE",
           "UNAVAILABLE"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = (),
         extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": extra}


SCHEMAS: dict[str, Any] = {
    "Problem": _obj({
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": _obj({"field": {"type": "string"},
                                                    "message": {"type": "string"}},
                                                   ("field", "message"))},
        "accepted": {"type": "array", "items": {"type": "string"},
                     "description": "409 of a bulk that raced another request for a "
                                    "message id: the ids this request did accept"},
        "denied": {"type": "array", "items": _ref("LeaseDenied"),
                   "description": "403 (503: every one UNAVAILABLE) of a submit: each "
                                  "message whose sender ValidateLease denied; nothing of "
                                  "the request was stored"},
        "reason_code": {"enum": REASONS[1:],
                        "description": "a single message's submit refused by ValidateLease"},
    }, ("type", "title", "status")),
    "LeaseDenied": _obj({
        "index": {"type": "integer", "description": "the message's place in the request"},
        "field": {"type": "string", "description": "source, or tenant_id for WRONG_TENANT "
                                                   "(messages[i]. in a bulk)"},
        "source": {"type": "string"}, "tenant_id": {"type": "string"},
        "reason_code": {"enum": REASONS[1:]},
    }, ("index", "field", "source", "tenant_id", "reason_code")),
    "Bind": _obj({"bind": {"type": "string"}, "state": {"type": "string"},
                  "type": {"enum": ["transmitter", "receiver", "transceiver"],
                           "description": "bind_type, or this bind's entry of bind_types"},
                  "host": {"type": "string"},
                  "last_error_reason": {"type": ["string", "null"],
                                        "description": "e.g. connect_failed, timeout, "
                                                       "tls_failed, ESME_RINVPASWD"}},
                 ("bind", "state"), extra=True),
    "Operator": _obj({
        "id": {"type": "string"}, "name": {"type": "string"},
        "state": {"enum": ["bound", "unbound", "paused"]},
        "binds_configured": {"type": "integer"}, "binds_up": {"type": "integer"},
        "tps_limit": {"type": "number"}, "window": {"type": "integer"},
        "binds": {"type": "array", "items": _ref("Bind")},
        "learned_id_forms": {
            "type": "object", "description": "id forms learned under \"auto\"",
            "properties": {"submit_resp_id": {"enum": ["hex"]},
                           "receipt_id": {"enum": ["decimal", "hex"]}}},
    }, ("id", "state", "tps_limit", "window"), extra=True),
    "StatusBind": _obj({
        "bind": {"type": "string"}, "state": {"type": "string"},
        "host": {"type": ["string", "null"]}, "on_primary": {"type": "boolean"},
        "window_in_use": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
        "last_error_since": {"type": ["number", "null"],
                             "description": "epoch seconds: when this failure began"},
    }, ("bind", "state"), extra=True),
    "StatusOperator": _obj({
        "id": {"type": "string"}, "name": {"type": "string"},
        "state": {"enum": ["bound", "unbound", "paused"]},
        "tps_limit": {"type": "number"}, "submit_rate": {"type": "number"},
        "receipt_rate": {"type": "number"}, "queued": {"type": "integer"},
        "spilled": {"type": "integer"}, "receipts_unmatched": {"type": "integer"},
        "binds": {"type": "array", "items": _ref("StatusBind")},
    }, ("id", "state", "tps_limit", "submit_rate", "receipt_rate", "binds"), extra=True),
    "Status": _obj({
        "time": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time"},
        "uptime_seconds": {"type": "number"}, "rate_window_seconds": {"type": "number"},
        "totals": _obj({k: {"type": "number"} for k in (
            "submit_rate", "receipt_rate", "tps_limit", "queued", "spilled", "in_flight",
            "unmatched", "receipts_held")}, ("submit_rate", "receipt_rate", "tps_limit")),
        "operators": {"type": "array", "items": _ref("StatusOperator")},
        "errors": {"type": "array", "items": _obj({
            "at": {"type": "string", "format": "date-time"},
            "level": {"type": "string"},
            "event": {"type": ["string", "null"]}, "operator": {"type": ["string", "null"]},
            "bind": {"type": ["string", "null"]}, "message": {"type": "string"}},
            ("at", "level", "message"))},
        "you": _obj({"name": {"type": ["string", "null"]}, "operate": {"type": "boolean"}},
                    ("operate",)),
    }, ("time", "totals", "operators", "errors", "you")),
    "MessageIn": _obj({
        "message_id": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,64}$"},
        "tenant_id": TENANT, "source": SOURCE,
        "destination": E164, "text": {"type": "string"},
        "data": {"type": "string", "description": "base64, with data_coding"},
        "data_coding": {"type": "integer", "minimum": 0, "maximum": 255},
        "operator_id": {"type": "string"}, "registered_delivery": {"type": "boolean"},
        "validity": {"type": "integer", "minimum": 60, "maximum": 604800},
        "priority": {"type": "integer", "minimum": 0, "maximum": 3},
        "callback_url": {"type": "string", "maxLength": 2048,
                         "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[!-\"$-~]+$",
                         "description": "http(s) URL its DLR events are POSTed to, signed "
                                        "with its tenant's secret (docs/webhooks.md); not "
                                        "this daemon's API"},
    }, ("tenant_id", "source", "destination")),
    "Accepted": _obj({
        "message_id": {"type": "string"}, "operator_id": {"type": ["string", "null"]},
        "parts": {"type": "integer"}, "duplicate": {"type": "boolean"},
    }, ("message_id", "parts", "duplicate"), extra=True),
    "Lease": _obj({
        "sender": {"type": "string"}, "tenant_id": {"type": "string"},
        "kind": {"enum": ["MSISDN", "SHORT_CODE", "ALPHANUMERIC"]},
        "state": {"enum": ["ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED"]},
        "quarantine_until": NULLABLE_NUM,
    }, ("sender", "tenant_id", "kind", "state")),
    "LeaseIn": _obj({
        "sender": {"type": "string", "minLength": 1, "maxLength": 20,
                   "pattern": "^[A-Za-z0-9 +._&'\\-]+$"},
        "tenant_id": TENANT,
        "kind": {"enum": ["MSISDN", "SHORT_CODE", "ALPHANUMERIC"]},
        "state": {"enum": ["ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED"]},
        "quarantine_until": {"type": ["number", "null"], "minimum": 0, "maximum": 1e11},
    }, ("sender", "tenant_id")),
    "LeaseResult": _obj({
        "allowed": {"type": "boolean"}, "reason_code": {"enum": REASONS},
        "lease": {"anyOf": [_ref("Lease"), {"type": "null"}]},
    }, ("allowed", "reason_code", "lease")),
    "RuleOperator": _obj({
        "operator_id": OP_ID,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "failover_order": {"type": "integer", "minimum": 0, "maximum": 100},
    }, ("operator_id",)),
    "RuleIn": _obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000000,
                     "description": "lower runs first"},
        "tenant_id": {"anyOf": [TENANT, {"type": "null"}]},
        "prefix": {"anyOf": [DIGITS, {"type": "null"}]},
        "source": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
        "message_type": MESSAGE_TYPE,
        "active_from": {"type": ["number", "null"], "minimum": 0, "maximum": 1e11},
        "active_until": {"type": ["number", "null"], "minimum": 0, "maximum": 1e11},
        "enabled": {"type": "boolean"},
        "operators": {"type": "array", "minItems": 1, "maxItems": 50,
                      "items": _ref("RuleOperator")},
    }, ("name", "operators")),
    "Rule": _obj({
        "id": {"type": "integer"}, "name": {"type": "string"}, "priority": {"type": "integer"},
        "tenant_id": {"type": ["string", "null"]}, "prefix": {"type": ["string", "null"]},
        "source": {"type": ["string", "null"]}, "message_type": {"type": ["string", "null"]},
        "active_from": NULLABLE_NUM, "active_until": NULLABLE_NUM,
        "enabled": {"type": "boolean"},
        "operators": {"type": "array", "items": _ref("RuleOperator")},
    }, ("id", "name", "priority", "operators")),
    "Prefix": _obj({
        "prefix": DIGITS, "operator_id": OP_ID,
        "country_code": {"type": "string", "pattern": "^[0-9]{0,4}$"},
        "description": {"type": "string", "maxLength": 200},
    }, ("prefix", "operator_id")),
    "SelectIn": _obj({
        "destination": E164, "tenant_id": TENANT,
        "source": {"type": ["string", "null"], "minLength": 1, "maxLength": 20},
        "message_type": MESSAGE_TYPE,
    }, ("destination", "tenant_id")),
    "Candidate": _obj({
        "operator_id": {"type": "string"}, "rule_id": {"type": ["integer", "null"]},
        "failover_order": {"type": ["integer", "null"]}, "weight": {"type": ["integer", "null"]},
        "taken": {"type": "boolean"}, "reason": {"type": "string"},
    }, ("operator_id", "taken", "reason")),
    "Decision": _obj({
        "operator_id": {"type": ["string", "null"]},
        "rule": {"anyOf": [_ref("Rule"), {"type": "null"}]},
        "prefix": {"anyOf": [_ref("Prefix"), {"type": "null"}]},
        "reason": {"type": "string"},
        "candidates": {"type": "array", "items": _ref("Candidate")},
        "dry_run": {"type": "boolean"},
    }, ("operator_id", "rule", "prefix", "candidates", "dry_run")),
    "DeadWebhook": _obj({
        "id": {"type": "integer", "description": "the X-Smppd-Delivery id"},
        "kind": {"enum": ["dlr", "mo"]}, "tenant_id": {"type": "string"},
        "url": {"type": ["string", "null"], "description": "the message's callback_url "
                "without credentials or query; null: the tenant's"},
        "attempts": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
        "created_at": {"type": "number"}, "dead_at": {"type": ["number", "null"]},
        "event": OPEN_OBJECT,
    }, ("id", "kind", "tenant_id", "url", "attempts", "last_error", "created_at", "dead_at",
        "event")),
}


def _asset(summary: str, media_type: str) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": {
        "description": "OK", "content": {media_type: {"schema": {"type": "string"}}}}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM = {"description": "problem", "content": {"application/problem+json": {
    "schema": _ref("Problem")}}}


LEASE_DENIED = {"description": "403: a sender not leased (or the token's tenants); 503: "
                               "the lease could not be checked or the daemon cannot take "
                               "messages now", "content": {"application/problem+json": {
                                   "schema": _ref("Problem")}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": schema or {"type": "string", "minLength": 1}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000})
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Remembered 48 h per caller (the token and the request's tenants): the "
                   "same request again is answered with the first one's results "
                   "(duplicate: true) and stores nothing; another request under the key "
                   "is a 409 naming Idempotency-Key.",
    "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"}}
OPERATOR_PARAM = _path_param("id")

# (method, path) -> operation (without the generic problem responses and security)
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {"summary": "Liveness", "responses": {"200": _json(OPEN_OBJECT)}},
    ("GET", "/readyz"): {"summary": "Readiness: a bind up and the store (and NATS, when "
                                    "used) answering",
                         "description": "A field per dependency the mode uses (store, "
                                        "redis, nats, vault): ok, unreachable, timeout or "
                                        "sealed; required lists those readiness waits for. "
                                        "Redis and Vault are reported only: the daemon "
                                        "works on without them.",
                         "responses": {"200": _json(OPEN_OBJECT),
                                       "503": _json(OPEN_OBJECT, "not ready")}},
    ("GET", "/metrics"): {"summary": "Prometheus metrics (open unless api.metrics_public = false)",
                          "responses": {"200": {"description": "text exposition", "content": {
                              "text/plain": {"schema": {"type": "string"}}}}}},
    ("GET", "/v1/openapi.json"): {"summary": "This document",
                                  "responses": {"200": _json(OPEN_OBJECT)}},
    ("GET", "/"): _asset("The live status page (HTML; its data is GET /v1/status)",
                         "text/html"),
    ("GET", "/status"): _asset("The live status page (same as /)", "text/html"),
    ("GET", "/status/status.css"): _asset("The status page's style sheet", "text/css"),
    ("GET", "/status/status.js"): _asset("The status page's script", "text/javascript"),
    ("GET", "/v1/status"): {
        "summary": "What the status page shows: operators and binds, rates, queues, "
                   "unmatched receipts, the last errors",
        "description": "Operators and binds as GET /v1/operators shows them, with the "
                       "submit and receipt rates per second over the last "
                       "rate_window_seconds; errors are the last WARNING-or-worse log "
                       "records, newest first. you.operate tells whether the caller may "
                       "pause, resume and rebind.",
        "responses": {"200": _json(_ref("Status"))}},
    ("GET", "/v1/operators"): {
        "summary": "Operators with their binds",
        "responses": {"200": _json(_obj({"operators": {"type": "array",
                                                       "items": _ref("Operator")}},
                                        ("operators",)))}},
    ("GET", "/v1/operators/{id}"): {"summary": "One operator", "parameters": [OPERATOR_PARAM],
                                    "responses": {"200": _json(_ref("Operator"))}},
    ("PATCH", "/v1/operators/{id}"): {
        "summary": "Change TPS and/or window at runtime",
        "description": "Takes effect at once without dropping binds. Runtime only: a "
                       "config reload or a restart restores the configured values; write "
                       "them to the config file to keep them.",
        "parameters": [OPERATOR_PARAM],
        "requestBody": _body({**_obj({"tps": {"type": "number", "minimum": 0.001,
                                              "maximum": 100000},
                                      "window": {"type": "integer", "minimum": 1,
                                                 "maximum": 10000}}),
                              "minProperties": 1}),
        "responses": {"200": _json(_ref("Operator"))}},
    ("POST", "/v1/operators/{id}/pause"): {
        "summary": "Stop sending; binds stay up and receipts keep flowing",
        "parameters": [OPERATOR_PARAM], "responses": {"200": _json(_ref("Operator"))}},
    ("POST", "/v1/operators/{id}/resume"): {
        "summary": "Send again", "parameters": [OPERATOR_PARAM],
        "responses": {"200": _json(_ref("Operator"))}},
    ("POST", "/v1/operators/{id}/rebind"): {
        "summary": "Rebind every session, one at a time", "parameters": [OPERATOR_PARAM],
        "responses": {"200": _json(_ref("Operator"))}},
    ("POST", "/v1/operators/{id}/credentials/reload"): {
        "summary": "Read the operator's credentials from Vault now; a new version rebinds "
                   "make-before-break", "parameters": [OPERATOR_PARAM],
        "responses": {"200": _json(_ref("Operator")),
                      "409": {"description": "the operator's credentials are not in Vault"}}},
    ("GET", "/v1/operators/{id}/binds/{bind}"): {
        "summary": "One bind's detail", "parameters": [OPERATOR_PARAM, _path_param("bind")],
        "responses": {"200": _json(_ref("Bind"))}},
    ("POST", "/v1/messages"): {
        "summary": "Submit one message (lease-checked; routed by SelectOperator when no "
                   "operator_id is given)",
        "description": "A message_id already stored answers the original (duplicate: "
                       "true) when the message is the same, 409 when it is not. A sender "
                       "ValidateLease denies is a 403 with its reason_code, naming source "
                       "(tenant_id for WRONG_TENANT), and nothing is stored; 503 with "
                       "Retry-After when the lease could not be checked (UNAVAILABLE). A "
                       "URL over 8 KB anywhere is a 414.",
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": _body(_ref("MessageIn")),
        "responses": {"202": _json(_ref("Accepted"), "accepted"), "403": LEASE_DENIED,
                      "503": LEASE_DENIED}},
    ("POST", "/v1/messages/bulk"): {
        "summary": "Submit up to 1000 messages (all or none: one bad message refuses the "
                   "request)",
        "description": "Senders ValidateLease denies refuse the whole request, nothing "
                       "stored: a 403 whose errors name each messages[i].source (or "
                       "messages[i].tenant_id for WRONG_TENANT) and whose denied lists "
                       "each one with its reason_code; a 503 with Retry-After when every "
                       "denial is UNAVAILABLE.",
        "parameters": [IDEMPOTENCY_KEY],
        "requestBody": _body(_obj({"messages": {"type": "array", "minItems": 1,
                                                "maxItems": 1000, "items": _ref("MessageIn")}},
                                  ("messages",), extra=True)),  # other keys are ignored
        "responses": {"202": _json(_obj({"accepted": {"type": "array",
                                                      "items": _ref("Accepted")}},
                                        ("accepted",)), "accepted"),
                      "403": LEASE_DENIED, "503": LEASE_DENIED}},
    ("GET", "/v1/messages/{id}"): {"summary": "A message's state and parts",
                                   "parameters": [_path_param("id")],
                                   "responses": {"200": _json(OPEN_OBJECT)}},
    ("GET", "/v1/events"): {
        "summary": "DLR or MO events after a cursor",
        "description": "For a token limited to tenants: the events of its tenants' "
                       "messages (no MO: an MO message has no tenant).",
        "parameters": [_query("kind", {"enum": ["dlr", "mo"]}),
                       _query("tenant_id", TENANT),
                       _query("after", {"type": "integer", "minimum": 0,
                                        "maximum": 2**63 - 1}),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
        "responses": {"200": _json(_obj({"events": {"type": "array", "items": OPEN_OBJECT}},
                                        ("events",)))}},
    ("POST", "/v1/admin/reload"): {"summary": "Re-read the config file",
                                   "responses": {"200": _json(OPEN_OBJECT)}},
    ("PUT", "/v1/admin/log-level"): {
        "summary": "Set the log level",
        "requestBody": _body(_obj({"level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR",
                                                      "CRITICAL"]}}, ("level",), extra=True)),
        "responses": {"200": _json(OPEN_OBJECT)}},
    ("POST", "/v1/routing/select"): {
        "summary": "SelectOperator (a dry run: changes nothing)",
        "requestBody": _body(_ref("SelectIn")),
        "responses": {"200": _json(_ref("Decision"))}},
    ("POST", "/v1/leases/validate"): {
        "summary": "ValidateLease (fail-closed: UNAVAILABLE and 503 when neither cache nor "
                   "database answers)",
        "requestBody": _body(_obj({"sender": {"type": "string", "minLength": 1,
                                              "maxLength": 20}, "tenant_id": TENANT},
                                  ("sender", "tenant_id"))),
        "responses": {"200": _json(_ref("LeaseResult")),
                      "503": _json(_ref("LeaseResult"), "UNAVAILABLE: denied")}},
    ("POST", "/v1/cache/invalidate"): {
        "summary": "Drop cached lease answers and/or reload routing (also on NATS "
                   "num.cache.invalidate.v1)",
        "requestBody": _body({**_obj({"senders": {"type": "array", "maxItems": 10000,
                                                  "items": {"type": "string"}},
                                      "all": {"type": "boolean"},
                                      "routing": {"type": "boolean"}}),
                              "anyOf": [{"required": ["senders"],
                                         "properties": {"senders": {"minItems": 1}}},
                                        {"required": ["all"],
                                         "properties": {"all": {"const": True}}},
                                        {"required": ["routing"],
                                         "properties": {"routing": {"const": True}}}]}),
        "responses": {"200": _json(_obj({"invalidated": OPEN_OBJECT}, ("invalidated",)))}},
    ("GET", "/v1/admin/rules"): {
        "summary": "Routing rules",
        "responses": {"200": _json(_obj({"rules": {"type": "array", "items": _ref("Rule")}},
                                        ("rules",)))}},
    ("POST", "/v1/admin/rules"): {"summary": "Create a rule",
                                  "requestBody": _body(_ref("RuleIn")),
                                  "responses": {"201": _json(_ref("Rule"), "created")}},
    ("GET", "/v1/admin/rules/{id}"): {"summary": "One rule",
                                      "parameters": [_path_param("id")],
                                      "responses": {"200": _json(_ref("Rule"))}},
    ("PUT", "/v1/admin/rules/{id}"): {"summary": "Replace a rule and its operators",
                                      "parameters": [_path_param("id")],
                                      "requestBody": _body(_ref("RuleIn")),
                                      "responses": {"200": _json(_ref("Rule"))}},
    ("DELETE", "/v1/admin/rules/{id}"): {"summary": "Delete a rule",
                                         "parameters": [_path_param("id")],
                                         "responses": {"200": _json(_ref("Rule"))}},
    ("GET", "/v1/admin/prefixes"): {
        "summary": "Destination prefixes",
        "parameters": [_query("starts_with", {"type": "string", "pattern": "^[0-9]{0,15}$"}),
                       LIMIT],
        "responses": {"200": _json(_obj({"prefixes": {"type": "array",
                                                      "items": _ref("Prefix")}},
                                        ("prefixes",)))}},
    ("POST", "/v1/admin/prefixes"): {"summary": "Create or replace a prefix",
                                     "requestBody": _body(_ref("Prefix")),
                                     "responses": {"200": _json(_ref("Prefix"))}},
    ("DELETE", "/v1/admin/prefixes/{prefix}"): {
        "summary": "Delete a prefix", "parameters": [_path_param("prefix")],
        "responses": {"200": _json(_obj({"deleted": {"type": "string"}}, ("deleted",)))}},
    ("GET", "/v1/admin/leases"): {
        "summary": "Sender leases",
        "parameters": [_query("tenant_id", {"type": "string"}), LIMIT],
        "responses": {"200": _json(_obj({"leases": {"type": "array", "items": _ref("Lease")}},
                                        ("leases",)))}},
    ("POST", "/v1/admin/leases"): {"summary": "Create or replace a lease (invalidates its "
                                              "cache entry)",
                                   "requestBody": _body(_ref("LeaseIn")),
                                   "responses": {"200": _json(_ref("Lease"))}},
    ("GET", "/v1/admin/leases/{sender}"): {"summary": "One lease",
                                           "parameters": [_path_param("sender")],
                                           "responses": {"200": _json(_ref("Lease"))}},
    ("DELETE", "/v1/admin/leases/{sender}"): {
        "summary": "Delete a lease", "parameters": [_path_param("sender")],
        "responses": {"200": _json(_obj({"deleted": {"type": "string"}}, ("deleted",)))}},
    ("GET", "/v1/webhooks/dead"): {
        "summary": "Webhook deliveries given up ([webhooks] max_age passed), oldest first",
        "parameters": [_query("tenant_id", TENANT),
                       _query("after", {"type": "integer", "minimum": 0,
                                        "maximum": 2**63 - 1}),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
        "responses": {"200": _json(_obj({"dead": {"type": "array",
                                                  "items": _ref("DeadWebhook")}},
                                        ("dead",)))}},
    ("POST", "/v1/webhooks/dead/{id}/replay"): {
        "summary": "Deliver a dead webhook again: due now, its attempts and age from zero",
        "parameters": [_path_param("id", {"type": "string", "pattern": "^[0-9]{1,18}$"})],
        "responses": {"200": _json(_obj({"replayed": {"type": "integer"}}, ("replayed",)))}},
}

OPEN_PATHS = {"/healthz", "/readyz", "/v1/openapi.json", "/", "/status",
              "/status/status.css", "/status/status.js"}


def _roles(method: str, path: str) -> tuple[str, ...]:
    for m, p, _, roles in ROUTES:
        if (m, p) == (method, path):
            return roles
    return BASE_ROLES.get((method, path), ("read",) if method == "GET" else ("admin",))


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in OPERATIONS.items():
        op = copy.deepcopy(op)
        op["operationId"] = (method.lower() + path.replace("/", "_").replace("{", "")
                             .replace("}", "").replace(".", "_").replace("-", "_"))
        responses = op["responses"]
        for code in ("400", "404", "409", "413", "414", "415", "422", "503"):
            responses.setdefault(code, PROBLEM)
        if path not in OPEN_PATHS and path != "/metrics":
            op["security"] = [{"bearer": []}]
            op["x-roles"] = list(_roles(method, path))
            responses.setdefault("401", PROBLEM)
            responses.setdefault("403", PROBLEM)
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "smppd control API", "version": "1",
                 "description": "Bind management, messages, SelectOperator, ValidateLease, "
                                "cache invalidation and admin of routing data. Bearer tokens "
                                "with roles read, submit, operate, admin (admin implies all, "
                                "operate implies read); with no tokens configured the API is "
                                "open. A read or submit token may be limited to tenants: "
                                "outside them submits, message reads, lease and routing "
                                "checks are 403 (naming tenant_id) and events are those of "
                                "its tenants' messages; operate and admin tokens are global. "
                                "Errors are RFC 9457 problem details naming the field; a "
                                "dependency that is away (the store, Redis) is a 503 with "
                                "Retry-After."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
