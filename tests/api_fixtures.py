"""The control API over real HTTP against a daemon bound to the simulator, optionally
with bearer tokens of two tenants (``a``, ``b``), a global submitter and the global
roles (operate, admin)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from e2e_helpers import mno, operator, running_sim, submits, wait_bound, wait_for, write_config

from simulators.server import SmscSimulator
from smppd.config import load_config
from smppd.runtime.daemon import Daemon

GOOD: dict[str, Any] = {"tenant_id": "t1", "source": "SMPPD", "destination": "+93701234567",
                        "text": "hello"}
# name -> (secret, roles, tenants)
TOKENS: dict[str, tuple[str, list[str], list[str] | None]] = {
    "tenant-a": ("token-of-a", ["submit", "read"], ["a"]),
    "tenant-b": ("token-of-b", ["submit", "read"], ["b"]),
    "a-and-b": ("token-of-a-and-b", ["submit", "read"], ["a", "b"]),
    "submitter": ("token-global-submit", ["submit", "read"], None),
    "operator": ("token-operate", ["operate"], None),
    "admin": ("token-admin", ["admin"], None),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def auth_toml() -> str:
    lines = []
    for name, (secret, roles, tenants) in TOKENS.items():
        lines += ["[[auth.tokens]]", f'name = "{name}"',
                  f'sha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"',
                  "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]"]
        if tenants is not None:
            lines.append("tenants = [" + ", ".join(f'"{t}"' for t in tenants) + "]")
    return "\n".join(lines) + "\n"


class Api:
    def __init__(self, http: aiohttp.ClientSession, daemon: Daemon, sim: SmscSimulator) -> None:
        self.http = http
        self.daemon = daemon
        self.sim = sim

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, str]:
        async with self.http.request(method, path, **kwargs) as resp:
            text = await resp.text()
            body = await resp.json(content_type=None) if "json" in resp.content_type else None
            return resp.status, body, text

    async def final(self, message_id: str, headers: dict[str, str] | None = None,
                    ) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            status, body, _ = await self.call("GET", f"/v1/messages/{message_id}",
                                              headers=headers)
            assert status == 200
            return body if body["state"] not in ("ACCEPTED", "SUBMITTED") else None
        result: dict[str, Any] = await wait_for(done, what=f"message {message_id} final")
        return result

    def sent(self) -> int:
        return len(submits(self.sim, "op"))


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, tokens: bool = False, store: Any = None,
                  **tables: Mapping[str, Any]) -> AsyncIterator[Api]:
    """The daemon (one operator "op" on the simulator) and a client of its API;
    ``tables`` go to the config as in e2e_helpers.write_config."""
    async with running_sim([mno("op")]) as sim:
        path = write_config(tmp_path, [operator("op", sim, prefix="9370")], **tables)
        if tokens:
            with path.open("a") as fh:
                fh.write(auth_toml())
        daemon = Daemon(load_config(path), store=store)
        await daemon.start()
        try:
            await wait_bound(daemon)
            base = f"http://127.0.0.1:{daemon.api_port}"
            async with aiohttp.ClientSession(base_url=base) as http:
                yield Api(http, daemon, sim)
        finally:
            await daemon.stop()


def fields_of(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}
