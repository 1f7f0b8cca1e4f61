"""An async wrapper over hvac (synchronous): KV v2, AppRole or token auth, token renewal.

Every hvac call runs on one worker thread, so the event loop never blocks and the
requests session is never used from two threads at once. Errors come out as
``VaultError`` subclasses whose messages name the path and the cause, never a secret.

Renewal policy: renew-self once 2/3 of the token's TTL has gone; re-login (AppRole)
when the server refuses the renewal or caps it (the token is near its max TTL).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

log = logging.getLogger("vault")

T = TypeVar("T")

RENEW_AT = 2 / 3  # fraction of the TTL after which the token is renewed


class VaultError(Exception):
    """A Vault operation failed; the message is safe to log."""


class VaultUnavailable(VaultError):
    """Vault cannot be reached (connection refused, timeout, sealed, 5xx)."""


class VaultAuthError(VaultError):
    """Login refused, or the token was revoked/expired and cannot be replaced."""


class SecretNotFound(VaultError):
    """No secret (or no such version) at the path."""


class CasConflict(VaultError):
    """A check-and-set write lost: the secret moved past ``expected`` meanwhile."""

    def __init__(self, path: str, expected: int) -> None:
        super().__init__(f"check-and-set conflict at {path}: version {expected} is no "
                         f"longer the current one (another writer got there first)")
        self.path = path
        self.expected = expected


@dataclass(frozen=True)
class AppRoleAuth:
    """AppRole login: role_id from config, secret_id read from a file at each login."""

    role_id: str
    secret_id_file: Path
    mount: str = "approle"

    def secret_id(self) -> str:
        try:
            return Path(self.secret_id_file).read_text().strip()
        except OSError as exc:
            raise VaultAuthError(f"cannot read the AppRole secret_id file "
                                 f"{self.secret_id_file}: {exc.strerror}") from None


@dataclass(frozen=True)
class TokenAuth:
    """A token given from outside (an environment variable); cannot re-login."""

    token: str = field(repr=False)

    @classmethod
    def from_env(cls, name: str = "VAULT_TOKEN",
                 environ: Mapping[str, str] | None = None) -> TokenAuth:
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if not value:
            raise VaultAuthError(f"environment variable {name} (the Vault token) is not set")
        return cls(value)


Auth = AppRoleAuth | TokenAuth


def _describe(exc: BaseException) -> str:
    """A cause without response bodies or URLs' query strings: the class and status."""
    if isinstance(exc, hvac.exceptions.VaultError):
        errors = exc.errors if isinstance(exc.errors, list) else []
        detail = "; ".join(str(e) for e in errors)[:200]
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return type(exc).__name__


