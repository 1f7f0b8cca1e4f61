"""Loading: read the TOML, apply the environment overrides, validate, and report
every problem under its dotted key (pydantic's locations turned into config keys)."""

from __future__ import annotations

import difflib
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from smppd.config.access import AuthSection, VaultSection
from smppd.config.cluster import LeasesSection, NatsSection, RedisSection
from smppd.config.errors import ConfigError, ConfigFileError, Problems
from smppd.config.model import Config
from smppd.config.operators import OperatorConfig, OperatorSettings
from smppd.config.sections import ApiSection, DaemonSection, RoutingSection, StoreSection
from smppd.config.webhooks import TenantConfig, WebhooksSection

# Environment variable -> (section, key) it overrides. Empty values are ignored.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "SMPPD_API_LISTEN": ("api", "listen"),
    "SMPPD_STORE_PATH": ("store", "path"),
    "SMPPD_STORE_DSN": ("store", "dsn"),
    "SMPPD_STATE_DIR": ("daemon", "state_dir"),
}


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
        if isinstance(cause, Problems):
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
