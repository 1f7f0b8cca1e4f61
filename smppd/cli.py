"""`smppd`: run the daemon, check a config, or run the one-command demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("smppd")


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _serve(config_path: str) -> int:
    from smppd.config import ConfigError, load_config
    from smppd.daemon import Daemon
    from smppd.gc_tuning import tune_after_start

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
    from smppd.migrations import apply_migrations

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smppd", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("json", "text"), default="json")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", default="/etc/smppd/smppd.toml")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    mig = sub.add_parser("migrate", help="apply the SQL migrations (PostgreSQL) and exit")
    mig.add_argument("--config", "-c", default="/etc/smppd/smppd.toml")
    mig.add_argument("--seed", action="store_true",
                     help="also load the first market's seed data (operators, prefixes)")
    demo = sub.add_parser("demo", help="simulated MNOs + the daemon on embedded defaults")
    demo.add_argument("--exit", action="store_true", help="stop after printing the table")
    demo.add_argument("--messages", type=int, default=200, help="messages in the sample batch")
    demo.add_argument("--state-dir", default=None, help="where the demo's SQLite file goes")
    args = parser.parse_args(argv)

    from smppd.logs import setup_logging

    if args.command == "check-config":
        from smppd.config import check_config_command

        return check_config_command(args.file)
    if args.command == "migrate":
        setup_logging(args.log_level, json_lines=args.log_format == "json")
        return _run(_migrate(args.config, args.seed))
    if args.command == "demo":
        from smppd.demo import run_demo

        setup_logging("WARNING" if args.log_level == "INFO" else args.log_level,
                      json_lines=args.log_format == "json", stream=sys.stderr)
        return _run(run_demo(exit_after=args.exit, count=args.messages,
                             state_dir=args.state_dir))
    if args.command == "run":
        setup_logging(args.log_level, json_lines=args.log_format == "json")
        return _run(_serve(args.config))
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
