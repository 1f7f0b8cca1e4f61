"""``smppd-sim --config conf/simulator.toml``: run the SMSC simulator until SIGTERM/SIGINT.

``--ports-from`` and ``--admin-port`` move the listeners off the config's ports (0: free
ports), and ``--ready-file`` writes where each one listens once all are up, so a caller
that started the simulator as a subprocess (``smppd demo``) knows where to connect.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from smppd.version import version

from .config import ConfigError, SimConfig, load_config
from .console import LOG_LEVELS, UsageError, log_to_stdout, serve, stop_on_signals
from .server import SmscSimulator

log = logging.getLogger("simulators")


def with_ports(config: SimConfig, ports_from: int | None, admin_port: int | None) -> SimConfig:
    """The config with the MNOs on ports_from, ports_from + 1, ... (in config order; 0:
    each on a free port) and the admin API on admin_port (0: a free port)."""
    mnos = config.mnos
    if ports_from is not None:
        mnos = [dataclasses.replace(m, port=ports_from + i if ports_from else 0)
                for i, m in enumerate(mnos)]
    return dataclasses.replace(config, mnos=mnos, admin_port=(
        config.admin_port if admin_port is None else admin_port))


def ready_document(sim: SmscSimulator, config: SimConfig, original: SimConfig) -> str:
    mnos = [{"name": m.name, "host": m.host, "config_port": o.port, "port": sim.port_of(m.name)}
            for m, o in zip(config.mnos, original.mnos, strict=True)]
    return json.dumps({"pid": os.getpid(), "mnos": mnos, "admin_port": sim.admin_port})


async def run(config: SimConfig, original: SimConfig | None = None,
              ready_file: Path | None = None) -> None:
    sim = SmscSimulator(config)
    await sim.start()
    stop = stop_on_signals()
    try:
        if ready_file is not None:  # written whole, then renamed: a reader never sees half
            partial = ready_file.with_name(ready_file.name + ".partial")
            partial.write_text(ready_document(sim, config, original or config))
            partial.replace(ready_file)
        await stop.wait()
        log.info("stopping")
    finally:
        await sim.stop()


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: a free one)")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smppd-sim", description="SMSC (MNO) simulator: the "
                                "MNOs of a TOML config on their own ports, and an admin API")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    p.add_argument("--config", "-c", default="conf/simulator.toml",
                   help="TOML config file (default: conf/simulator.toml)")
    p.add_argument("--ports-from", type=_port, metavar="PORT",
                   help="put the MNOs on PORT, PORT+1, ... in config order instead of their "
                        "configured ports (0: each on a free port)")
    p.add_argument("--admin-port", type=_port, metavar="PORT",
                   help="the admin API's port instead of the configured one (0: a free port)")
    p.add_argument("--ready-file", type=Path, metavar="FILE",
                   help="once listening, write a JSON file with each MNO's port and the "
                        "admin port")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                   help="log level (default: INFO)")
    return p


def _simulation(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    """The run the arguments ask for; ConfigError, OSError or UsageError when they do not
    make one."""
    original = load_config(args.config)
    if args.ports_from and args.ports_from + len(original.mnos) - 1 > 65535:
        raise UsageError(f"--ports-from {args.ports_from} leaves no room for "
                         f"{len(original.mnos)} MNOs")
    config = with_ports(original, args.ports_from, args.admin_port)
    return run(config, original, args.ready_file)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log_to_stdout(args.log_level)
    return serve(log, lambda: _simulation(args), {ConfigError: 1, OSError: 1, UsageError: 2})


if __name__ == "__main__":
    sys.exit(main())
