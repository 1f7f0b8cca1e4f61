"""[defaults] and [[operators]]: per-operator settings, credentials, binds and TLS."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from smppd.config.errors import Problems
from smppd.config.fields import (
    DEFAULT_STATUS_TABLE,
    MAX_PASSWORD,
    MAX_SYSTEM_ID,
    MAX_SYSTEM_TYPE,
    PERMANENT,
    HostPort,
    Mcc,
    Mnc,
    NpiOrAuto,
    NpiValue,
    Prefix,
    StatusRule,
    TonOrAuto,
    TonValue,
    check_operator_id,
    status_code,
)
from smppd.config.sections import Section
from smppd.tls import TlsFileError, client_context

MIN_TPS = 0.001


def _min_tps(value: float) -> float:
    if value < MIN_TPS:  # a smaller rate overflows the token bucket's pacing
        raise ValueError(f"must be at least {MIN_TPS} (one message in 1,000 s)")
    return value


class OperatorSettings(Section):
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
                table[status_code(key)] = rule
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
            raise Problems(problems)
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

    id: Annotated[str, AfterValidator(check_operator_id)]
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
            raise Problems(problems)
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
