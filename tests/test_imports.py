"""Every module imports on its own in a fresh interpreter (no hidden import-order cycles).

Modules are found on disk with pkgutil, so new ones are covered without editing this file.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("smppd", "control", "throttling", "correlation", "vault", "simulators")


def discover() -> list[str]:
    """Dotted names of every package and module under the top-level packages, without
    importing any of them (walk_packages would import packages in this process)."""
    names: list[str] = []

    def walk(path: Path, prefix: str) -> None:
        for info in pkgutil.iter_modules([str(path)]):
            name = f"{prefix}.{info.name}"
            names.append(name)
            if info.ispkg:
                walk(path / info.name, name)

    for package in PACKAGES:
        if (ROOT / package / "__init__.py").exists():
            names.append(package)
            walk(ROOT / package, package)
    return sorted(names)


MODULES = discover()


def test_discovery_finds_the_protocol_layer() -> None:
    assert {"smppd", "smppd.protocol.pdu", "smppd.connection"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_on_its_own(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
