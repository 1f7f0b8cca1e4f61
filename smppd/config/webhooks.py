"""[webhooks] (delivery of DLR and MO events to HTTP callbacks) and [[tenants]] (each
tenant's default callback, the secret that signs it, its MO destinations)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from smppd.config.errors import Problems
from smppd.config.fields import CallbackUrl
from smppd.config.sections import Section
from smppd.tls import TlsFileError, receiver_context


class WebhooksSection(Section):
    """Delivery of DLR and MO events to HTTP callbacks (smppd.webhooks)."""

    max_age: float = Field(default=86_400.0, gt=0)  # seconds retried, then a dead letter
    timeout: float = Field(default=10.0, gt=0, le=300)  # seconds per attempt, redirects included
    per_host: int = Field(default=8, ge=1, le=1000)  # requests at once to one receiver host
    in_flight: int = Field(default=256, ge=1, le=10_000)  # deliveries at once, all hosts
    backoff_min: float = Field(default=1.0, gt=0)  # first retry after about this (jittered)
    backoff_max: float = Field(default=600.0, gt=0)  # doubling stops here
    poll_interval: float = Field(default=1.0, gt=0)  # seconds between looks for due retries
    # Seconds a dead letter is kept for a replay, then deleted (0: until replayed).
    dead_retention: float = Field(default=7 * 86_400.0, ge=0)
    # A CA file trusted for https receivers besides the system's CAs (a private CA).
    tls_ca: Path | None = None

    _ssl: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> WebhooksSection:
        if self.backoff_max < self.backoff_min:
            raise Problems([(("backoff_max",), "must be at least backoff_min")])
        if self.tls_ca is not None:
            try:
                self._ssl = receiver_context(ca=self.tls_ca)
            except TlsFileError as exc:
                raise Problems([((exc.key,), exc.message)]) from None
        return self

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """For https receivers when ``tls_ca`` is set; None: the system's CAs."""
        return self._ssl


MIN_SECRET = 16  # characters of a webhook secret


class TenantConfig(Section):
    """A tenant's webhooks: a default callback_url for its DLRs (and its MO), the secret
    that signs them, and the destinations (short codes, numbers) whose MO are its."""

    id: str = Field(pattern=r"^[A-Za-z0-9._\-]{1,64}$")
    callback_url: CallbackUrl | None = None
    secret: SecretStr | None = None
    secret_env: str | None = None  # name of an environment variable, read at load
    mo_destinations: list[Annotated[str, Field(pattern=r"^\+?[0-9]{3,15}$")]] = Field(
        default_factory=list)

    _secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("mo_destinations")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        return [d.lstrip("+") for d in value]

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TenantConfig:
        sources = [k for k in ("secret", "secret_env") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise Problems([(("secret", "secret_env"), "exactly one of secret, secret_env "
                              "is required (webhooks are always signed)")])
        value = self.secret.get_secret_value() if self.secret is not None else None
        if self.secret_env is not None:
            value = (info.context or {}).get("env", os.environ).get(self.secret_env)
            if value is None:
                raise Problems([(("secret_env",),
                                  f"environment variable {self.secret_env} is not set")])
        assert value is not None
        if len(value) < MIN_SECRET:
            raise Problems([((sources[0],), f"must be at least {MIN_SECRET} characters")])
        self._secret = SecretStr(value)
        return self

    def secret_value(self) -> str:
        assert self._secret is not None  # set by the validator
        return self._secret.get_secret_value()
