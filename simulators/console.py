"""What the simulators' console scripts (``smppd-sim``, ``smppd-faultproxy``) share: the
log set-up, running on uvloop, waiting for SIGTERM/SIGINT, and the "cannot start" exit."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from smppd.runtime.logs import UtcFormatter

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

T = TypeVar("T")


class UsageError(Exception):
    """Arguments that cannot work together (exit code 2, as argparse's own errors)."""


def log_to_stdout(level: str) -> None:
    """Log records at ``level`` and above to stdout, with UTC times as the daemon's."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run(main)
    return uvloop.run(main)


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def serve(log: logging.Logger, start: Callable[[], Coroutine[Any, Any, None]],
          exit_codes: Mapping[type[Exception], int]) -> int:
    """Run the coroutine ``start()`` makes until it ends: exit code 0. When making or
    running it raises an exception of a type in ``exit_codes``, log why the program cannot
    start and return the code of the first type that matches; others propagate."""
    try:
        run_fast(start())
    except tuple(exit_codes) as exc:
        log.error("cannot start: %s", exc)
        return next(code for kind, code in exit_codes.items() if isinstance(exc, kind))
    return 0
