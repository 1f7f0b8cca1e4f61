"""Daemon configuration: a TOML file validated once, at load, into typed models.

`load_config(path)` reads the file, applies environment overrides, merges each
operator's keys over `[defaults]` over the built-in defaults and validates the
whole thing, cross-field rules included. Every problem found is reported at once
in a `ConfigError`, each under the dotted key it concerns (`operators.roshan.tps`).

Relative paths (`daemon.state_dir`, `store.path`, `vault.secret_id_file`) are kept
relative: they resolve against the daemon's current working directory, not the
config file's directory (systemd units set `WorkingDirectory=`).

Secrets (SMPP passwords, database/Redis/NATS URLs) are `SecretStr`: repr, str and
`model_dump` mask them, and no error message ever contains their value.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from smppd.protocol.constants import Npi, Status, Ton
from smppd.tls import TlsFileError, client_context, server_context

__all__ = [
    "DEFAULT_STATUS_TABLE",
    "ENV_OVERRIDES",
    "ApiSection",
    "AuthSection",
    "AuthToken",
    "Config",
    "ConfigError",
    "ConfigFileError",
    "DaemonSection",
    "LeasesSection",
    "NatsSection",
    "OperatorConfig",
    "OperatorSettings",
    "RedisSection",
    "RoutingSection",
    "StatusRule",
    "StoreSection",
    "VaultSection",
    "check_config_command",
    "load_config",
]

# SMPP v3.4 C-Octet String limits (without the terminating NUL).
MAX_SYSTEM_ID = 15
MAX_PASSWORD = 8
MAX_SYSTEM_TYPE = 12

# Environment variable -> (section, key) it overrides. Empty values are ignored.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "SMPPD_API_LISTEN": ("api", "listen"),
    "SMPPD_STORE_PATH": ("store", "path"),
    "SMPPD_STORE_DSN": ("store", "dsn"),
    "SMPPD_STATE_DIR": ("daemon", "state_dir"),
}


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """One or more configuration problems, each as (dotted key, message).

    `key` is the first problem's key ("" for file-level problems). str() lists every
    problem on its own line as `FILE: key: message`.
    """

    def __init__(self, file: str | Path, problems: list[tuple[str, str]]) -> None:
        self.file = str(file)
        self.problems = problems
        self.key = problems[0][0] if problems else ""
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = []
        for key, message in self.problems:
            lines.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")
        return "\n".join(lines)


class ConfigFileError(ConfigError):
    """The file is missing or unreadable (as opposed to invalid)."""


class _Problems(ValueError):
    """Raised by model validators: problems keyed by the fields involved.

    Each entry is (fields, message); the first field an operator set explicitly
    names the problem (see `_operator_key`). Pydantic keeps the exception object in
    the error's ctx, so `load_config` can unpack it.
    """

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{f[0]}: {m}" for f, m in problems))
        self.problems = problems


# --------------------------------------------------------------------------- field types


def _host_port(value: Any, allow_port_zero: bool) -> tuple[str, int]:
    if isinstance(value, tuple | list) and len(value) == 2:
        host, port = value
    elif isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"{value!r} is not host:port")
        port = int(port_text)
        if host.startswith("[") and host.endswith("]"):  # [::1]:2775
            host = host[1:-1]
    else:
        raise ValueError("must be a \"host:port\" string")
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ValueError(f"{value!r}: host is empty or has spaces")
    low = 0 if allow_port_zero else 1
    if not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"{value!r}: port must be {low}..65535")
    return host, port


HostPort = Annotated[tuple[str, int], BeforeValidator(lambda v: _host_port(v, False))]
ListenAddress = Annotated[tuple[str, int], BeforeValidator(lambda v: _host_port(v, True))]


def _digits(min_len: int, max_len: int) -> AfterValidator:
    def check(value: str) -> str:
        if not (value.isascii() and value.isdigit() and min_len <= len(value) <= max_len):
            size = f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"
            raise ValueError(f"must be {size} digits")
        return value

    return AfterValidator(check)


Prefix = Annotated[str, _digits(1, 15)]
Mcc = Annotated[str, _digits(3, 3)]
Mnc = Annotated[str, _digits(2, 3)]


def _operator_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", value):
        raise ValueError("must be lowercase letters, digits, '-' or '_'")
    return value


def _ton_or_auto(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in Ton._value2member_map_:
        return value
    raise ValueError(f"must be \"auto\" or a TON value {sorted(int(t) for t in Ton)}")


def _npi_or_auto(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in Npi._value2member_map_:
        return value
    raise ValueError(f"must be \"auto\" or an NPI value {sorted(int(n) for n in Npi)}")


def _ton(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in Ton._value2member_map_:
        return value
    raise ValueError(f"must be a TON value {sorted(int(t) for t in Ton)}")


def _npi(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in Npi._value2member_map_:
        return value
    raise ValueError(f"must be an NPI value {sorted(int(n) for n in Npi)}")


TonOrAuto = Annotated[Literal["auto"] | int, BeforeValidator(_ton_or_auto)]
NpiOrAuto = Annotated[Literal["auto"] | int, BeforeValidator(_npi_or_auto)]
TonValue = Annotated[int, BeforeValidator(_ton)]
NpiValue = Annotated[int, BeforeValidator(_npi)]


def _url_scheme(value: SecretStr | None, schemes: tuple[str, ...]) -> None:
    """Check a secret URL's scheme without ever echoing the URL."""
    if value is not None and not value.get_secret_value().startswith(schemes):
        raise ValueError("must start with " + " or ".join(schemes))


