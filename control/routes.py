"""The control API's one route table: each route declared once with its method, path,
handler, roles, request and response models, tags and the errors it can answer.

aiohttp's routes (``add_routes``), the roles the auth middleware asks for
(``roles_for``) and the OpenAPI document (control/openapi.py) all come from ``ROUTES``.
Errors the middleware answers for every route (414 for a URL over 8 KB; 401 and 403
where a role is needed) are added by the document, not written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from control import handlers as h
from control import schemas as s
from control.data import LeaseIn, PrefixIn, RuleIn
from control.handlers import Handler
from control.problems import MAX_BODY, MAX_DEPTH

OPEN: tuple[str, ...] = ()
READ = ("read",)
SUBMIT = ("submit",)
OPERATE = ("operate",)
ADMIN = ("admin",)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: tuple[str, ...]  # any one suffices; () is open to anyone
    summary: str
    tags: tuple[str, ...]
    response: type[BaseModel] | str  # the success body: a model, or a text media type
    status: int = 200
    request: type[BaseModel] | None = None  # the JSON body
    errors: Mapping[int, str] = field(default_factory=dict)  # problem documents
    # Answers other than the success with a JSON body of their own (not a problem).
    answers: Mapping[int, tuple[str, type[BaseModel]]] = field(default_factory=dict)
    description: str = ""
    parameters: tuple[dict[str, Any], ...] = ()  # query and header parameters
    path_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # Open unless [api] metrics_public = false, when ``roles`` apply.
    public_by_config: bool = False


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


# The errors of the shared machinery, merged into each route that uses it.
BODY = {400: f"malformed JSON, or nested deeper than {MAX_DEPTH} levels",
        413: f"the body is over {MAX_BODY // 2**20} MiB",
        415: "Content-Type is not application/json",
        422: "the body is not valid: errors names each field"}
PLANE = {503: "the control plane is not running, or its database or cache is away "
              "(Retry-After)"}
STORE = {503: "the store is unreachable (Retry-After)"}
TENANT_403 = "the token may not act for this tenant_id"
LEASE_DENIED = ("a sender not leased (or outside the token's tenants), nothing "
                "stored; the problem's denied lists each with its reason_code")
LEASE_503 = ("the lease could not be checked (UNAVAILABLE), the daemon cannot take "
             "messages now or the store is away: retry after Retry-After")
SUBMIT_409 = ("a message_id already stored for a different message (or twice in the "
              "request), or an Idempotency-Key used by another request")
UNKNOWN_OP = {409: "names an operator the daemon does not run (or one twice)"}
NO_OPERATOR = {404: "no such operator"}

TENANT = {"type": "string", "pattern": s.TENANT}
CURSOR = _query("after", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1})
PAGE = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000})
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Remembered 48 h per caller (the token and the request's tenants): the "
                   "same request again is answered with the first one's results "
                   "(duplicate: true) and stores nothing; another request under the key "
                   "is a 409 naming Idempotency-Key.",
    "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"}}
BAD_KEY = {400: f"{BODY[400]}, or an Idempotency-Key that is not 1 to 128 visible ASCII "
                "characters"}


def _action(action: h.Action, path: str, summary: str,
            errors: Mapping[int, str] = NO_OPERATOR) -> Route:
    return Route("POST", "/v1/operators/{id}/" + path, h.operator_action(action), OPERATE,
                 summary, ("operators",), s.Operator, errors=errors)


def _asset(path: str, summary: str, media_type: str) -> Route:
    return Route("GET", path, h.status_asset, OPEN, summary, ("status page",), media_type)


ROUTES: list[Route] = [
    # ------------------------------------------------------------------ health, metrics
    Route("GET", "/healthz", h.healthz, OPEN, "Liveness", ("health",), s.Health),
    Route("GET", "/readyz", h.readyz, OPEN,
          "Readiness: a bind up and the store (and NATS, when used) answering",
          ("health",), s.Readiness,
          answers={503: ("not ready", s.Readiness)},
          description="A field per dependency the mode uses (store, redis, nats, vault): "
                      "ok, unreachable, timeout or sealed; required lists those readiness "
                      "waits for. Redis and Vault are reported only: the daemon works on "
                      "without them."),
    Route("GET", "/metrics", h.metrics, READ,
          "Prometheus metrics (open unless api.metrics_public = false)", ("health",),
          "text/plain", public_by_config=True),
    Route("GET", "/v1/openapi.json", h.get_openapi, OPEN, "This document", ("meta",),
          s.Document),
    # ------------------------------------------------------------------ status page
    _asset("/", "The live status page (HTML; its data is GET /v1/status)", "text/html"),
    _asset("/status", "The live status page (same as /)", "text/html"),
    _asset("/status/status.css", "The status page's style sheet", "text/css"),
    _asset("/status/status.js", "The status page's script", "text/javascript"),
    Route("GET", "/v1/status", h.get_status, READ,
          "What the status page shows: operators and binds, rates, queues, unmatched "
          "receipts, the last errors", ("status page",), s.Status,
          description="Operators and binds as GET /v1/operators shows them, with the "
                      "submit and receipt rates per second over the last "
                      "rate_window_seconds; errors are the last WARNING-or-worse log "
                      "records, newest first. you.operate tells whether the caller may "
                      "pause, resume and rebind."),
    # ------------------------------------------------------------------ operators
    Route("GET", "/v1/operators", h.list_operators, READ, "Operators with their binds",
          ("operators",), s.OperatorList),
    Route("GET", "/v1/operators/{id}", h.get_operator, READ, "One operator", ("operators",),
          s.Operator, errors=NO_OPERATOR),
    Route("PATCH", "/v1/operators/{id}", h.patch_operator, OPERATE,
          "Change TPS and/or window at runtime", ("operators",), s.Operator,
          request=s.OperatorPatch, errors={**BODY, **NO_OPERATOR},
          description="Takes effect at once without dropping binds. Runtime only: a "
                      "config reload or a restart restores the configured values; write "
                      "them to the config file to keep them. A change the operator's "
                      "config would refuse is a 422."),
    _action("pause", "pause", "Stop sending; binds stay up and receipts keep flowing"),
    _action("resume", "resume", "Send again"),
    _action("rebind", "rebind", "Rebind every session, one at a time"),
    _action("reload_credentials", "credentials/reload", "Read the operator's credentials "
            "from Vault now; a new version rebinds make-before-break",
            errors={**NO_OPERATOR, 409: "the operator's credentials are not in Vault",
                    503: "Vault could not be read (Retry-After)"}),
    Route("GET", "/v1/operators/{id}/binds/{bind}", h.get_bind, READ, "One bind's detail",
          ("operators",), s.Bind, errors={404: "no such operator or bind"}),
    # ------------------------------------------------------------------ messages, events
    Route("POST", "/v1/messages", h.post_message, SUBMIT,
          "Submit one message (lease-checked; routed by SelectOperator when no "
          "operator_id is given)", ("messages",), s.Accepted, status=202,
          request=s.MessageIn,
          errors={**BODY, **BAD_KEY, 403: LEASE_DENIED, 409: SUBMIT_409, 503: LEASE_503},
          parameters=(IDEMPOTENCY_KEY,),
          description="A message_id already stored answers the original (duplicate: "
                      "true) when the message is the same, 409 when it is not. A sender "
                      "ValidateLease denies is a 403 with its reason_code, naming source "
                      "(tenant_id for WRONG_TENANT), and nothing is stored; 503 with "
                      "Retry-After when the lease could not be checked (UNAVAILABLE). A "
                      "URL over 8 KB anywhere is a 414."),
    Route("POST", "/v1/messages/bulk", h.post_bulk, SUBMIT,
          "Submit up to 1000 messages (all or none: one bad message refuses the request)",
          ("messages",), s.BulkAccepted, status=202, request=s.BulkIn,
          errors={**BODY, **BAD_KEY, 403: LEASE_DENIED, 409: SUBMIT_409 + "; accepted "
                  "lists what a request that raced another did store", 503: LEASE_503,
                  413: f"{BODY[413]}, or has more than {s.MAX_BULK} messages"},
          parameters=(IDEMPOTENCY_KEY,),
          description="Senders ValidateLease denies refuse the whole request, nothing "
                      "stored: a 403 whose errors name each messages[i].source (or "
                      "messages[i].tenant_id for WRONG_TENANT) and whose denied lists "
                      "each one with its reason_code; a 503 with Retry-After when every "
                      "denial is UNAVAILABLE."),
    Route("GET", "/v1/messages/{id}", h.get_message, ("read", "submit"),
          "A message's state and parts", ("messages",), s.Message,
          errors={404: "no such message", 403: "the token may not act for the tenant of "
                  "this message", **STORE}),
    Route("GET", "/v1/events", h.list_events, READ, "DLR or MO events after a cursor",
          ("events",), s.EventList,
          errors={400: "kind, after or limit out of range (errors names it)",
                  403: TENANT_403, **STORE},
          parameters=(_query("kind", {"enum": list(h.EVENT_KINDS)}),
                      _query("tenant_id", TENANT), CURSOR, PAGE),
          description="For a token limited to tenants: the events of its tenants' "
                      "messages (no MO: an MO message has no tenant)."),
    # ------------------------------------------------------------------ admin of the daemon
    Route("POST", "/v1/admin/reload", h.post_reload, ADMIN, "Re-read the config file",
          ("admin",), s.Reloaded,
          errors={422: "the config is invalid (errors names each key); nothing changed",
                  503: "the config file could not be read (Retry-After)"}),
    Route("PUT", "/v1/admin/log-level", h.put_log_level, ADMIN, "Set the log level",
          ("admin",), s.LogLevel, request=s.LogLevelIn, errors=BODY),
    # ------------------------------------------------------------------ routing, leases
    Route("POST", "/v1/routing/select", h.post_select, ("read", "submit"),
          "SelectOperator (a dry run: changes nothing)", ("routing",), s.Decision,
          request=s.SelectIn, errors={**BODY, 403: TENANT_403, **PLANE}),
    Route("POST", "/v1/leases/validate", h.post_validate, ("read", "submit"),
          "ValidateLease (fail-closed: UNAVAILABLE and 503 when neither cache nor "
          "database answers)", ("leases",), s.LeaseResult, request=s.ValidateIn,
          errors={**BODY, 403: TENANT_403, 503: "the control plane is not running"},
          answers={503: ("UNAVAILABLE: denied", s.LeaseResult)}),
    Route("POST", "/v1/cache/invalidate", h.post_invalidate, OPERATE,
          "Drop cached lease answers and/or reload routing (also on NATS "
          "num.cache.invalidate.v1)", ("leases", "routing"), s.Invalidated,
          request=s.InvalidateIn, errors={**BODY, **PLANE}),
    # ------------------------------------------------------------------ admin of routing data
    Route("GET", "/v1/admin/rules", h.list_rules, ADMIN, "Routing rules", ("routing",),
          s.RuleList, errors=PLANE),
    Route("POST", "/v1/admin/rules", h.create_rule, ADMIN, "Create a rule", ("routing",),
          s.Rule, status=201, request=RuleIn, errors={**BODY, **UNKNOWN_OP, **PLANE}),
    Route("GET", "/v1/admin/rules/{id}", h.get_rule, ADMIN, "One rule", ("routing",), s.Rule,
          errors={404: "no such rule", **PLANE}),
    Route("PUT", "/v1/admin/rules/{id}", h.put_rule, ADMIN,
          "Replace a rule and its operators", ("routing",), s.Rule, request=RuleIn,
          errors={**BODY, 404: "no such rule", **UNKNOWN_OP, **PLANE}),
    Route("DELETE", "/v1/admin/rules/{id}", h.delete_rule, ADMIN, "Delete a rule",
          ("routing",), s.Rule, errors={404: "no such rule", **PLANE}),
    Route("GET", "/v1/admin/prefixes", h.list_prefixes, ADMIN, "Destination prefixes",
          ("routing",), s.PrefixList,
          errors={400: "starts_with or limit out of range (errors names it)", **PLANE},
          parameters=(_query("starts_with", {"type": "string", "pattern": "^[0-9]{0,15}$"}),
                      LIMIT)),
    Route("POST", "/v1/admin/prefixes", h.put_prefix, ADMIN, "Create or replace a prefix",
          ("routing",), s.Prefix, request=PrefixIn, errors={**BODY, **UNKNOWN_OP, **PLANE}),
    Route("DELETE", "/v1/admin/prefixes/{prefix}", h.delete_prefix, ADMIN, "Delete a prefix",
          ("routing",), s.Deleted, errors={404: "no such prefix", **PLANE}),
    Route("GET", "/v1/admin/leases", h.list_leases, ADMIN, "Sender leases", ("leases",),
          s.LeaseList, errors={400: "limit out of range", **PLANE},
          parameters=(_query("tenant_id", {"type": "string"}), LIMIT)),
    Route("POST", "/v1/admin/leases", h.put_lease, ADMIN,
          "Create or replace a lease (invalidates its cache entry)", ("leases",), s.Lease,
          request=LeaseIn, errors={**BODY, **PLANE}),
    Route("GET", "/v1/admin/leases/{sender}", h.get_lease, ADMIN, "One lease", ("leases",),
          s.Lease, errors={404: "no such lease", **PLANE}),
    Route("DELETE", "/v1/admin/leases/{sender}", h.delete_lease, ADMIN, "Delete a lease",
          ("leases",), s.Deleted, errors={404: "no such lease", **PLANE}),
    # ------------------------------------------------------------------ webhooks
    Route("GET", "/v1/webhooks/dead", h.list_dead_webhooks, OPERATE,
          "Webhook deliveries given up ([webhooks] max_age passed), oldest first",
          ("webhooks",), s.DeadList,
          errors={400: "tenant_id, after or limit out of range (errors names it)", **STORE},
          parameters=(_query("tenant_id", TENANT), CURSOR, PAGE)),
    Route("POST", "/v1/webhooks/dead/{id}/replay", h.replay_dead_webhook, OPERATE,
          "Deliver a dead webhook again: due now, its attempts and age from zero",
          ("webhooks",), s.Replayed, errors={404: "no such dead delivery", **STORE},
          path_schemas={"id": {"type": "string", "pattern": "^[0-9]{1,18}$"}}),
]

_BY_KEY = {(r.method, r.path): r for r in ROUTES}


def route_of(method: str, path: str) -> Route | None:
    """The route of a method (HEAD as GET) and a path template, if declared."""
    return _BY_KEY.get(("GET" if method == "HEAD" else method, path))


def roles_for(method: str, path: str, metrics_public: bool) -> tuple[str, ...]:
    """The roles a request needs; what no route declares (a 405 on a known path)
    needs read for GET and admin for anything else."""
    route = route_of(method, path)
    if route is None:
        return READ if method in ("GET", "HEAD") else ADMIN
    if route.public_by_config and metrics_public:
        return OPEN
    return route.roles


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        if route.method == "GET":  # and HEAD, which needs what GET needs
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
