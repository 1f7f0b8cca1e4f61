"""Simulator configuration: pydantic dataclasses, validated once at load from TOML or a dict.

Every error is a ``ConfigError`` naming the offending key (``mno[1].receipts.delay_ms``).
The dataclasses are also built directly in code (tests, benchmarks); then pydantic
checks the types and the rules, but no file is read until the simulator starts.
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from smppd.tls import TlsFileError, server_context

from .errors import NamedValueError
from .id_formats import parse_id_format

BIND_TYPES = frozenset({"transmitter", "receiver", "transceiver"})
ReceiptStat = Literal["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"]
IntermediateStat = Literal["ACCEPTD", "ENROUTE"]
Route = Literal["same", "round_robin"]

_CONFIG = ConfigDict(extra="forbid")  # an unknown key is an error, named


class ConfigError(NamedValueError):
    """A bad configuration value; ``key`` is its dotted path."""

    @property
    def key(self) -> str:
        return self.name


class _Problem(ValueError):
    """Raised by a validator for a rule on the object as a whole; ``key`` is the field it
    is reported under, relative to the object ("" for the object itself)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _distinct(key: str, values: Sequence[Hashable], problem: str) -> None:
    """The rule that no two of ``values`` are equal, reported as ``problem`` under ``key``."""
    if len(set(values)) != len(values):
        raise _Problem(key, problem)


# --- value types -----------------------------------------------------------------

Number = Annotated[float, Strict()]  # an int or a float; never a boolean or a string
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
Positive = Annotated[StrictInt, Field(gt=0)]
PositiveNumber = Annotated[Number, Field(gt=0)]


def _id_format(spec: str) -> str:
    parse_id_format(spec)  # ValueError naming the spec
    return spec


IdFormat = Annotated[StrictStr, AfterValidator(_id_format)]