# --------------------------------------------------------------------------- status table


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class StatusRule:
    """What to do when a submit_sm_resp carries this command_status."""

    transient: bool
    retries: int = Field(default=5, ge=0)
    delay: float = Field(default=1.0, ge=0)  # seconds before the first retry


PERMANENT = StatusRule(False, 0, 0.0)

DEFAULT_STATUS_TABLE: dict[int, StatusRule] = {
    int(status): StatusRule(True, 5, 1.0)
    for status in (Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL, Status.ESME_RSYSERR,
                   Status.ESME_RX_T_APPN)
}


def _status_code(key: Any) -> int:
    """'0x58', '88' or 'ESME_RTHROTTLED' -> 0x58."""
    if isinstance(key, int) and not isinstance(key, bool):
        code = key
    elif isinstance(key, str) and key in Status.__members__:
        code = int(Status[key])
    elif isinstance(key, str) and re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", key):
        code = int(key, 0) if key[:2].lower() == "0x" else int(key)
    else:
        raise ValueError(f"{key!r} is not a command_status (write \"0x58\", \"88\" or "
                         "\"ESME_RTHROTTLED\")")
    if not 0 < code <= 0xFFFFFFFF:
        raise ValueError(f"{key!r}: command_status must be 1..0xFFFFFFFF")
    return code


# --------------------------------------------------------------------------- sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonSection(_Section):
    mode: Literal["embedded", "distributed"] = "embedded"
    state_dir: Path = Path("var")  # relative to the working directory
    drain_timeout: float = Field(default=10.0, gt=0)
    shadow: bool = False  # process and correlate, publish no DLR events


class ApiSection(_Section):
    listen: ListenAddress = ("127.0.0.1", 8080)  # port 0 = any free port (tests)
    metrics_public: bool = True
    access_log: bool = False  # a line per request (event http_access); needs a restart
    # HTTPS: the certificate (PEM, the key in it or in tls_key); with tls_client_ca
    # every client must present a certificate that CA signed (the platform's mTLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> ApiSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        for key in ("tls_key", "tls_client_ca"):
            if getattr(self, key) is not None and self.tls_cert is None:
                problems.append(((key,), "needs tls_cert (the API's own certificate)"))
        if not problems and self.tls_cert is not None:
            try:
                self.ssl_context()  # a file that cannot be used fails the load, not the start
            except TlsFileError as exc:
                problems.append(((exc.key,), exc.message))
        if problems:
            raise _Problems(problems)
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listener's TLS context; None: plain HTTP."""
        if self.tls_cert is None:
            return None
        return server_context(cert=self.tls_cert, key=self.tls_key, client_ca=self.tls_client_ca)


