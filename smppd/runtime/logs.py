"""Structured log lines on stdout (journald picks them up): JSON (the default) or
text, both with RFC 3339 UTC timestamps (2026-12-03T09:15:02.123Z).

One event name per line (the ``event`` field), operator and bind as fields; the text
format prints the same fields after the message as ``key=value``.
MSISDN-looking digit runs are masked by default; secrets never reach a record
because nothing logs a password, token or request body in the first place, and the
filter below is the second line of defence for digits.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

MSISDN = re.compile(r"(?<![0-9])\+?([0-9]{3})[0-9]{3,9}([0-9]{2})(?![0-9])")


def mask_msisdns(text: str) -> str:
    """93700123456 -> 937******56: enough to tell numbers apart, not to dial one."""
    return MSISDN.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 5) + m.group(2), text)


class MaskingFilter(logging.Filter):
    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if self.enabled:
            record.msg = mask_msisdns(str(record.msg))
            for key, value in list(record.__dict__.items()):
                if key in ("source", "destination", "msisdn") and isinstance(value, str):
                    setattr(record, key, mask_msisdns(value))
        return True


# What every LogRecord has: anything else on a record came as ``extra`` (the context).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}


def rfc3339(record: logging.LogRecord) -> str:
    """The record's time in UTC, to the millisecond: 2026-12-03T09:15:02.123Z"""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z")


class JsonLines(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record)


class UtcFormatter(logging.Formatter):
    """A plain format string's ``asctime`` in RFC 3339 UTC (the simulators' logs)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record)


class TextLines(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE key=value ...``: the context fields after the message,
    values with spaces or quotes quoted, one record per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        fields = " ".join(f"{key}={_quote(value)}" for key, value in record.__dict__.items()
                          if key not in _STANDARD and value is not None)
        line = f"{rfc3339(record)} {record.levelname} {record.name} {message}"
        if fields:
            line += " " + fields
        if record.exc_text:
            line += " exception=" + _quote(record.exc_text)
        return line.replace("\n", "\\n")


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def setup_logging(level: str = "INFO", *, json_lines: bool = True, mask: bool = True,
                  stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stdout)
    if json_lines:
        handler.setFormatter(JsonLines(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(TextLines())
    handler.addFilter(MaskingFilter(mask))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
