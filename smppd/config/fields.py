"""Field types and value checks shared by the sections: addresses, digits, TON/NPI,
secret URLs, and the status table (what a submit_sm_resp status means)."""

from __future__ import annotations

import re
import urllib.parse
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic.dataclasses import dataclass

from smppd.protocol.constants import Npi, Status, Ton

# SMPP v3.4 C-Octet String limits (without the terminating NUL).
MAX_SYSTEM_ID = 15
MAX_PASSWORD = 8
MAX_SYSTEM_TYPE = 12
MAX_URL = 2048  # characters of a callback_url


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


def check_operator_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", value):
        raise ValueError("must be lowercase letters, digits, '-' or '_'")
    return value


def _member_of(enum: type[IntEnum], name: str, *, auto: bool) -> BeforeValidator:
    """A value of ``enum`` (a TON, an NPI), or "auto" where ``auto``; bools refused."""
    allowed = ('"auto" or ' if auto else "") + f"{name} value {sorted(int(m) for m in enum)}"
    members = enum._value2member_map_

    def check(value: Any) -> Any:
        if auto and value == "auto":
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in members:
            return value
        raise ValueError(f"must be {allowed}")

    return BeforeValidator(check)


TonOrAuto = Annotated[Literal["auto"] | int, _member_of(Ton, "a TON", auto=True)]
NpiOrAuto = Annotated[Literal["auto"] | int, _member_of(Npi, "an NPI", auto=True)]
TonValue = Annotated[int, _member_of(Ton, "a TON", auto=False)]
NpiValue = Annotated[int, _member_of(Npi, "an NPI", auto=False)]


def _check_scheme(url: str, schemes: tuple[str, ...]) -> None:
    # The message never echoes the URL: it may carry a password.
    if not url.startswith(schemes):
        raise ValueError("must start with " + " or ".join(schemes))


def url_scheme(value: SecretStr | None, schemes: tuple[str, ...]) -> None:
    """Check a secret URL's scheme without ever echoing the URL."""
    if value is not None:
        _check_scheme(value.get_secret_value(), schemes)


def _secret_url(*schemes: str, several: bool = False) -> AfterValidator:
    """A SecretStr URL with one of ``schemes``; ``several``: a comma-separated list of them."""

    def check(value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        for one in [part.strip() for part in url.split(",")] if several else [url]:
            _check_scheme(one, schemes)
        return value

    return AfterValidator(check)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
RedisUrl = Annotated[SecretStr, _secret_url("redis://", "rediss://", "unix://")]
PostgresDsn = Annotated[SecretStr, _secret_url(*POSTGRES_SCHEMES)]
NatsUrls = Annotated[SecretStr, _secret_url("nats://", "tls://", "ws://", "wss://", several=True)]


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


def status_code(key: Any) -> int:
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


def check_callback_url(value: str) -> str:
    """An absolute http(s) URL with a host, no fragment; raises ValueError saying why."""
    if len(value) > MAX_URL:
        raise ValueError(f"at most {MAX_URL} characters")
    if not all("!" <= c <= "~" for c in value):
        raise ValueError("must be visible ASCII (no spaces; a host name in punycode)")
    try:
        url = urllib.parse.urlsplit(value)
        url.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("not a valid URL") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not url.hostname:
        raise ValueError("must name a host")
    if url.fragment:
        raise ValueError("must not have a #fragment")
    return value


CallbackUrl = Annotated[str, AfterValidator(check_callback_url)]
