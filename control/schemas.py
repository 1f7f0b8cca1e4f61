"""The API's bodies as pydantic models: what handlers parse requests with, and the
shapes of their answers. The OpenAPI document's schemas are generated from these
(control/openapi.py), so a constraint written here is the one the document shows.

Response models describe what handlers return (dicts built by the view and the
control plane); a field typed ``X | Absent`` may be left out but is never null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator
from pydantic.json_schema import SkipJsonSchema

Absent = SkipJsonSchema[None]  # a member that may be missing; the schema shows no null
TENANT = r"^[A-Za-z0-9._\-]{1,64}$"
E164 = r"^\+?[1-9][0-9]{6,14}$"
DIGITS = r"^[0-9]{1,15}$"
OP_ID = r"^[a-z0-9_-]{1,64}$"
REASON = Literal["NOT_REGISTERED", "WRONG_TENANT", "LEASE_SUSPENDED", "QUARANTINE_ACTIVE",
                 "UNAVAILABLE"]
MESSAGE_TYPE = Literal["transactional", "promotional", "otp", "service"]
OPERATOR_STATE = Literal["bound", "unbound", "paused"]
LEASE_KIND = Literal["MSISDN", "SHORT_CODE", "ALPHANUMERIC"]
LEASE_STATE = Literal["ACTIVE", "SUSPENDED", "QUARANTINED", "RELEASED"]
LOG_LEVEL = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
EVENT_KIND = Literal["dlr", "mo"]
MAX_BULK = 1000  # messages in one POST /v1/messages/bulk; more is a 413
# A sender: E.164 (9 to 15 digits), a short code (3 to 8 digits) or alphanumeric (up to
# 11 characters, not all digits).
SOURCE_FORMS: list[JsonValue] = [
    {"pattern": r"^\+?[1-9][0-9]{8,14}$"}, {"pattern": r"^[0-9]{3,8}$"},
    {"pattern": r"^[A-Za-z0-9 ._&'\-]{0,10}[A-Za-z ._&'\-][A-Za-z0-9 ._&'\-]{0,10}$",
     "maxLength": 11}]


class Closed(BaseModel):
    """An answer with exactly these members."""
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """An answer with these members and maybe more."""
    model_config = ConfigDict(extra="allow")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


# --------------------------------------------------------------------------- problems


class FieldError(Closed):
    field: str
    message: str


class LeaseDenied(Closed):
    index: int = Field(description="the message's place in the request")
    field: str = Field(description="source, or tenant_id for WRONG_TENANT "
                                   "(messages[i]. in a bulk)")
    source: str
    tenant_id: str
    reason_code: REASON


class Problem(Closed):
    type: str
    title: str
    status: int
    detail: str | Absent = None
    errors: list[FieldError] | Absent = None
    accepted: list[str] | Absent = Field(
        default=None, description="409 of a bulk that raced another request for a "
                                  "message id: the ids this request did accept")
    denied: list[LeaseDenied] | Absent = Field(
        default=None, description="403 (503: every one UNAVAILABLE) of a submit: each "
                                  "message whose sender ValidateLease denied; nothing of "
                                  "the request was stored")
    reason_code: REASON | Absent = Field(
        default=None, description="a single message's submit refused by ValidateLease")


# --------------------------------------------------------------------------- health, meta


class Health(Open):
    status: Literal["ok"]


class Readiness(Open):
    """A member per dependency the mode uses (store, redis, nats, vault)."""
    ready: bool


class Document(Open):
    openapi: str


class Reloaded(Open):
    reloaded: bool
    added: list[str] | Absent = Field(default=None, description="operators started")
    removed: list[str] | Absent = Field(default=None, description="operators stopped")
    retuned: dict[str, list[str]] | Absent = Field(
        default=None, description="operator id: the keys changed without a rebind")
    rebound: list[str] | Absent = Field(default=None, description="operators rebound")
    restart_required: list[str] | Absent = Field(
        default=None, description="changed sections that take a restart")
    failed_messages: int | Absent = None


class LogLevelIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keys are ignored
    level: LOG_LEVEL


class LogLevel(Open):
    level: LOG_LEVEL


# --------------------------------------------------------------------------- operators


class Bind(Open):
    bind: str
    state: str
    type: Literal["transmitter", "receiver", "transceiver"] | Absent = Field(
        default=None, description="bind_type, or this bind's entry of bind_types")
    host: str | Absent = None
    last_error_reason: str | None = Field(default=None, description="e.g. connect_failed, "
                                          "timeout, tls_failed, ESME_RINVPASWD")


class LearnedIdForms(BaseModel):
    submit_resp_id: Literal["hex"] | Absent = None
    receipt_id: Literal["decimal", "hex"] | Absent = None


class Operator(Open):
    id: str
    name: str | Absent = None
    state: OPERATOR_STATE
    binds_configured: int | Absent = None
    binds_up: int | Absent = None
    tps_limit: float
    window: int
    binds: list[Bind] | Absent = None
    learned_id_forms: LearnedIdForms | Absent = Field(
        default=None, description='id forms learned under "auto"')


class OperatorList(Closed):
    operators: list[Operator]


def _patch_schema(schema: dict[str, JsonValue]) -> None:
    """At least one member, none of them null (pydantic shows null for an Optional)."""
    schema["minProperties"] = 1
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for name, prop in properties.items():
        if isinstance(prop, dict) and isinstance(prop.get("anyOf"), list):
            kept = [s for s in prop.pop("anyOf") if s != {"type": "null"}]  # type: ignore[union-attr]
            properties[name] = {**(kept[0] if isinstance(kept[0], dict) else {}), **prop}


class OperatorPatch(Request):
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra=_patch_schema)

    # At least one message in 1,000 s: a smaller rate overflows the bucket's pacing.
    tps: float | None = Field(default=None, ge=0.001, le=100_000)
    window: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("tps", "window", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:  # left out is "unchanged"; null is not a value
            raise ValueError("a number, or leave the field out")
        return value


# --------------------------------------------------------------------------- status page


class StatusBind(Open):
    bind: str
    state: str
    host: str | None = None
    on_primary: bool | Absent = None
    window_in_use: int | Absent = None
    last_error: str | None = None
    last_error_since: float | None = Field(default=None, description="epoch seconds: when "
                                           "this failure began")


class StatusOperator(Open):
    id: str
    name: str | Absent = None
    state: OPERATOR_STATE
    tps_limit: float
    submit_rate: float
    receipt_rate: float
    queued: int | Absent = None
    spilled: int | Absent = None
    receipts_unmatched: int | Absent = None
    binds: list[StatusBind]


class StatusTotals(Closed):
    submit_rate: float
    receipt_rate: float
    tps_limit: float
    queued: float | Absent = None
    spilled: float | Absent = None
    in_flight: float | Absent = None
    unmatched: float | Absent = None
    receipts_held: float | Absent = None


class StatusError(Closed):
    at: str = Field(json_schema_extra={"format": "date-time"})
    level: str
    event: str | None = None
    operator: str | None = None
    bind: str | None = None
    message: str


class StatusCaller(Closed):
    name: str | None = None
    operate: bool


class Status(Closed):
    time: str = Field(json_schema_extra={"format": "date-time"})
    started_at: str | Absent = Field(default=None, json_schema_extra={"format": "date-time"})
    uptime_seconds: float | Absent = None
    rate_window_seconds: float | Absent = None
    totals: StatusTotals
    operators: list[StatusOperator]
    errors: list[StatusError]
    you: StatusCaller


# --------------------------------------------------------------------------- messages


class MessageIn(Closed):
    """The body of POST /v1/messages (the daemon validates it: smppd/intake/message.py)."""
    message_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\-]{1,64}$")] | Absent = None
    tenant_id: str = Field(pattern=TENANT)
    source: str = Field(json_schema_extra={"anyOf": SOURCE_FORMS})
    destination: str = Field(pattern=E164)
    text: str | Absent = None
    data: str | Absent = Field(default=None, description="base64, with data_coding")
    data_coding: Annotated[int, Field(ge=0, le=255)] | Absent = None
    operator_id: str | Absent = None
    registered_delivery: bool | Absent = None
    validity: Annotated[int, Field(ge=60, le=604800)] | Absent = None
    priority: Annotated[int, Field(ge=0, le=3)] | Absent = None
    callback_url: Annotated[str, Field(
        max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[!-\"$-~]+$")] | Absent = Field(
        default=None, description="http(s) URL its DLR events are POSTed to, signed with "
                                  "its tenant's secret (docs/webhooks.md); not this "
                                  "daemon's API")


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keys are ignored
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BULK)


class Accepted(Open):
    message_id: str
    operator_id: str | None = None
    parts: int
    duplicate: bool


class BulkAccepted(Closed):
    accepted: list[Accepted]


class Message(Open):
    """A message's state and parts, as the store keeps them (not its text)."""
    message_id: str
    state: str
    parts: list[dict[str, Any]] | Absent = None


