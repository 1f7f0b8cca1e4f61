"""``smppd-faultproxy --listen 127.0.0.1:8474``: the fault proxy's API until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from smppd.version import version

from ..console import LOG_LEVELS, log_to_stdout, serve, stop_on_signals
from .api import FaultProxy
from .errors import FieldError
from .proxy import parse_address

log = logging.getLogger("simulators.faultproxy")


async def run(host: str, port: int, proxies: object = None) -> None:
    fp = FaultProxy()
    await fp.start(host, port)
    try:
        if proxies is not None:
            created = await fp.registry.populate(proxies)
            log.info("created %d proxies: %s", len(created), ", ".join(p.name for p in created))
        log.info("fault proxy API on http://%s:%d", host, fp.port)
        await stop_on_signals().wait()
        log.info("stopping")
    finally:
        await fp.stop()


def _proxy_api(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    """The run the arguments ask for; FieldError, OSError or ValueError (bad JSON) when
    they do not make one."""
    host, port = parse_address(args.listen, "--listen", any_port=True)
    proxies = None if args.config is None else json.loads(Path(args.config).read_text("utf-8"))
    return run(host, port, proxies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smppd-faultproxy",
        description="TCP fault proxy with Toxiproxy's HTTP API (drive it with toxiproxy-python)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--listen", default="127.0.0.1:8474",
                        help="host:port of the HTTP API (default 127.0.0.1:8474)")
    parser.add_argument("--config", help="JSON file: a list of proxies to create at start, "
                                         "as POST /populate takes")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="log level (default: INFO)")
    args = parser.parse_args(argv)
    log_to_stdout(args.log_level)
    # A FieldError is a bad argument (2, as argparse's); any other ValueError, bad JSON.
    return serve(log, lambda: _proxy_api(args), {FieldError: 2, OSError: 1, ValueError: 1})


if __name__ == "__main__":
    sys.exit(main())
