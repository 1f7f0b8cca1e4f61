"""Simulator configuration: dataclasses, validated once at load from TOML or a dict.

Every error is a ``ConfigError`` naming the offending key (``mno[1].receipts.delay_ms``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .ids import parse_id_format

BIND_TYPES = frozenset({"transmitter", "receiver", "transceiver"})
RECEIPT_STATS = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD")
INTERMEDIATE_STATS = ("ACCEPTD", "ENROUTE")
ROUTES = ("same", "round_robin")


class ConfigError(ValueError):
    """A bad configuration value; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(slots=True)
class AccountConfig:
    system_id: str
    passwords: list[str]
    tps: int = 100
    max_binds: int = 4
    bind_types: frozenset[str] = BIND_TYPES


@dataclass(slots=True)
class ReceiptConfig:
    enabled: bool = True
    delay_ms: tuple[float, float] = (50.0, 200.0)  # uniform min..max; equal means fixed
    outcomes: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    intermediate: str | None = None  # ACCEPTD or ENROUTE sent before the final one
    text: bool = True  # the appendix-B text in short_message
    tlvs: bool = True  # receipted_message_id, message_state, network_error_code
    route: str = "same"  # "same" bind when it can receive, else "round_robin"


@dataclass(slots=True)
class Behaviour:
    """Misbehaviours, switchable at runtime through the admin API."""

    black_hole: bool = False  # never answer submit_sm
    generic_nack: bool = False  # answer submit_sm with generic_nack
    response_delay_ms: float = 0.0  # slow submit_sm_resp
    drop_after: int | None = None  # abort the connection on the Nth next submit_sm
    silent_enquire_link: bool = False  # no enquire_link_resp while bound
    queue_full: bool = False  # every submit_sm gets ESME_RMSGQFUL
    reject_binds: int | None = None  # every bind refused with this status
    receipt_before_response: bool = False  # the receipt goes out before submit_sm_resp
    # ... and the submit_sm_resp only once the receipt's deliver_sm_resp came back (on
    # whichever bind the receipt went): an ESME that waits for the response to answer
    # the receipt stalls such an SMSC.
    response_after_receipt_ack: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class MnoConfig:
    name: str
    port: int = 0
    host: str = "127.0.0.1"
    networks: list[str] = field(default_factory=list)  # "412/40"
    smsc_system_id: str = "SMSC"
    accounts: list[AccountConfig] = field(default_factory=list)
    submit_id_format: str = "decimal"
    receipt_id_format: str = "decimal"
    # The counter's first value: a restarted SMSC given a higher one hands out ids its
    # earlier life never did, as a real SMSC's persistent counter does.
    first_id: int = 1
    window: int = 100
    enquire_link_interval: float = 30.0
    response_timeout: float = 30.0
    seed: int = 0
    record: bool = True
    record_limit: int = 10_000
    receipts: ReceiptConfig = field(default_factory=ReceiptConfig)
    behaviour: Behaviour = field(default_factory=Behaviour)
    # A TLS listener on tls_port (0: any free port) beside the plain one, when
    # tls_cert is set (PEM; the key in it or in tls_key). With tls_client_ca a client
    # must present a certificate that CA signed.
    tls_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None


@dataclass(slots=True)
class SimConfig:
    mnos: list[MnoConfig]
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 8780  # None: no admin API; 0: any free port


# --- parsing ---------------------------------------------------------------------


def _take(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any,
          path: str) -> Any:
    if key not in d:
        return default
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{path}.{key}", f"expected {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{path}.{key}", f"expected {_kind_names(kinds)}, "
                                           f"got {type(value).__name__}")
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


def _reject_unknown(d: Mapping[str, Any], known: set[str], path: str) -> None:
    for key in d:
        if key not in known:
            raise ConfigError(f"{path}.{key}", "unknown key")


def _positive(value: float, key: str) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be positive, got {value}")


def parse_account(d: Mapping[str, Any], path: str) -> AccountConfig:
    _reject_unknown(d, {"system_id", "password", "passwords", "tps", "max_binds", "bind_types"},
                    path)
    system_id = _take(d, "system_id", str, None, path)
    if not system_id or len(system_id) > 15:
        raise ConfigError(f"{path}.system_id", "required, 1..15 characters")
    passwords = parse_passwords(d, path)
    tps = _take(d, "tps", int, 100, path)
    _positive(tps, f"{path}.tps")
    max_binds = _take(d, "max_binds", int, 4, path)
    _positive(max_binds, f"{path}.max_binds")
    bind_types = _take(d, "bind_types", list, sorted(BIND_TYPES), path)
    for kind in bind_types:
        if kind not in BIND_TYPES:
            raise ConfigError(f"{path}.bind_types", f"{kind!r} is not one of {sorted(BIND_TYPES)}")
    return AccountConfig(system_id, passwords, tps, max_binds, frozenset(bind_types))