class Event(Open):
    """A DLR or MO event: its cursor, kind and time, and the event's own members."""
    id: int = Field(description="pass the last one seen as after")
    kind: EVENT_KIND
    created_at: float


class EventList(Closed):
    events: list[Event]


# --------------------------------------------------------------------------- routing, leases


class SelectIn(Request):
    destination: str = Field(pattern=E164)
    tenant_id: str = Field(pattern=TENANT)
    source: str | None = Field(default=None, min_length=1, max_length=20)
    message_type: MESSAGE_TYPE | None = None


class ValidateIn(Request):
    sender: str = Field(min_length=1, max_length=20)
    tenant_id: str = Field(pattern=TENANT)


class InvalidateIn(Request):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"anyOf": [
        {"required": ["senders"], "properties": {"senders": {"minItems": 1}}},
        {"required": ["all"], "properties": {"all": {"const": True}}},
        {"required": ["routing"], "properties": {"routing": {"const": True}}}]})

    senders: list[str] = Field(default_factory=list, max_length=10_000)
    all: bool = False
    routing: bool = False


class Invalidated(Closed):
    invalidated: dict[str, Any]


class Lease(Closed):
    sender: str
    tenant_id: str
    kind: LEASE_KIND
    state: LEASE_STATE
    quarantine_until: float | None = None


