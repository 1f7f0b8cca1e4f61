"""The installed distribution's version, for --version and smppd_build_info."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version


def version() -> str:
    try:
        return dist_version("smppd")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"
