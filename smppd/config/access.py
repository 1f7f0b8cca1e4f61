"""Secrets and who may do what: [vault] (operator credentials) and [auth] (API tokens)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from smppd.config.errors import Problems
from smppd.config.sections import Section


class VaultSection(Section):
    addr: str
    auth: Literal["approle", "token"] = "approle"
    role_id: str | None = None  # approle
    secret_id_file: Path | None = None  # approle; file holding the secret_id
    token_env: str = "VAULT_TOKEN"  # noqa: S105 -- a variable name, not a token
    mount: str = "secret"  # KV v2 mount point
    path_template: str = "smppd/operators/{operator_id}"  # for credentials = "vault"
    poll_interval: float = Field(default=30.0, gt=0)  # seconds between KV version checks

    @model_validator(mode="after")
    def _check(self) -> VaultSection:
        problems: list[tuple[tuple[str, ...], str]] = []
        if not self.addr.startswith(("http://", "https://")):
            problems.append((("addr",), "must start with http:// or https://"))
        if self.auth == "approle":
            for key in ("role_id", "secret_id_file"):
                if getattr(self, key) is None:
                    problems.append(((key,), 'is required when auth = "approle"'))
        try:
            self.path_template.format(operator_id="x")
        except (KeyError, IndexError, ValueError):
            problems.append((("path_template",), "may only use the {operator_id} placeholder"))
        if problems:
            raise Problems(problems)
        return self


class AuthToken(Section):
    name: str = Field(min_length=1, max_length=64)  # for logs and audit; never the token
    sha256: Annotated[str, AfterValidator(lambda v: _sha256(v))]
    roles: list[Literal["read", "submit", "operate", "admin"]] = Field(min_length=1)
    # The tenants a read/submit token acts for (None: every tenant).
    tenants: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")]] | None = Field(
        default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> AuthToken:
        if self.tenants is not None and {"operate", "admin"} & set(self.roles):
            raise Problems([(("tenants",), "operate and admin tokens are global:"
                              " list tenants on read or submit tokens only")])
        return self


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be the 64 hex digits of the token's SHA-256 digest")
    return value.lower()


class AuthSection(Section):
    """Bearer tokens of the control API; none configured = the API is open."""

    tokens: list[AuthToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> AuthSection:
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise Problems([(("tokens",), "token names must be unique")])
        return self
