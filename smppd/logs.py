"""Structured JSON log lines on stdout (journald picks them up).

One event name per line (the ``event`` field), operator and bind as fields.
MSISDN-looking digit runs are masked by default; secrets never reach a record
because nothing logs a password, token or request body in the first place, and the
filter below is the second line of defence for digits.
"""

from __future__ import annotations

import logging
import re
import sys
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


def setup_logging(level: str = "INFO", *, json_lines: bool = True, mask: bool = True,
                  stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stdout)
    if json_lines:
        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MaskingFilter(mask))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