class LeaseResult(Closed):
    allowed: bool
    reason_code: Literal["OK"] | REASON
    lease: Lease | None


class RuleOperator(Closed):
    operator_id: str = Field(pattern=OP_ID)
    weight: int = Field(ge=0, le=1_000_000)
    failover_order: int = Field(ge=0, le=100)


class Rule(Closed):
    id: int
    name: str
    priority: int
    tenant_id: str | None = None
    prefix: str | None = None
    source: str | None = None
    message_type: str | None = None
    active_from: float | None = None
    active_until: float | None = None
    enabled: bool | Absent = None
    operators: list[RuleOperator]


class Prefix(Closed):
    prefix: str = Field(pattern=DIGITS)
    operator_id: str = Field(pattern=OP_ID)
    country_code: str = Field(pattern=r"^[0-9]{0,4}$")
    description: str = Field(max_length=200)


class Candidate(Closed):
    operator_id: str
    rule_id: int | None = None
    failover_order: int | None = None
    weight: int | None = None
    taken: bool
    reason: str


class Decision(Closed):
    operator_id: str | None
    rule: Rule | None
    prefix: Prefix | None
    reason: str | Absent = None
    candidates: list[Candidate]
    dry_run: bool


class RuleList(Closed):
    rules: list[Rule]


class PrefixList(Closed):
    prefixes: list[Prefix]


class LeaseList(Closed):
    leases: list[Lease]


class Deleted(Closed):
    deleted: str


# --------------------------------------------------------------------------- webhooks


class DeadWebhook(Closed):
    id: int = Field(description="the X-Smppd-Delivery id")
    kind: EVENT_KIND
    tenant_id: str
    url: str | None = Field(description="the message's callback_url without credentials "
                                        "or query; null: the tenant's")
    attempts: int
    last_error: str | None
    created_at: float
    dead_at: float | None
    event: dict[str, Any]


class DeadList(Closed):
    dead: list[DeadWebhook]


class Replayed(Closed):
    replayed: int