class StoreSection(_Section):
    kind: Literal["sqlite", "postgres"] = "sqlite"
    path: Path | None = None  # sqlite; None = {daemon.state_dir}/smppd.sqlite
    dsn: SecretStr | None = None  # postgres
    receipt_hold_seconds: float = Field(default=30.0, gt=0)
    # Submits answered but not yet stored with their SMSC id, at which sending stops
    # until half are: a crash resends at most this many (plus the windows).
    max_unrecorded: int = Field(default=10_000, ge=1)

    @field_validator("dsn", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> StoreSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.kind == "postgres" and self.dsn is None:
            problems.append((("dsn",), 'is required when kind = "postgres" '
                             "(or set SMPPD_STORE_DSN)"))
        try:
            if self.kind == "postgres":
                _url_scheme(self.dsn, ("postgresql://", "postgres://"))
        except ValueError as exc:
            problems.append((("dsn",), str(exc)))
        if problems:
            raise _Problems(problems)
        return self


class RedisSection(_Section):
    url: SecretStr  # may carry a password
    key_prefix: str = "smppd"  # every key this deployment writes starts with it
    # Replicas sharing each operator's TPS budget: with Redis unreachable each one
    # falls back to limit / replicas, so the budget holds through the outage.
    replicas: int = Field(default=2, ge=1)
    # Active/standby binds: a replica holds an operator's binds only while it owns the
    # lease {key_prefix}:leader:{operator_id} (see smppd.leader).
    standby: bool = False
    lease_time: float = Field(default=5.0, ge=0.5)  # seconds; renewed every lease_time / 3
    # The lease holder sends the operator's ACCEPTED messages that other replicas
    # accepted or a dead leader held: it looks every sweep_interval seconds, for rows
    # older than sweep_grace (younger ones may be mid-accept here).
    sweep_interval: float = Field(default=3.0, gt=0)
    sweep_grace: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RedisSection:
        try:
            _url_scheme(self.url, ("redis://", "rediss://", "unix://"))
        except ValueError as exc:
            raise _Problems([(("url",), str(exc))]) from None
        return self


class NatsSection(_Section):
    url: SecretStr  # may carry user:password; comma-separated for a cluster
    dispatch_stream: str = "SMPP_DISPATCH"  # holds smpp.operator.{operatorId}
    dlr_stream: str = "SMS_DLR"  # holds sms.dlr.inbound
    mo_stream: str = "SMS_MO"  # holds sms.mo.inbound
    # Subjects of the platform contract; override only to run beside another deployment.
    dispatch_subject: str = "smpp.operator"  # commands on {dispatch_subject}.{operatorId}
    invalid_subject: str = "smpp.dispatch.invalid"
    dlr_subject: str = "sms.dlr.inbound"
    mo_subject: str = "sms.mo.inbound"
    consumer: str = "smppd"  # durable pull consumer shared by every replica
    ack_wait: float = Field(default=30.0, gt=0)  # seconds before an unacked command is redelivered
    # Parts queued in memory (all operators) at which intake pauses: the rest of the
    # backlog waits in JetStream, so memory stays bounded however deep the stream is.
    max_queued: int = Field(default=50_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> NatsSection:
        for part in self.url.get_secret_value().split(","):
            try:
                _url_scheme(SecretStr(part.strip()), ("nats://", "tls://", "ws://", "wss://"))
            except ValueError as exc:
                raise _Problems([(("url",), str(exc))]) from None
        return self


class VaultSection(_Section):
    addr: str
    auth: Literal["approle", "token"] = "approle"
    role_id: str | None = None  # approle
    secret_id_file: Path | None = None  # approle; file holding the secret_id
    token_env: str = "VAULT_TOKEN"  # noqa: S105 -- a variable name, not a token
    mount: str = "secret"  # KV v2 mount point
    path_template: str = "smppd/operators/{operator_id}"  # for credentials = "vault"
    poll_interval: float = Field(default=30.0, gt=0)  # seconds between KV version checks

    @model_validator(mode="after")
    def _check(self) -> VaultSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        if not self.addr.startswith(("http://", "https://")):
            problems.append((("addr",), "must start with http:// or https://"))
        if self.auth == "approle":
            for key in ("role_id", "secret_id_file"):
                if getattr(self, key) is None:
                    problems.append(((key,), 'is required when auth = "approle"'))
        try:
            self.path_template.format(operator_id="x")
        except (KeyError, IndexError, ValueError):
            problems.append((("path_template",), "may only use the {operator_id} placeholder"))
        if problems:
            raise _Problems(problems)
        return self


class AuthToken(_Section):
    name: str = Field(min_length=1, max_length=64)  # for logs and audit; never the token
    sha256: Annotated[str, AfterValidator(lambda v: _sha256(v))]
    roles: list[Literal["read", "submit", "operate", "admin"]] = Field(min_length=1)
    # The tenants a read/submit token acts for (None: every tenant).
    tenants: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")]] | None = Field(
        default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> AuthToken:
        if self.tenants is not None and {"operate", "admin"} & set(self.roles):
            raise _Problems([(("tenants",), "operate and admin tokens are global:"
                              " list tenants on read or submit tokens only")])
        return self


def _min_tps(value: float) -> float:
    if value < MIN_TPS:  # a smaller rate overflows the token bucket's pacing
        raise ValueError(f"must be at least {MIN_TPS} (one message in 1,000 s)")
    return value


MIN_TPS = 0.001


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be the 64 hex digits of the token's SHA-256 digest")
    return value.lower()


class AuthSection(_Section):
    """Bearer tokens of the control API; none configured = the API is open."""

    tokens: list[AuthToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> AuthSection:
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise _Problems([(("tokens",), "token names must be unique")])
        return self


class RoutingSection(_Section):
    """Where the control data (routing rules, prefixes AND sender leases) lives."""

    source: Literal["sqlite", "postgres"] | None = None  # None: sqlite embedded, else postgres
    dsn: SecretStr | None = None  # postgres; defaults to store.dsn
    sqlite_path: Path | None = None  # None = {daemon.state_dir}/control.sqlite
    seed: bool = False  # load the MCC 412 seed at start (the demo)
    circuit_failures: int = Field(default=5, ge=1)  # failed submits in a row open it
    circuit_cooldown: float = Field(default=30.0, gt=0)  # seconds it stays open

    @model_validator(mode="after")
    def _check(self) -> RoutingSection:
        try:
            _url_scheme(self.dsn, ("postgresql://", "postgres://"))
        except ValueError as exc:
            raise _Problems([(("dsn",), str(exc))]) from None
        return self


class LeasesSection(_Section):
    """ValidateLease. Without a [leases] section the dispatch path checks no leases."""

    redis_url: SecretStr | None = None  # None: [redis].url if set, else an in-process cache
    redis_db: int = Field(default=7, ge=0, le=15)
    cache_ttl: float = Field(default=300.0, gt=0)
    negative_ttl: float = Field(default=30.0, gt=0)
    key_prefix: str = "smppd:lease:"
    enforce: bool = True  # false: check and count, but let denied messages through
    nats_invalidation: bool = True  # subscribe to num.cache.invalidate.v1 when [nats] is set

    @model_validator(mode="after")
    def _check(self) -> LeasesSection:
        try:
            _url_scheme(self.redis_url, ("redis://", "rediss://", "unix://"))
        except ValueError as exc:
            raise _Problems([(("redis_url",), str(exc))]) from None
        return self


# --------------------------------------------------------------------------- webhooks


class WebhooksSection(_Section):
    """Delivery of DLR and MO events to HTTP callbacks (smppd.webhooks)."""

    max_age: float = Field(default=86_400.0, gt=0)  # seconds retried, then a dead letter
    timeout: float = Field(default=10.0, gt=0, le=300)  # seconds per attempt, redirects included
    per_host: int = Field(default=8, ge=1, le=1000)  # requests at once to one receiver host
    in_flight: int = Field(default=256, ge=1, le=10_000)  # deliveries at once, all hosts
    backoff_min: float = Field(default=1.0, gt=0)  # first retry after about this (jittered)
    backoff_max: float = Field(default=600.0, gt=0)  # doubling stops here
    poll_interval: float = Field(default=1.0, gt=0)  # seconds between looks for due retries

    @model_validator(mode="after")
    def _check(self) -> WebhooksSection:
        if self.backoff_max < self.backoff_min:
            raise _Problems([(("backoff_max",), "must be at least backoff_min")])
        return self


MIN_SECRET = 16  # characters of a webhook secret


class TenantConfig(_Section):
    """A tenant's webhooks: a default callback_url for its DLRs (and its MO), the secret
    that signs them, and the destinations (short codes, numbers) whose MO are its."""

    id: str = Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")
    callback_url: str | None = None
    secret: SecretStr | None = None
    secret_env: str | None = None  # name of an environment variable, read at load
    mo_destinations: list[Annotated[str, Field(pattern=r"^\+?[0-9]{3,15}$")]] = Field(
        default_factory=list)

    _secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        from smppd.message import check_callback_url

        return None if value is None else check_callback_url(value)

    @field_validator("mo_destinations")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        return [d.lstrip("+") for d in value]

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TenantConfig:
        sources = [k for k in ("secret", "secret_env") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise _Problems([(("secret", "secret_env"), "exactly one of secret, secret_env "
                              "is required (webhooks are always signed)")])
        value = self.secret.get_secret_value() if self.secret is not None else None
        if self.secret_env is not None:
            value = (info.context or {}).get("env", os.environ).get(self.secret_env)
            if value is None:
                raise _Problems([(("secret_env",),
                                  f"environment variable {self.secret_env} is not set")])
        assert value is not None
        if len(value) < MIN_SECRET:
            raise _Problems([((sources[0],), f"must be at least {MIN_SECRET} characters")])
        self._secret = SecretStr(value)
        return self

    def secret_value(self) -> str:
        assert self._secret is not None  # set by the validator
        return self._secret.get_secret_value()


# --------------------------------------------------------------------------- operators


class OperatorSettings(_Section):
    """Per-operator settings that [defaults] may set; the field defaults are built in."""

    window: int = Field(default=10, ge=1)
    tps: Annotated[float, AfterValidator(lambda v: _min_tps(v))] = Field(default=50, gt=0)
    # Share of `tps` left unused so that jitter between our write and the SMSC's
    # count cannot put more than `tps` into one of its one-second windows: 0.02 at
    # 50 TPS paces 49 per second, which absorbs ~20 ms (docs/reliability.md).
    tps_margin: float = Field(default=0.02, ge=0.0, le=0.5)
    enquire_link_interval: float = Field(default=30.0, gt=0)
    inactivity_timeout: float = Field(default=90.0, gt=0)  # > enquire_link_interval
    response_timeout: float = Field(default=30.0, gt=0)
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    primary_probe_interval: float = Field(default=60.0, gt=0)
    bind_type: Literal["transmitter", "receiver", "transceiver"] = "transceiver"
    binds: int = Field(default=1, ge=1)
    # Embedded mode (SQLite store): parts queued in memory. Messages accepted beyond
    # wait in the store only and are queued, oldest first, as the queue drains (each
    # queued part costs ~300 bytes of memory; a stored one, none).
    queue_limit: int = Field(default=20_000, ge=1)
    system_type: str = Field(default="", max_length=MAX_SYSTEM_TYPE)
    long_message: Literal["udh", "sar", "payload"] = "udh"
    submit_resp_id: Literal["decimal", "hex", "auto"] = "auto"
    receipt_id: Literal["decimal", "hex", "auto"] = "auto"
    default_data_coding: int = Field(default=0, ge=0, le=255)
    registered_delivery: int = Field(default=1, ge=0, le=255)
    source_ton: TonOrAuto = "auto"
    source_npi: NpiOrAuto = "auto"
    dest_ton: TonValue = 1
    dest_npi: NpiValue = 1
    # command_status -> rule; merged entry by entry over DEFAULT_STATUS_TABLE
    status_table: dict[int, StatusRule] = Field(default_factory=lambda: dict(DEFAULT_STATUS_TABLE))

    @field_validator("status_table", mode="before")
    @classmethod
    def _parse_status_table(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value  # pydantic reports the type error
        table: dict[int, Any] = dict(DEFAULT_STATUS_TABLE)
        bad = []
        for key, rule in value.items():
            try:
                table[_status_code(key)] = rule
            except ValueError as exc:
                bad.append(str(exc))
        if bad:
            raise ValueError("; ".join(bad))
        return table

    @field_validator("status_table", mode="after")
    @classmethod
    def _permanent_has_no_retries(cls, table: dict[int, StatusRule]) -> dict[int, StatusRule]:
        return {code: rule if rule.transient else PERMANENT for code, rule in table.items()}

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> OperatorSettings:
        problems = self._cross_problems()
        if problems:
            raise _Problems(problems)
        return self

    def _cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.enquire_link_interval >= self.inactivity_timeout:
            problems.append((
                ("inactivity_timeout", "enquire_link_interval"),
                f"inactivity_timeout ({self.inactivity_timeout:g}) must be greater than "
                f"enquire_link_interval ({self.enquire_link_interval:g})",
            ))
        if self.reconnect_min > self.reconnect_max:
            problems.append((
                ("reconnect_min", "reconnect_max"),
                f"reconnect_min ({self.reconnect_min:g}) must not exceed "
                f"reconnect_max ({self.reconnect_max:g})",
            ))
        return problems

    def rule_for(self, status: int) -> StatusRule:
        """The retry rule for a command_status; statuses not in the table are permanent."""
        return self.status_table.get(status, PERMANENT)


def _password_length(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) > MAX_PASSWORD:
        raise ValueError(f"must be at most {MAX_PASSWORD} characters")  # never the value
    return value


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


BindType = Literal["transmitter", "receiver", "transceiver"]
SENDING = frozenset({"transmitter", "transceiver"})
RECEIVING = frozenset({"receiver", "transceiver"})
TLS_KEYS = ("tls_ca", "tls_cert", "tls_key", "tls_server_name")


class OperatorConfig(OperatorSettings):
    """One operator with every setting resolved (operator > [defaults] > built-in)."""

    id: Annotated[str, AfterValidator(_operator_id)]
    name: str = ""  # defaults to id
    mcc: Mcc = "412"
    mnc: Annotated[list[Mnc], BeforeValidator(_one_or_list)] = Field(default_factory=list)
    prefixes: Annotated[list[Prefix], BeforeValidator(_one_or_list)] = Field(
        default_factory=list)
    hosts: list[HostPort] = Field(min_length=1)  # primary first, then backups
    system_id: str = Field(min_length=1, max_length=MAX_SYSTEM_ID)
    # exactly one credential source:
    password: Annotated[SecretStr, AfterValidator(_password_length)] | None = None  # demo only
    password_env: str | None = None  # name of an environment variable, read at load
    credentials: str | None = None  # "vault" (vault.path_template) or "vault:<path>"
    # One type per bind, for accounts that want, say, a transmitter and a receiver:
    # instead of bind_type and binds (see bind_plan).
    bind_types: list[BindType] | None = Field(default=None, min_length=1)
    # TLS to the SMSC. tls_ca: trust only this CA (default: the system's CAs);
    # tls_cert / tls_key: a client certificate; tls_server_name: the name the SMSC's
    # certificate must carry (default: each host's name).
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: Annotated[str, Field(min_length=1, pattern=r"^[^\s]+$")] | None = None
    tls_verify: bool = True  # false: no certificate check at all (a WARNING at start)

    _password: SecretStr | None = PrivateAttr(default=None)
    _vault_path: str | None = PrivateAttr(default=None)
    _ssl: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> OperatorConfig:
        # Overrides (replaces) OperatorSettings._cross_checks so all problems come at once.
        if not self.name:
            self.name = self.id
        problems = self._cross_problems()
        sources = [k for k in ("password", "password_env", "credentials")
                   if getattr(self, k) is not None]
        if len(sources) != 1:
            have = ", ".join(sources) if sources else "none"
            problems.append((("password", "password_env", "credentials"),
                             f"exactly one of password, password_env, credentials is "
                             f"required (found: {have})"))
        elif self.password is not None:
            self._password = self.password
        elif self.password_env is not None:
            env = (info.context or {}).get("env", os.environ)
            value = env.get(self.password_env)
            if value is None:
                problems.append((("password_env",),
                                 f"environment variable {self.password_env} is not set"))
            elif len(value) > MAX_PASSWORD:
                problems.append((("password_env",),
                                 f"environment variable {self.password_env}: the password "
                                 f"must be at most {MAX_PASSWORD} characters"))
            else:
                self._password = SecretStr(value)
        elif self.credentials is not None:
            scheme, sep, path = self.credentials.partition(":")
            if scheme != "vault" or (sep and not path.strip("/")):
                problems.append((("credentials",),
                                 'must be "vault" or "vault:<path>"'))
            elif sep:
                self._vault_path = path.strip("/")
        problems += self._bind_problems() + self._tls_problems()
        if problems:
            raise _Problems(problems)
        return self

    def _bind_problems(self) -> list[tuple[tuple[str, ...], str]]:
        if self.bind_types is not None:
            # [defaults] never gives bind_type or binds to an operator with bind_types
            # (Config._merge_defaults): these are the operator's own.
            both = [k for k in ("bind_type", "binds") if k in self.model_fields_set]
            if both:
                return [((both[0],), "give bind_types (one type per bind) or bind_type "
                         "and binds, not both")]
            self.binds = len(self.bind_types)
        if not SENDING & set(self.bind_plan):
            key = "bind_types" if self.bind_types is not None else "bind_type"
            return [((key,), "no bind can submit: at least one must be a transmitter or "
                     "a transceiver")]
        return []

    def _tls_problems(self) -> list[tuple[tuple[str, ...], str]]:
        if not self.tls:
            given = [k for k in (*TLS_KEYS, "tls_verify") if k in self.model_fields_set]
            return [((given[0],), "needs tls = true")] if given else []
        if self.tls_key is not None and self.tls_cert is None:
            return [(("tls_key",), "needs tls_cert (the client certificate)")]
        try:
            self._ssl = client_context(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key,
                                       verify=self.tls_verify)
        except TlsFileError as exc:
            return [((exc.key,), exc.message)]
        return []

    @property
    def bind_plan(self) -> list[str]:
        """The type of each bind, in order: bind_types, or binds times bind_type."""
        return list(self.bind_types) if self.bind_types else [self.bind_type] * self.binds

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS to the SMSC (built once, at load); None: plain TCP."""
        return self._ssl

    def password_value(self) -> str | None:
        """The SMPP bind password (file or environment); None when it comes from Vault."""
        return self._password.get_secret_value() if self._password is not None else None

    @property
    def vault_path(self) -> str | None:
        """The Vault KV path of this operator's credentials, if they live in Vault."""
        return self._vault_path

    @property
    def primary(self) -> tuple[str, int]:
        return self.hosts[0]


# --------------------------------------------------------------------------- the whole file


class Config(_Section):
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    api: ApiSection = Field(default_factory=ApiSection)
    store: StoreSection = Field(default_factory=StoreSection)
    defaults: OperatorSettings = Field(default_factory=OperatorSettings)
    operators: list[OperatorConfig] = Field(min_length=1)
    redis: RedisSection | None = None
    nats: NatsSection | None = None
    vault: VaultSection | None = None
    auth: AuthSection = Field(default_factory=AuthSection)
    routing: RoutingSection = Field(default_factory=RoutingSection)
    leases: LeasesSection | None = None
    tenants: list[TenantConfig] = Field(default_factory=list)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Give each operator the [defaults] keys it does not set itself."""
        if not isinstance(data, dict):
            return data
        defaults, operators = data.get("defaults"), data.get("operators")
        if not isinstance(defaults, dict) or not isinstance(operators, list):
            return data
        inherited = {k: v for k, v in defaults.items() if k in OperatorSettings.model_fields}
        merged = []
        for op in operators:
            if isinstance(op, dict):
                given = inherited
                if "bind_types" in op:  # the operator lists its binds itself
                    given = {k: v for k, v in inherited.items()
                             if k not in ("bind_type", "binds")}
                op = {**given, **op}
                table, own = defaults.get("status_table"), op.get("status_table")
                if isinstance(table, dict) and isinstance(own, dict) and own is not table:
                    op["status_table"] = {**table, **own}
            merged.append(op)
        return {**data, "operators": merged}

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[tuple[tuple[str, ...], str]] = []
        seen: dict[str, int] = {}
        prefix_owner: dict[str, str] = {}
        for index, op in enumerate(self.operators):
            key = f"operators.{op.id}"
            if op.id in seen:
                problems.append(((f"{key}.id",), f"duplicate operator id (operators[{index}] "
                                 f"and operators[{seen[op.id]}])"))
            seen.setdefault(op.id, index)
            for prefix in op.prefixes:
                owner = prefix_owner.setdefault(prefix, op.id)
                if owner != op.id:
                    problems.append(((f"{key}.prefixes",),
                                     f"prefix {prefix} is also routed to operator {owner}"))
            if op.credentials is not None:
                if self.vault is None:
                    problems.append(((f"{key}.credentials",), "needs a [vault] section"))
                elif op.vault_path is None:
                    op._vault_path = self.vault.path_template.format(operator_id=op.id)
        if self.daemon.mode == "distributed":
            if self.store.kind != "postgres":
                problems.append((("store.kind",), 'must be "postgres" when daemon.mode = '
                                 '"distributed"'))
            if self.redis is None:
                problems.append((("redis.url",), 'is required when daemon.mode = "distributed"'))
        if (self.control_source == "postgres" and self.routing.dsn is None
                and self.store.dsn is None):
            problems.append((("routing.dsn",), 'is required when routing.source = "postgres" '
                             "and store.dsn is not set"))
        problems += self._tenant_problems()
        if problems:
            raise _Problems(problems)
        return self

    def _tenant_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        tenant_of: dict[str, str] = {}
        seen: set[str] = set()
        for index, tenant in enumerate(self.tenants):
            if tenant.id in seen:
                problems.append(((f"tenants[{index}].id",), f"duplicate tenant id {tenant.id!r}"))
            seen.add(tenant.id)
            for destination in tenant.mo_destinations:
                owner = tenant_of.setdefault(destination, tenant.id)
                if owner != tenant.id:
                    problems.append(((f"tenants[{index}].mo_destinations",),
                                     f"{destination} is also a destination of tenant {owner}"))
        return problems

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        return None

    @property
    def source_file(self) -> Path | None:
        """The file this configuration was loaded from."""
        return self._source

    @property
    def sqlite_path(self) -> Path:
        """store.path, or {daemon.state_dir}/smppd.sqlite when unset."""
        return self.store.path or self.daemon.state_dir / "smppd.sqlite"

    @property
    def control_source(self) -> str:
        """routing.source, or sqlite (embedded) / postgres (distributed) when unset."""
        if self.routing.source is not None:
            return self.routing.source
        return "postgres" if self.daemon.mode == "distributed" else "sqlite"

    @property
    def control_sqlite_path(self) -> Path:
        return self.routing.sqlite_path or self.daemon.state_dir / "control.sqlite"

    def operator(self, operator_id: str) -> OperatorConfig:
        for op in self.operators:
            if op.id == operator_id:
                return op
        raise KeyError(operator_id)

    @property
    def total_binds(self) -> int:
        return sum(op.binds for op in self.operators)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, validate. Raises ConfigError."""
    env = os.environ if env is None else env
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigFileError(path, [("", "file not found")]) from None
    except OSError as exc:
        raise ConfigFileError(path, [("", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [("", f"not UTF-8 text (byte {exc.start})")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("", _toml_message(exc))]) from None

    overridden = _apply_env(raw, env)
    try:
        config = Config.model_validate(raw, context={"env": env})
    except ValidationError as exc:
        problems = _problems(exc, raw, overridden)
        raise ConfigError(path, problems) from None
    config._source = Path(path)
    return config


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    # 3.11's TOMLDecodeError has no lineno attribute; the message ends "(at line L, column C)".
    match = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
    text = str(exc)
    if match:
        text = text[: match.start()].rstrip()
        return f"line {match[1]}, column {match[2]}: invalid TOML: {text}"
    return f"invalid TOML: {text}"


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply ENV_OVERRIDES in place; return {dotted key: variable} of those applied."""
    applied = {}
    for variable, (section, key) in ENV_OVERRIDES.items():
        value = env.get(variable)
        if not value:
            continue
        table = raw.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
            applied[f"{section}.{key}"] = variable
    return applied


def _problems(exc: ValidationError, raw: dict[str, Any],
              overridden: dict[str, str]) -> list[tuple[str, str]]:
    out: dict[tuple[str, str], None] = {}  # ordered set: inherited defaults repeat per operator
    for error in exc.errors():
        loc = error["loc"]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            for fields, message in cause.problems:
                out[(_key(loc, fields, raw), message)] = None
        else:
            out[(_key(loc, (), raw), _message(error, loc))] = None
    problems = []
    for key, message in out:
        if key in overridden:
            key = f"{key} (from {overridden[key]})"
        problems.append((key, message))
    return problems


def _key(loc: tuple[int | str, ...], fields: tuple[str, ...], raw: dict[str, Any]) -> str:
    """The dotted key of a pydantic location, naming operators by id."""
    if loc[:1] == ("operators",) and len(loc) >= 2 and isinstance(loc[1], int):
        return _operator_key(loc[1], loc[2:], fields, raw)
    parts = [str(p) for p in loc]
    if fields:
        parts.append(fields[0])
    return _join(parts)


def _operator_key(index: int, rest: tuple[int | str, ...], fields: tuple[str, ...],
                  raw: dict[str, Any]) -> str:
    ops = raw.get("operators")
    op = ops[index] if isinstance(ops, list) and index < len(ops) else None
    op = op if isinstance(op, dict) else {}
    op_id = op.get("id")
    base = (f"operators.{op_id}" if isinstance(op_id, str) and re.fullmatch(r"[a-z0-9_-]+", op_id)
            else f"operators[{index}]")
    defaults = raw.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    if fields:  # a cross-field problem: name the field this operator set, if any
        own = [f for f in fields if f in op]
        if own:
            return f"{base}.{own[0]}"
        inherited = [f for f in fields if f in defaults]
        return f"defaults.{inherited[0]}" if inherited else f"{base}.{fields[0]}"
    if rest and rest[0] not in op and rest[0] in defaults:
        base = "defaults"
    parts = [base]
    for prev, part in zip(("", *rest), rest, strict=False):
        if prev == "status_table" and isinstance(part, int):
            part = f"0x{part:02X}"
        parts.append(str(part))
    return _join(parts)


def _join(parts: list[str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() and text else (f".{part}" if text else part)
    return text


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "daemon": DaemonSection, "api": ApiSection, "store": StoreSection,
    "defaults": OperatorSettings, "operators": OperatorConfig, "redis": RedisSection,
    "nats": NatsSection, "vault": VaultSection, "auth": AuthSection,
    "routing": RoutingSection, "leases": LeasesSection, "tenants": TenantConfig,
    "webhooks": WebhooksSection,
}


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    if "status_table" in loc:
        return ["transient", "retries", "delay"]
    if len(loc) == 1:
        return list(Config.model_fields)
    model = _SECTION_MODELS.get(str(loc[0]))
    if model is None:
        return []
    keys = list(model.model_fields)
    return [k for k in keys if k != "id"] if model is OperatorSettings else keys


def _message(error: Any, loc: tuple[int | str, ...]) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        if loc[0] == "defaults" and len(loc) == 2 and loc[1] in OperatorConfig.model_fields:
            return "not allowed in [defaults]: set it in each [[operators]] table"
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return "is required"
    if kind == "too_short" and "at least 1 item" in msg:
        return "must not be empty"
    for old, new in (("Value error, ", ""), ("Input should be ", "must be "),
                     ("String should have ", "must have "), ("List should have ", "must have ")):
        if msg.startswith(old):
            msg = new + msg[len(old):]
    return msg


# --------------------------------------------------------------------------- CLI helper


def check_config_command(path: str | Path, env: Mapping[str, str] | None = None) -> int:
    """`smppd check-config FILE`: 0 valid, 1 invalid, 2 missing or unreadable."""
    try:
        config = load_config(path, env)
    except ConfigFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    count = len(config.operators)
    binds = config.total_binds
    print(f"{path}: OK, {count} operator{'s' * (count != 1)}, {binds} bind{'s' * (binds != 1)}")
    return 0
