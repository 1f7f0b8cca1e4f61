"""``smppd-faultproxy --listen 127.0.0.1:8474``: the fault proxy's API until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from smppd.runtime.logs import UtcFormatter
from smppd.version import version

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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await fp.stop()


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional here
        asyncio.run(main)
    else:
        uvloop.run(main)






def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smppd-faultproxy",
        description="TCP fault proxy with Toxiproxy's HTTP API (drive it with toxiproxy-python)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--listen", default="127.0.0.1:8474",
                        help="host:port of the HTTP API (default 127.0.0.1:8474)")
    parser.add_argument("--config", help="JSON file: a list of proxies to create at start, "
                                         "as POST /populate takes")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="log level (default: INFO)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    try:
        host, port = parse_address(args.listen, "--listen", any_port=True)
        proxies = None if args.config is None else json.loads(Path(args.config).read_text("utf-8"))
        _run_fast(run(host, port, proxies))
    except FieldError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