def parse_passwords(d: Mapping[str, Any], path: str) -> list[str]:
    """``password`` (one) or ``passwords`` (a rotation window): each 1..8 characters."""
    if "password" in d and "passwords" in d:
        raise ConfigError(f"{path}.passwords", "give password or passwords, not both")
    if "password" in d:
        passwords = [_take(d, "password", str, "", path)]
        key = f"{path}.password"
    else:
        passwords = _take(d, "passwords", list, None, path)
        key = f"{path}.passwords"
        if not passwords:
            raise ConfigError(key, "required: a password or a non-empty list of passwords")
    for password in passwords:
        if not isinstance(password, str) or not 1 <= len(password) <= 8:
            raise ConfigError(key, "each password must be a string of 1..8 characters")
    return list(passwords)


def parse_receipts(d: Mapping[str, Any], path: str) -> ReceiptConfig:
    _reject_unknown(d, {f.name for f in fields(ReceiptConfig)}, path)
    default = ReceiptConfig()
    delay = _take(d, "delay_ms", (int, float, list), list(default.delay_ms), path)
    if isinstance(delay, (int, float)):
        delay = [delay, delay]
    if len(delay) != 2 or not all(isinstance(x, (int, float)) and x >= 0 for x in delay) \
            or delay[0] > delay[1]:
        raise ConfigError(f"{path}.delay_ms", "a number or [min, max] with 0 <= min <= max")
    outcomes = _take(d, "outcomes", dict, default.outcomes, path)
    for stat, weight in outcomes.items():
        if stat not in RECEIPT_STATS:
            raise ConfigError(f"{path}.outcomes.{stat}", f"not one of {list(RECEIPT_STATS)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"{path}.outcomes.{stat}", "weight must be a number >= 0")
    if not outcomes or sum(outcomes.values()) <= 0:
        raise ConfigError(f"{path}.outcomes", "at least one positive weight")
    intermediate = _take(d, "intermediate", str, None, path)
    if intermediate is not None and intermediate not in INTERMEDIATE_STATS:
        raise ConfigError(f"{path}.intermediate", f"not one of {list(INTERMEDIATE_STATS)}")
    route = _take(d, "route", str, "same", path)
    if route not in ROUTES:
        raise ConfigError(f"{path}.route", f"not one of {list(ROUTES)}")
    return ReceiptConfig(
        enabled=_take(d, "enabled", bool, True, path),
        delay_ms=(float(delay[0]), float(delay[1])),
        outcomes={k: float(v) for k, v in outcomes.items()},
        intermediate=intermediate,
        text=_take(d, "text", bool, True, path),
        tlvs=_take(d, "tlvs", bool, True, path),
        route=route,
    )


_BEHAVIOUR_KINDS: dict[str, tuple[type, ...]] = {
    "black_hole": (bool,),
    "generic_nack": (bool,),
    "response_delay_ms": (int, float),
    "drop_after": (int, type(None)),
    "silent_enquire_link": (bool,),
    "queue_full": (bool,),
    "reject_binds": (int, type(None)),
    "receipt_before_response": (bool,),
    "response_after_receipt_ack": (bool,),
}


def parse_behaviour(d: Mapping[str, Any], path: str = "behaviour",
                    base: Behaviour | None = None) -> Behaviour:
    """A Behaviour from ``d``; keys not given keep ``base``'s values (PATCH semantics)."""
    if not isinstance(d, Mapping):
        raise ConfigError(path, "expected an object")
    _reject_unknown(d, set(_BEHAVIOUR_KINDS), path)
    values: dict[str, Any] = {}
    for key, kinds in _BEHAVIOUR_KINDS.items():
        if key in d:
            values[key] = _take(d, key, kinds, None, path)
    delay = values.get("response_delay_ms")
    if delay is not None and delay < 0:
        raise ConfigError(f"{path}.response_delay_ms", "must be >= 0")
    drop = values.get("drop_after")
    if drop is not None and drop < 1:
        raise ConfigError(f"{path}.drop_after", "must be >= 1 (or null to switch off)")
    reject = values.get("reject_binds")
    if reject is not None and not 0 < reject <= 0xFFFFFFFF:
        raise ConfigError(f"{path}.reject_binds", "a non-zero command_status (or null)")
    return replace(base or Behaviour(), **values)


_MNO_KEYS = {f.name for f in fields(MnoConfig)} - {"accounts"} | {"account"}


def parse_mno(d: Mapping[str, Any], path: str) -> MnoConfig:
    _reject_unknown(d, _MNO_KEYS, path)
    name = _take(d, "name", str, "", path)
    if not name:
        raise ConfigError(f"{path}.name", "required")
    port = _take(d, "port", int, 0, path)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{path}.port", "must be 0..65535")
    accounts_raw = _take(d, "account", list, [], path)
    accounts = [parse_account(a, f"{path}.account[{i}]") for i, a in enumerate(accounts_raw)]
    if not accounts:
        raise ConfigError(f"{path}.account", "at least one account")
    ids = [a.system_id for a in accounts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}.account", "duplicate system_id")
    for key in ("submit_id_format", "receipt_id_format"):
        try:
            parse_id_format(_take(d, key, str, "decimal", path))
        except ValueError as exc:
            raise ConfigError(f"{path}.{key}", str(exc)) from None
    first_id = _take(d, "first_id", int, 1, path)
    _positive(first_id, f"{path}.first_id")
    window = _take(d, "window", int, 100, path)
    _positive(window, f"{path}.window")
    interval = _take(d, "enquire_link_interval", (int, float), 30.0, path)
    _positive(interval, f"{path}.enquire_link_interval")
    timeout = _take(d, "response_timeout", (int, float), 30.0, path)
    _positive(timeout, f"{path}.response_timeout")
    record_limit = _take(d, "record_limit", int, 10_000, path)
    _positive(record_limit, f"{path}.record_limit")
    tls_port = _take(d, "tls_port", int, 0, path)
    if not 0 <= tls_port <= 65535:
        raise ConfigError(f"{path}.tls_port", "must be 0..65535")
    tls = {key: _take(d, key, str, None, path) for key in ("tls_cert", "tls_key", "tls_client_ca")}
    for key in ("tls_key", "tls_client_ca", "tls_port"):
        if key in d and tls["tls_cert"] is None:
            raise ConfigError(f"{path}.{key}", "needs tls_cert (the TLS listener's certificate)")
    mno = MnoConfig(
        name=name,
        port=port,
        host=_take(d, "host", str, "127.0.0.1", path),
        networks=list(_take(d, "networks", list, [], path)),
        smsc_system_id=_take(d, "smsc_system_id", str, "SMSC", path),
        accounts=accounts,
        submit_id_format=_take(d, "submit_id_format", str, "decimal", path),
        receipt_id_format=_take(d, "receipt_id_format", str, "decimal", path),
        first_id=first_id,
        window=window,
        enquire_link_interval=float(interval),
        response_timeout=float(timeout),
        seed=_take(d, "seed", int, 0, path),
        record=_take(d, "record", bool, True, path),
        record_limit=record_limit,
        receipts=parse_receipts(_take(d, "receipts", dict, {}, path), f"{path}.receipts"),
        behaviour=parse_behaviour(_take(d, "behaviour", dict, {}, path), f"{path}.behaviour"),
        tls_port=tls_port, **tls,
    )
    # The files are read now, so a bad one fails the load (imported here: .tls uses
    # this module's types).
    from .tls import tls_context

    tls_context(mno, path)
    return mno


def parse_config(d: Mapping[str, Any]) -> SimConfig:
    _reject_unknown(d, {"admin", "mno"}, "config")
    admin = _take(d, "admin", dict, {}, "config")
    _reject_unknown(admin, {"host", "port", "enabled"}, "admin")
    mnos = [parse_mno(m, f"mno[{i}]") for i, m in enumerate(_take(d, "mno", list, [], "config"))]
    if not mnos:
        raise ConfigError("mno", "at least one [[mno]]")
    names = [m.name for m in mnos]
    if len(set(names)) != len(names):
        raise ConfigError("mno", "duplicate name")
    ports = [m.port for m in mnos if m.port]
    if len(set(ports)) != len(ports):
        raise ConfigError("mno", "two MNOs on the same port")
    enabled = _take(admin, "enabled", bool, True, "admin")
    port = _take(admin, "port", int, 8780, "admin")
    return SimConfig(mnos=mnos, admin_host=_take(admin, "host", str, "127.0.0.1", "admin"),
                     admin_port=port if enabled else None)


def load_config(path: str | Path) -> SimConfig:
    with open(path, "rb") as fh:
        return parse_config(tomllib.load(fh))

