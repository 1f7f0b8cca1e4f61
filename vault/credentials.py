"""Per-operator SMPP credentials from Vault KV v2, with the last good ones kept in memory.

    store = CredentialStore(client, ["roshan", "mtn"], mount="secret",
                            path_template="smppd/operators/{operator_id}")
    await store.poll()                 # first call loads every operator
    store.password("roshan")           # for the bind; None if never read
    changed = await store.poll()       # later: operators whose KV version moved

If Vault goes away, ``current()`` keeps answering with what was last read and
``status()`` says Vault is unreachable; an operator never read stays ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import SecretNotFound, VaultClient, VaultError, VaultUnavailable

log = logging.getLogger("vault.credentials")

MAX_PASSWORD = 8  # SMPP v3.4: password is a C-octet string of at most 9 octets


@dataclass(frozen=True)
class Credentials:
    """One operator's bind credentials as of one KV version. The password never prints."""

    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    version: int = 0

    @classmethod
    def from_secret(cls, data: Mapping[str, Any], version: int, where: str) -> Credentials:
        """Validate a KV secret; errors name the field, never its value."""
        for key in ("system_id", "password"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise VaultError(f"{where}: field {key!r} is missing or not a non-empty string")
        if len(data["password"]) > MAX_PASSWORD:
            raise VaultError(f"{where}: field 'password' is longer than {MAX_PASSWORD} "
                             f"characters (SMPP v3.4 limit)")
        system_type = data.get("system_type", "")
        if not isinstance(system_type, str):
            raise VaultError(f"{where}: field 'system_type' is not a string")
        return cls(data["system_id"], data["password"], system_type, version)


@dataclass
class _State:
    creds: Credentials | None = None
    previous: Credentials | None = None  # the version before ``creds``, when seen
    error: str | None = None  # the last read failure, cleared by a good read
    refused: int | None = None  # a version the SMSC refused: not offered again


class CredentialStore:
    """Credentials of a fixed set of operators; the daemon owns the polling loop."""

    def __init__(self, client: VaultClient, operators: Iterable[str], *,
                 mount: str = "secret",
                 path_template: str = "smppd/operators/{operator_id}",
                 paths: Mapping[str, str] | None = None) -> None:
        """``paths`` overrides the template for some operators (``vault:<path>`` in config)."""
        self.client = client
        self.mount = mount
        overrides = dict(paths or {})
        self.paths = {op: overrides.get(op) or path_template.format(operator_id=op)
                      for op in operators}
        self._states = {op: _State() for op in self.paths}
        self.vault_reachable: bool | None = None  # None until the first call

    def __repr__(self) -> str:
        return f"CredentialStore({self.mount!r}, operators={sorted(self.paths)})"

    def _state(self, op_id: str) -> _State:
        try:
            return self._states[op_id]
        except KeyError:
            raise KeyError(f"unknown operator {op_id!r}") from None

    # -- what the daemon reads --

    def current(self, op_id: str) -> Credentials | None:
        """The credentials to bind with: the last good ones, or None if never read."""
        return self._state(op_id).creds

    def password(self, op_id: str) -> str | None:
        creds = self._state(op_id).creds
        return creds.password if creds is not None else None

    def password_source(self, op_id: str) -> Callable[[], str | None]:
        """A callable for one operator's bind code: always the current password."""
        self._state(op_id)
        return lambda: self.password(op_id)

    def version(self, op_id: str) -> int | None:
        creds = self._state(op_id).creds
        return creds.version if creds is not None else None

    def status(self, op_id: str) -> str:
        """One line for humans (API, logs): never contains a secret."""
        st = self._state(op_id)
        if st.creds is None:
            return f"no credentials: never read from Vault ({st.error or 'not polled yet'})"
        text = f"ok: version {st.creds.version}"
        if st.refused is not None:
            text = (f"fell back to version {st.creds.version}: version {st.refused} "
                    f"was refused by the SMSC")
        if st.error is not None:
            text += f"; using cached credentials, last Vault read failed: {st.error}"
        return text

    def statuses(self) -> dict[str, str]:
        return {op: self.status(op) for op in self.paths}

    # -- reading Vault --

    def _ok(self, st: _State) -> None:
        st.error = None
        self.vault_reachable = True

    def _failed(self, op_id: str, st: _State, exc: VaultError) -> None:
        if isinstance(exc, VaultUnavailable):
            self.vault_reachable = False
            message = f"vault unreachable: {exc}"
        else:
            self.vault_reachable = True
            message = str(exc)
        if st.error != message:
            log.warning("credentials for %s not read: %s", op_id, message,
                        extra={"event": "credentials_read_failed", "operator": op_id})
        st.error = message

    async def read_version(self, op_id: str, version: int | None = None) -> Credentials:
        """Read one version (the latest when None) without changing what is current."""
        self._state(op_id)  # a clear KeyError for an unknown operator
        path = self.paths[op_id]
        data, got = await self.client.kv_read(self.mount, path, version)
        return Credentials.from_secret(data, got, f"operator {op_id} ({self.mount}/{path})")

    def _adopt(self, op_id: str, st: _State, creds: Credentials) -> None:
        if st.creds is not None and st.creds.version != creds.version:
            st.previous = st.creds
        st.creds = creds
        st.refused = None
        log.info("credentials for %s at version %d", op_id, creds.version,
                 extra={"event": "credentials_loaded", "operator": op_id,
                        "version": creds.version})

    async def refresh(self, op_id: str) -> bool:
        """Read the latest version now (the reload endpoint). True if it changed what is
        current. Raises VaultError; the cached credentials stay."""
        st = self._state(op_id)
        try:
            creds = await self.read_version(op_id)
        except VaultError as exc:
            self._failed(op_id, st, exc)
            raise
        self._ok(st)
        if st.creds is not None and creds.version == st.creds.version:
            return False
        self._adopt(op_id, st, creds)
        return True

    async def poll(self) -> list[str]:
        """Check each operator's metadata; read and adopt any new version. Returns the
        operators whose current credentials changed (every readable one the first time).
        Never raises for Vault trouble: it lands in ``status()``."""
        changed = []
        for op_id, path in self.paths.items():
            st = self._states[op_id]
            try:
                latest = await self.client.kv_current_version(self.mount, path)
                known = st.creds.version if st.creds is not None else None
                if latest in (known, st.refused):
                    self._ok(st)
                    continue
                creds = await self.read_version(op_id)
            except VaultError as exc:
                self._failed(op_id, st, exc)
                continue
            self._ok(st)
            if st.creds is not None and creds.version in (st.creds.version, st.refused):
                continue
            self._adopt(op_id, st, creds)
            changed.append(op_id)
        return changed

    async def fall_back(self, op_id: str) -> Credentials:
        """The SMSC refused the current version (ESME_RINVPASWD / ESME_RBINDFAIL): go back
        to the version before it, read explicitly (or the one held in memory if Vault is
        down). ``poll()`` will not offer the refused version again. Raises VaultError
        when there is no previous version to go back to."""
        st = self._state(op_id)
        if st.creds is None:
            raise VaultError(f"operator {op_id}: no credentials to fall back from")
        refused = st.creds.version
        if refused <= 1:
            raise VaultError(f"operator {op_id}: version {refused} has no previous version")
        try:
            creds = await self.read_version(op_id, refused - 1)
            self._ok(st)
        except VaultError as exc:
            cached = st.previous
            if isinstance(exc, SecretNotFound) or cached is None or cached.version >= refused:
                self._failed(op_id, st, exc)
                raise
            self._failed(op_id, st, exc)
            creds = cached
        st.previous = None
        st.creds = creds
        st.refused = refused
        log.warning("operator %s: version %d refused by the SMSC, back to version %d",
                    op_id, refused, creds.version,
                    extra={"event": "credentials_rotation_failed", "operator": op_id,
                           "refused_version": refused, "version": creds.version})
        return creds
