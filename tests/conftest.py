"""Small, generic test helpers shared by every test module."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any

import aiohttp
import pytest


class FakeClock:
    """A clock to inject where code asks for ``now``; tests move it by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    async def sleep(self, seconds: float) -> None:
        """An injected ``sleep``: time passes at once, other tasks get a turn."""
        self.now += seconds
        await asyncio.sleep(0)


def max_in_window(times: list[float]) -> int:
    """Most events in any half-open window [t, t+1), in exact arithmetic."""
    exact = sorted(Fraction(t) for t in times)
    best = start = 0
    for end, t in enumerate(exact):
        while t - exact[start] >= 1:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def options_without_help(parser: argparse.ArgumentParser, where: str) -> list[str]:
    """``"<command> <subcommand>: <dest>"`` of each option of ``parser`` and its
    subcommands that has no help text (``--help`` would show it bare)."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += options_without_help(child, f"{where} {name}")
        elif action.help is None:
            missing.append(f"{where}: {action.dest}")
    return missing


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def processes() -> AsyncIterator[Any]:
    """`smppd run` subprocesses a test starts (``e2e_helpers.Processes``): none is left
    behind a failed test."""
    from e2e_helpers import Processes  # the daemon's modules only for tests that ask

    started = Processes()
    yield started
    for process in started:
        await process.kill()


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for a module's tests (tests/services)."""
    from servers import migrated_database

    with migrated_database() as dsn:
        yield dsn


# ---------------------------------------------------------------------------------
# Secrets never in a log line (issue 7; checked by tests/unit/test_no_secrets_in_logs.py).
# Every log record of the whole run is formatted as the daemon's JSON line (without
# the MSISDN mask: stricter) and searched for the known test secrets; a hit fails
# the session in pytest_sessionfinish. Tests that invent a secret call
# ``register_secret(value)`` first.

import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from pythonjsonlogger.json import JsonFormatter  # noqa: E402

_CONF = Path(__file__).resolve().parent.parent / "conf"
_NOT_SECRET = {"secret", "password", "passwd"}  # words that name secrets in log lines


def conf_secrets() -> set[str]:
    """The passwords written in conf/*.toml (demo and simulator accounts)."""
    found: set[str] = set()
    for path in _CONF.glob("*.toml"):
        text = path.read_text()
        found.update(re.findall(r'^\s*password\s*=\s*"([^"]+)"', text, re.M))
        for group in re.findall(r'^\s*passwords\s*=\s*\[([^\]]*)\]', text, re.M):
            found.update(re.findall(r'"([^"]+)"', group))
    return found


class SecretScan(logging.Handler):
    def __init__(self, secrets: set[str]) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
        self.secrets = {s for s in secrets if len(s) >= 4 and s.lower() not in _NOT_SECRET}
        self.current = ""  # the test running now
        self.lines = 0
        self.hits: list[tuple[str, str, str]] = []  # (test, secret, line)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is still searched
            line = repr(record.__dict__)
        self.lines += 1
        for secret in self.secrets:
            if secret in line:
                self.hits.append((self.current, secret, line[:500]))


LOG_SCAN = SecretScan(conf_secrets() | set(filter(None, os.environ.get(
    "SMPPD_TEST_SECRETS", "").split(","))))


def register_secret(value: str) -> str:
    LOG_SCAN.secrets.add(value)
    return value


@pytest.fixture(autouse=True)
def _scan_every_log_line(request: pytest.FixtureRequest) -> None:
    # Per test, not per session: a test that reconfigures logging (setup_logging
    # replaces the root handlers) must not switch the scan off for the rest of the run.
    root = logging.getLogger()
    if LOG_SCAN not in root.handlers:
        root.addHandler(LOG_SCAN)
    root.setLevel(logging.DEBUG)
    LOG_SCAN.current = request.node.nodeid


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if LOG_SCAN.hits:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
        for test, secret, line in LOG_SCAN.hits[:20]:
            masked = secret[:2] + "*" * (len(secret) - 2)
            message = (f"SECRET IN A LOG LINE ({masked}) during {test}: "
                       + line.replace(secret, masked))
            if reporter is not None:
                reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
# --------------------------------------------------------------- end of the log scan


# ---------------------------------------------------------------------------------
# Two folders: tests/unit needs no server; tests/services talks to PostgreSQL, Redis,
# NATS or OpenBao. Every test in tests/services carries the ``services`` marker, so
# ``pytest -m "not services"`` (or ``pytest tests/unit``) runs where no server is up.

_SERVICES = Path(__file__).resolve().parent / "services"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICES in item.path.parents:
            item.add_marker(pytest.mark.services)
