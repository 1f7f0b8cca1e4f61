"""The daemon's own sections: [daemon], [api], [store] and [routing]."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from smppd.config.errors import Problems
from smppd.config.fields import POSTGRES_SCHEMES, ListenAddress, PostgresDsn, url_scheme
from smppd.tls import TlsFileError, server_context


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DaemonSection(Section):
    mode: Literal["embedded", "distributed"] = "embedded"
    state_dir: Path = Path("var")  # relative to the working directory
    drain_timeout: float = Field(default=10.0, gt=0)
    shadow: bool = False  # process and correlate, publish no DLR events


class ApiSection(Section):
    listen: ListenAddress = ("127.0.0.1", 8080)  # port 0 = any free port (tests)
    metrics_public: bool = True
    access_log: bool = False  # a line per request (event http_access); needs a restart
    # HTTPS: the certificate (PEM, the key in it or in tls_key); with tls_client_ca
    # every client must present a certificate that CA signed (the platform's mTLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> ApiSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        for key in ("tls_key", "tls_client_ca"):
            if getattr(self, key) is not None and self.tls_cert is None:
                problems.append(((key,), "needs tls_cert (the API's own certificate)"))
        if not problems and self.tls_cert is not None:
            try:
                self.ssl_context()  # a file that cannot be used fails the load, not the start
            except TlsFileError as exc:
                problems.append(((exc.key,), exc.message))
        if problems:
            raise Problems(problems)
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listener's TLS context; None: plain HTTP."""
        if self.tls_cert is None:
            return None
        return server_context(cert=self.tls_cert, key=self.tls_key, client_ca=self.tls_client_ca)


class StoreSection(Section):
    kind: Literal["sqlite", "postgres"] = "sqlite"
    path: Path | None = None  # sqlite; None = {daemon.state_dir}/smppd.sqlite
    dsn: SecretStr | None = None  # postgres
    receipt_hold_seconds: float = Field(default=30.0, gt=0)
    # Submits answered but not yet stored with their SMSC id, at which sending stops
    # until half are: a crash resends at most this many (plus the windows).
    max_unrecorded: int = Field(default=10_000, ge=1)

    @field_validator("dsn", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> StoreSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.kind == "postgres" and self.dsn is None:
            problems.append((("dsn",), 'is required when kind = "postgres" '
                             "(or set SMPPD_STORE_DSN)"))
        try:
            if self.kind == "postgres":
                url_scheme(self.dsn, POSTGRES_SCHEMES)
        except ValueError as exc:
            problems.append((("dsn",), str(exc)))
        if problems:
            raise Problems(problems)
        return self


class RoutingSection(Section):
    """Where the control data (routing rules, prefixes AND sender leases) lives."""

    source: Literal["sqlite", "postgres"] | None = None  # None: sqlite embedded, else postgres
    dsn: PostgresDsn | None = None  # postgres; defaults to store.dsn
    sqlite_path: Path | None = None  # None = {daemon.state_dir}/control.sqlite
    seed: bool = False  # load the MCC 412 seed at start (the demo)
    circuit_failures: int = Field(default=5, ge=1)  # failed submits in a row open it
    circuit_cooldown: float = Field(default=30.0, gt=0)  # seconds it stays open