def _bind_types(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        for kind in value:
            if kind not in BIND_TYPES:
                raise ValueError(f"{kind!r} is not one of {sorted(BIND_TYPES)}")
        return frozenset(value)
    return value  # pydantic reports the type


_PASSWORDS_REQUIRED = "required: a password or a non-empty list of passwords"


def _passwords(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(_PASSWORDS_REQUIRED)
    if not all(1 <= len(password) <= 8 for password in value):
        raise ValueError("each password must be a string of 1..8 characters")
    return value


Passwords = Annotated[list[StrictStr], AfterValidator(_passwords)]


def _one_password(data: Any) -> Any:
    """``password`` (one) or ``passwords`` (a rotation window) in a file; the field is
    ``passwords``. Errors about it are then reported under the key the file used."""
    if isinstance(data, Mapping) and "password" in data:  # a file's (code passes ArgsKwargs)
        if "passwords" in data:
            raise _Problem("passwords", "give password or passwords, not both")
        rest = {k: v for k, v in data.items() if k != "password"}
        return {**rest, "passwords": [data["password"]]}
    return data


def _delay(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and x >= 0
                       for x in value)
            or value[0] > value[1]):
        raise ValueError("a number or [min, max] with 0 <= min <= max")
    return (float(value[0]), float(value[1]))


def _outcomes(value: dict[str, float]) -> dict[str, float]:
    if not value or sum(value.values()) <= 0:
        raise ValueError("at least one positive weight")
    return value


# --- the configuration -----------------------------------------------------------


@dataclass(slots=True, config=_CONFIG)
class AccountConfig:
    system_id: Annotated[StrictStr, Field(min_length=1, max_length=15)]
    passwords: Passwords
    tps: Positive = 100
    max_binds: Positive = 4
    bind_types: Annotated[frozenset[str], BeforeValidator(_bind_types)] = BIND_TYPES

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        return _one_password(data)


@dataclass(slots=True, config=_CONFIG)
class ReceiptConfig:
    enabled: StrictBool = True
    # uniform min..max; equal means fixed
    delay_ms: Annotated[tuple[float, float], BeforeValidator(_delay)] = (50.0, 200.0)
    outcomes: Annotated[dict[ReceiptStat, Annotated[Number, Field(ge=0)]],
                        AfterValidator(_outcomes)] = field(
        default_factory=lambda: {"DELIVRD": 1.0})
    intermediate: IntermediateStat | None = None  # sent before the final one
    text: StrictBool = True  # the appendix-B text in short_message
    tlvs: StrictBool = True  # receipted_message_id, message_state, network_error_code
    route: Route = "same"  # "same" bind when it can receive, else "round_robin"


@dataclass(slots=True, config=_CONFIG)
class Behaviour:
    """Misbehaviours, switchable at runtime through the admin API."""

    black_hole: StrictBool = False  # never answer submit_sm
    generic_nack: StrictBool = False  # answer submit_sm with generic_nack
    response_delay_ms: Annotated[Number, Field(ge=0)] = 0.0  # slow submit_sm_resp
    drop_after: StrictInt | None = None  # abort the connection on the Nth next submit_sm
    silent_enquire_link: StrictBool = False  # no enquire_link_resp while bound
    queue_full: StrictBool = False  # every submit_sm gets ESME_RMSGQFUL
    reject_binds: StrictInt | None = None  # every bind refused with this status
    receipt_before_response: StrictBool = False  # the receipt goes out before submit_sm_resp
    # ... and the submit_sm_resp only once the receipt's deliver_sm_resp came back (on
    # whichever bind the receipt went): an ESME that waits for the response to answer
    # the receipt stalls such an SMSC.
    response_after_receipt_ack: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> Behaviour:
        if self.drop_after is not None and self.drop_after < 1:
            raise _Problem("drop_after", "must be >= 1 (or null to switch off)")
        if self.reject_binds is not None and not 0 < self.reject_binds <= 0xFFFFFFFF:
            raise _Problem("reject_binds", "a non-zero command_status (or null)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True, config=_CONFIG)
class MnoConfig:
    name: Annotated[StrictStr, Field(min_length=1)]
    port: Port = 0
    host: StrictStr = "127.0.0.1"
    networks: list[StrictStr] = field(default_factory=list)  # "412/40"
    smsc_system_id: StrictStr = "SMSC"
    accounts: list[AccountConfig] = field(default_factory=list)  # [[mno.account]] in a file
    submit_id_format: IdFormat = "decimal"
    receipt_id_format: IdFormat = "decimal"
    # The counter's first value: a restarted SMSC given a higher one hands out ids its
    # earlier life never did, as a real SMSC's persistent counter does.
    first_id: Positive = 1
    window: Positive = 100
    enquire_link_interval: PositiveNumber = 30.0
    response_timeout: PositiveNumber = 30.0
    seed: StrictInt = 0
    record: StrictBool = True
    record_limit: Positive = 10_000
    receipts: ReceiptConfig = field(default_factory=ReceiptConfig)
    behaviour: Behaviour = field(default_factory=Behaviour)
    # A TLS listener on tls_port (0: any free port) beside the plain one, when
    # tls_cert is set (PEM; the key in it or in tls_key). With tls_client_ca a client
    # must present a certificate that CA signed.
    tls_port: Port = 0
    tls_cert: StrictStr | None = None
    tls_key: StrictStr | None = None
    tls_client_ca: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        if isinstance(data, Mapping):  # a file's: [[mno.account]] tables
            if "accounts" in data:
                raise _Problem("accounts", "unknown key")
            if "account" in data:
                data = {k: v for k, v in data.items() if k != "account"} | {
                    "accounts": data["account"]}
        return data

    @model_validator(mode="after")
    def _check(self) -> MnoConfig:
        if not self.accounts:
            raise _Problem("account", "at least one account")
        _distinct("account", [a.system_id for a in self.accounts], "duplicate system_id")
        if self.tls_cert is None:
            for key, unset in (("tls_key", None), ("tls_client_ca", None), ("tls_port", 0)):
                if getattr(self, key) != unset:
                    raise _Problem(key, "needs tls_cert (the TLS listener's certificate)")
        return self


@dataclass(slots=True, config=_CONFIG)
class SimConfig:
    mnos: list[MnoConfig]
    admin_host: StrictStr = "127.0.0.1"
    admin_port: Port | None = 8780  # None: no admin API; 0: any free port


# --- the file --------------------------------------------------------------------


@dataclass(config=_CONFIG)
class _AdminSection:
    host: StrictStr = "127.0.0.1"
    port: Port = 8780
    enabled: StrictBool = True


@dataclass(config=_CONFIG)
class _SimFile:
    """The TOML's shape: ``[admin]`` and ``[[mno]]``."""

    mno: list[MnoConfig] = field(default_factory=list)
    admin: _AdminSection = field(default_factory=_AdminSection)

    @model_validator(mode="after")
    def _check(self) -> _SimFile:
        if not self.mno:
            raise _Problem("mno", "at least one [[mno]]")
        _distinct("mno", [m.name for m in self.mno], "duplicate name")
        _distinct("mno", [m.port for m in self.mno if m.port], "two MNOs on the same port")
        return self


_FILE = TypeAdapter(_SimFile)
_BEHAVIOUR = TypeAdapter(Behaviour)
_PASSWORDS: TypeAdapter[list[str]] = TypeAdapter(Passwords)


def _config_error(exc: ValidationError, path: str, raw: Any) -> ConfigError:
    """The first problem pydantic found, under its dotted key below ``path``."""
    error = exc.errors()[0]
    # "[key]": an error in a dict's key, named by the key; accounts: the file's account
    loc = ["account" if part == "accounts" else part for part in error["loc"]
           if part != "[key]"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        if cause.key:
            loc.append(cause.key)
        return ConfigError(_join(path, loc), cause.message)
    for index, part in enumerate(loc):
        if part == "passwords" and _given_as_password(raw, loc[:index]):
            loc = [*loc[:index], "password"]
            break
    return ConfigError(_join(path, loc), _message(error, loc))


def _given_as_password(raw: Any, loc: list[int | str]) -> bool:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(raw, Mapping) and "password" in raw and "passwords" not in raw


def _join(path: str, loc: list[int | str]) -> str:
    text = path
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _message(error: Any, loc: list[int | str]) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown key"
    if kind == "missing":
        return _PASSWORDS_REQUIRED if loc[-1:] == ["passwords"] else "required"
    if kind in ("dataclass_type", "dict_type"):
        return "must be a table"
    for old, new in (("Value error, ", ""), ("Input should be ", "must be "),
                     ("String should have ", "must have ")):
        if msg.startswith(old):
            return new + msg[len(old):]
    return msg


def tls_context(config: MnoConfig, path: str) -> ssl.SSLContext | None:
    """The MNO's TLS listener context (None: no TLS listener); ``path`` names the MNO
    in a ConfigError."""
    if config.tls_cert is None:
        return None
    try:
        return server_context(cert=Path(config.tls_cert),
                              key=Path(config.tls_key) if config.tls_key else None,
                              client_ca=Path(config.tls_client_ca) if config.tls_client_ca
                              else None)
    except TlsFileError as exc:
        raise ConfigError(f"{path}.{exc.key}", exc.message) from None


def parse_passwords(d: Mapping[str, Any], path: str) -> list[str]:
    """``password`` (one) or ``passwords`` (a rotation window): each 1..8 characters."""
    try:
        data = _one_password(d)
    except _Problem as exc:
        raise ConfigError(f"{path}.{exc.key}", exc.message) from None
    key = f"{path}.password" if "password" in d else f"{path}.passwords"
    if data.get("passwords") is None:
        raise ConfigError(key, _PASSWORDS_REQUIRED)
    try:
        return _PASSWORDS.validate_python(data["passwords"])
    except ValidationError as exc:
        raise ConfigError(key, _message(exc.errors()[0], [])) from None


def parse_behaviour(d: Mapping[str, Any], path: str = "behaviour",
                    base: Behaviour | None = None) -> Behaviour:
    """A Behaviour from ``d``; keys not given keep ``base``'s values (PATCH semantics)."""
    if not isinstance(d, Mapping):
        raise ConfigError(path, "expected an object")
    try:
        return _BEHAVIOUR.validate_python({**(base or Behaviour()).to_dict(), **d})
    except ValidationError as exc:
        raise _config_error(exc, path, d) from None


def parse_config(d: Mapping[str, Any]) -> SimConfig:
    try:
        parsed = _FILE.validate_python(d, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise _config_error(exc, "", d) from None
    for index, mno in enumerate(parsed.mno):
        tls_context(mno, f"mno[{index}]")  # the files are read now: a bad one fails the load
    admin = parsed.admin
    return SimConfig(mnos=parsed.mno, admin_host=admin.host,
                     admin_port=admin.port if admin.enabled else None)


def load_config(path: str | Path) -> SimConfig:
    with open(path, "rb") as fh:
        return parse_config(tomllib.load(fh))

