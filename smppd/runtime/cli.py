"""`smppd`: run the daemon, check a config, or run the one-command demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from smppd.version import version

log = logging.getLogger("smppd")


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _serve(config_path: str) -> int:
    from smppd.config import ConfigError, load_config
    from smppd.runtime.daemon import Daemon
    from smppd.runtime.gc_tuning import tune_after_start

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    daemon = Daemon(config)
    try:
        await daemon.start()
    except Exception as exc:
        # A daemon that cannot start all of itself says so and exits non-zero; start()
        # has already stopped (unbound, closed) whatever it had started.
        log.critical("start failed", extra={"event": "start_failed",
                                            "error": f"{type(exc).__name__}: {exc}"})
        return 1
    tune_after_start()
    await daemon.run_until_signalled()
    return 0


async def _migrate(config_path: str, seed: bool) -> int:
    """Forward-only and idempotent; safe from several replicas at once."""
    from smppd.config import ConfigError, load_config
    from smppd.runtime.migrations import apply_migrations

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        applied = await apply_migrations(config, seed=seed)
    except Exception as exc:
        print(f"migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for name in applied:
        print(f"applied {name}")
    print(f"migrate: {len(applied)} applied, schema up to date")
    return 0


DEFAULT_CONFIG = "/etc/smppd/smppd.toml"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")




def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: a free one)")
    return int(text)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 100_000):
        raise argparse.ArgumentTypeError(f"{text!r} is not a count from 1 to 100000")
    return int(text)


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name. After it they
    default to SUPPRESS, so they override the ones before only when given."""
    def default(value: str) -> str:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--log-level", type=str.upper, choices=LEVELS, default=default("INFO"),
                        help="log level (default: INFO; the demo: WARNING)")
    parser.add_argument("--log-format", choices=("json", "text"), default=default("json"),
                        help="one JSON object per line (default) or text with the same fields")
    parser.add_argument("--version", action="version", version=f"smppd {version()}")


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", default=None,
                        help=f"the config file (default: $SMPPD_CONFIG, else {DEFAULT_CONFIG})")


def config_path(args: argparse.Namespace, environ: Any = None) -> str:
    """--config, else $SMPPD_CONFIG, else the packaged unit's path."""
    import os

    env = os.environ if environ is None else environ
    return str(args.config or env.get("SMPPD_CONFIG") or DEFAULT_CONFIG)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smppd", description=__doc__)
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon")
    check = sub.add_parser("check-config", help="validate a config file and exit "
                           "(0 valid, 1 invalid, 2 missing)")
    check.add_argument("file", nargs="?", help="the config file (or give --config)")
    mig = sub.add_parser("migrate", help="apply the SQL migrations (PostgreSQL) and exit")
    for command in (run, check, mig):
        _config_option(command)
    mig.add_argument("--seed", action="store_true",
                     help="also load the first market's seed data (operators, prefixes)")
    demo = sub.add_parser("demo", help="simulated MNOs + the daemon on embedded defaults")
    demo.add_argument("--exit", action="store_true",
                      help="stop after printing the table (exit 1 if a message did not "
                           "reach a final state)")
    demo.add_argument("--messages", type=_count, default=200, metavar="N",
                      help="messages in the sample batch (default: 200)")
    demo.add_argument("--state-dir", default=None, metavar="DIR",
                      help="where the demo's SQLite files go (default: a new temporary "
                           "directory)")
    demo.add_argument("--api-port", type=_port, default=None, metavar="PORT",
                      help="the API's port (default: 8080, or a free port when 8080 is "
                           "taken; 0: a free port)")
    demo.add_argument("--sim-port", type=_port, default=None, metavar="PORT",
                      help="the first of the five simulated MNOs' ports (default: 2775, or "
                           "free ports when those are taken; 0: free ports)")
    for command in (run, check, mig, demo):
        _globals(command, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser_ = parser()
    args = parser_.parse_args(argv)

    from smppd.runtime.logs import setup_logging

    json_lines = args.log_format == "json"
    if args.command == "check-config":
        from smppd.config import check_config_command

        if args.file and args.config and args.file != args.config:
            parser_.error("check-config: give the file once (FILE or --config), not both")
        return check_config_command(args.file or config_path(args))
    if args.command == "migrate":
        setup_logging(args.log_level, json_lines=json_lines)
        return _run(_migrate(config_path(args), args.seed))
    if args.command == "demo":
        from smppd.runtime.demo import run_demo

        setup_logging("WARNING" if args.log_level == "INFO" else args.log_level,
                      json_lines=json_lines, stream=sys.stderr)
        return _run(run_demo(exit_after=args.exit, count=args.messages,
                             state_dir=args.state_dir, api_port=args.api_port,
                             sim_port=args.sim_port))
    if args.command == "run":
        setup_logging(args.log_level, json_lines=json_lines)
        return _run(_serve(config_path(args)))
    parser_.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
