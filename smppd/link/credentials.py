"""Operators' SMPP credentials from Vault, and rotation without losing a message.

At start the daemon logs in and reads every Vault-backed operator's secret; an
operator whose secret could not be read stays unbound with a clear status. Then a
loop keeps the token alive and polls KV metadata: a new version rebinds that
operator's sessions one at a time (``Operator.rebind``: drain, unbind, bind with
the new password; the other binds keep sending). A bind refused for its password
falls back to the previous version. The last good credentials stay in memory, so
with Vault down binds keep working and reconnects use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vault.client import AppRoleAuth, TokenAuth, VaultClient, VaultError
from vault.credentials import CredentialStore

log = logging.getLogger("smppd.credentials")


class VaultCredentials:
    def __init__(self, settings: Any, operators: list[Any], *, poll_interval: float = 30.0) -> None:
        self.settings = settings
        self.poll_interval = poll_interval
        self.operator_ids = [op.id for op in operators if op.credentials is not None]
        paths = {op.id: op.vault_path for op in operators
                 if op.credentials is not None and op.vault_path}
        self.client = VaultClient(settings.addr, self._auth(settings))
        self.store = CredentialStore(self.client, self.operator_ids, mount=settings.mount,
                                     path_template=settings.path_template, paths=paths)
        self._tasks: list[asyncio.Task[None]] = []
        self._fallbacks: set[asyncio.Task[None]] = set()
        self.rotations = 0
        self.failed_rotations = 0

    @staticmethod
    def _auth(settings: Any) -> AppRoleAuth | TokenAuth:
        if settings.auth == "approle":
            secret_file = Path(settings.secret_id_file)
            if not secret_file.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
                # systemd's LoadCredential= puts the secret_id there
                secret_file = Path(os.environ["CREDENTIALS_DIRECTORY"]) / secret_file
            return AppRoleAuth(settings.role_id, secret_file)
        return TokenAuth.from_env(settings.token_env)

    def uses_vault(self, operator_id: str) -> bool:
        return operator_id in self.operator_ids

    def password_source(self, operator_id: str) -> Callable[[], str | None]:
        return self.store.password_source(operator_id)

    def status(self, operator_id: str) -> str:
        return self.store.status(operator_id)

    async def start(self, operators: dict[str, Any]) -> None:
        """Log in and read every secret; a Vault that is down leaves those operators
        unbound (with a status saying why) and the loop keeps trying."""
        try:
            await self.client.login()
        except VaultError as exc:
            log.error("vault login failed", extra={"event": "vault_login_failed",
                                                   "error": str(exc)})
        await self.store.poll()
        for op_id in self.operator_ids:
            op = operators.get(op_id)
            if op is not None:
                op.on_credentials_refused = self._refused
                op.describe_credentials = lambda op_id=op_id: self.store.status(op_id)
        self._tasks = [
            asyncio.ensure_future(self._keep_token_alive()),
            asyncio.ensure_future(self._poll_loop(operators)),
        ]

    async def _keep_token_alive(self) -> None:
        await self.client.keep_token_alive()

    async def _poll_loop(self, operators: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            for op_id in await self.store.poll():
                op = operators.get(op_id)
                if op is not None:
                    await self.rotate(op)

    async def reload(self, op: Any) -> bool:
        """POST /v1/operators/{id}/credentials/reload: read now, rebind if it changed."""
        if await self.store.refresh(op.id):
            return await self.rotate(op)
        return True

    async def rotate(self, op: Any) -> bool:
        log.info("credentials rotated: rebinding", extra={
            "event": "credentials_rotated", "operator": op.id,
            "version": self.store.version(op.id)})
        ok = bool(await op.rebind())
        self.rotations += 1
        if not ok:
            self.failed_rotations += 1
            log.error("rotation did not complete: a bind did not come back",
                      extra={"event": "rotation_failed", "operator": op.id})
        return ok

    def _refused(self, op: Any, status: int) -> None:
        task = asyncio.ensure_future(self._fall_back(op, status))
        self._fallbacks.add(task)
        task.add_done_callback(self._fallbacks.discard)

    async def _fall_back(self, op: Any, status: int) -> None:
        try:
            creds = await self.store.fall_back(op.id)
        except VaultError as exc:
            log.error("no credentials to fall back to", extra={
                "event": "credentials_fallback_failed", "operator": op.id, "error": str(exc)})
            return
        self.failed_rotations += 1
        log.error("bind refused with the new credentials: using the previous version",
                  extra={"event": "credentials_fallback", "operator": op.id,
                         "status": status, "version": creds.version})

    def token_ttl(self) -> float | None:
        return self.client.token_ttl_remaining()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()