class VaultClient:
    """One Vault server, one identity. ``await login()`` first (a token auth just checks)."""

    def __init__(self, addr: str, auth: Auth, *, timeout: float = 5.0,
                 verify: bool | str = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.addr = addr
        self.auth = auth
        self.clock = clock
        # token="" keeps hvac from picking VAULT_TOKEN or ~/.vault-token on its own
        self._hvac = hvac.Client(url=addr, token="", timeout=timeout, verify=verify)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vault")
        self._obtained_at: float | None = None  # clock() when the TTL below was granted
        self._ttl: float = 0.0  # seconds; 0 = never expires
        self._renewable = False
        self.renewals = 0
        self.logins = 0

    def __repr__(self) -> str:
        return f"VaultClient({self.addr!r}, {type(self.auth).__name__})"

    async def _call(self, fn: Callable[[], T], what: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise VaultUnavailable(f"{what}: Vault at {self.addr} unreachable "
                                   f"({type(exc).__name__})") from None
        except (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError,
                hvac.exceptions.BadGateway) as exc:
            raise VaultUnavailable(f"{what}: Vault at {self.addr} unavailable "
                                   f"({_describe(exc)})") from None
        except hvac.exceptions.InvalidPath as exc:
            raise SecretNotFound(f"{what}: not found ({_describe(exc)})") from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise VaultAuthError(f"{what}: permission denied ({_describe(exc)})") from None
        except hvac.exceptions.VaultError as exc:
            raise VaultError(f"{what}: {_describe(exc)}") from None

    # -- the token --

    def _granted(self, auth: Mapping[str, Any]) -> None:
        self._obtained_at = self.clock()
        self._ttl = float(auth.get("lease_duration") or auth.get("ttl") or 0)
        self._renewable = bool(auth.get("renewable"))

    async def login(self) -> None:
        """Get a token (AppRole) or adopt and check the given one (token auth)."""
        if isinstance(self.auth, AppRoleAuth):
            role = self.auth
            secret_id = role.secret_id()

            def do_login() -> dict[str, Any]:
                resp = self._hvac.auth.approle.login(role.role_id, secret_id,
                                                     use_token=True, mount_point=role.mount)
                return dict(resp["auth"])
            try:
                granted = await self._call(do_login, "AppRole login")
            except VaultUnavailable:
                raise
            except VaultError as exc:  # e.g. "invalid role or secret ID" (a 400)
                raise VaultAuthError(str(exc)) from None
        else:
            self._hvac.token = self.auth.token
            data = await self._call(lambda: self._hvac.auth.token.lookup_self()["data"],
                                    "token lookup")
            granted = {"lease_duration": data.get("ttl"), "renewable": data.get("renewable")}
        self._granted(granted)
        self.logins += 1
        log.info("vault login", extra={"event": "vault_login", "addr": self.addr,
                                       "ttl": self._ttl})

    def token_ttl_remaining(self) -> float | None:
        """Seconds left on the token (for a metric): None before login, inf if it never expires."""
        if self._obtained_at is None:
            return None
        if self._ttl <= 0:
            return math.inf
        return max(0.0, self._obtained_at + self._ttl - self.clock())

    def renewal_due_in(self) -> float:
        """Seconds until ``renew_if_due`` has work to do (inf for a non-expiring token)."""
        if self._obtained_at is None:
            return 0.0
        if self._ttl <= 0:
            return math.inf
        return max(0.0, self._obtained_at + self._ttl * RENEW_AT - self.clock())

    async def renew_if_due(self) -> str:
        """Renew (or re-login) if 2/3 of the TTL has gone. Returns what was done:
        ``"none"``, ``"renewed"`` or ``"relogin"``. Raises VaultError when neither works."""
        if self.renewal_due_in() > 0:
            return "none"
        if self._obtained_at is None:
            await self.login()
            return "relogin"
        asked = self._ttl
        if self._renewable:
            try:
                auth = await self._call(
                    lambda: dict(self._hvac.auth.token.renew_self(increment=int(asked))["auth"]),
                    "token renewal")
            except VaultUnavailable:
                raise
            except VaultError:
                auth = None  # refused (revoked, expired): only a new login helps
            if auth is not None:
                self._granted(auth)
                self.renewals += 1
                # capped by the max TTL: renewals cannot go further, get a fresh token
                if not self._ttl < asked * RENEW_AT:
                    return "renewed"
                log.info("vault token near its max TTL", extra={"event": "vault_max_ttl",
                                                                  "ttl": self._ttl})
        if isinstance(self.auth, TokenAuth):
            raise VaultAuthError("the Vault token cannot be renewed and token auth cannot "
                                 "log in again")
        await self.login()
        return "relogin"

    async def keep_token_alive(self, retry: float = 5.0) -> None:
        """Run forever: renew or re-login on time; on failure retry every ``retry`` s."""
        while True:
            await asyncio.sleep(min(self.renewal_due_in(), 3600.0))
            try:
                await self.renew_if_due()
            except VaultError as exc:
                log.warning("vault token renewal failed: %s", exc,
                            extra={"event": "vault_renew_failed"})
                await asyncio.sleep(retry)

    # -- KV v2 --

    async def kv_read(self, mount: str, path: str,
                      version: int | None = None) -> tuple[dict[str, Any], int]:
        """The secret's data and its version (the latest when ``version`` is None)."""
        what = f"read {mount}/{path}" + (f" version {version}" if version else "")

        def read() -> tuple[dict[str, Any], int]:
            resp = self._hvac.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=mount, raise_on_deleted_version=True)
            return dict(resp["data"]["data"] or {}), int(resp["data"]["metadata"]["version"])
        return await self._call(read, what)

    async def kv_current_version(self, mount: str, path: str) -> int:
        """The metadata's current_version: cheap change detection without reading data."""
        return await self._call(
            lambda: int(self._hvac.secrets.kv.v2.read_secret_metadata(
                path, mount_point=mount)["data"]["current_version"]),
            f"metadata {mount}/{path}")

    async def kv_write(self, mount: str, path: str, data: Mapping[str, Any],
                       cas: int | None = None) -> int:
        """Write a new version; with ``cas`` only if ``cas`` is still the current version
        (0: only if the secret does not exist). Returns the new version."""
        def write() -> int:
            try:
                resp = self._hvac.secrets.kv.v2.create_or_update_secret(
                    path, secret=dict(data), cas=cas, mount_point=mount)
            except hvac.exceptions.InvalidRequest as exc:
                if cas is not None and "check-and-set" in str(exc.errors):
                    raise CasConflict(f"{mount}/{path}", cas) from None
                raise
            return int(resp["data"]["version"])
        return await self._call(write, f"write {mount}/{path}")

    async def kv_list(self, mount: str, path: str) -> list[str]:
        """Keys under a folder (sub-folders end with '/'); empty if there is none."""
        def list_keys() -> list[str]:
            try:
                resp = self._hvac.secrets.kv.v2.list_secrets(path, mount_point=mount)
            except hvac.exceptions.InvalidPath:
                return []
            return [str(k) for k in resp["data"]["keys"]]
        return await self._call(list_keys, f"list {mount}/{path}")

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._hvac.adapter.close()

    async def __aenter__(self) -> VaultClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
