"""The whole file: every section, [defaults] merged into each operator, and the rules
that span sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from smppd.config.access import AuthSection, VaultSection
from smppd.config.cluster import LeasesSection, NatsSection, RedisSection
from smppd.config.errors import Problems
from smppd.config.operators import OperatorConfig, OperatorSettings
from smppd.config.sections import ApiSection, DaemonSection, RoutingSection, Section, StoreSection
from smppd.config.webhooks import TenantConfig, WebhooksSection


class Config(Section):
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    api: ApiSection = Field(default_factory=ApiSection)
    store: StoreSection = Field(default_factory=StoreSection)
    defaults: OperatorSettings = Field(default_factory=OperatorSettings)
    operators: list[OperatorConfig] = Field(min_length=1)
    redis: RedisSection | None = None
    nats: NatsSection | None = None
    vault: VaultSection | None = None
    auth: AuthSection = Field(default_factory=AuthSection)
    routing: RoutingSection = Field(default_factory=RoutingSection)
    leases: LeasesSection | None = None
    tenants: list[TenantConfig] = Field(default_factory=list)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Give each operator the [defaults] keys it does not set itself."""
        if not isinstance(data, dict):
            return data
        defaults, operators = data.get("defaults"), data.get("operators")
        if not isinstance(defaults, dict) or not isinstance(operators, list):
            return data
        inherited = {k: v for k, v in defaults.items() if k in OperatorSettings.model_fields}
        merged = []
        for op in operators:
            if isinstance(op, dict):
                given = inherited
                if "bind_types" in op:  # the operator lists its binds itself
                    given = {k: v for k, v in inherited.items()
                             if k not in ("bind_type", "binds")}
                op = {**given, **op}
                table, own = defaults.get("status_table"), op.get("status_table")
                if isinstance(table, dict) and isinstance(own, dict) and own is not table:
                    op["status_table"] = {**table, **own}
            merged.append(op)
        return {**data, "operators": merged}

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[tuple[tuple[str, ...], str]] = []
        seen: dict[str, int] = {}
        prefix_owner: dict[str, str] = {}
        for index, op in enumerate(self.operators):
            key = f"operators.{op.id}"
            if op.id in seen:
                problems.append(((f"{key}.id",), f"duplicate operator id (operators[{index}] "
                                 f"and operators[{seen[op.id]}])"))
            seen.setdefault(op.id, index)
            for prefix in op.prefixes:
                owner = prefix_owner.setdefault(prefix, op.id)
                if owner != op.id:
                    problems.append(((f"{key}.prefixes",),
                                     f"prefix {prefix} is also routed to operator {owner}"))
            if op.credentials is not None:
                if self.vault is None:
                    problems.append(((f"{key}.credentials",), "needs a [vault] section"))
                elif op.vault_path is None:
                    op._vault_path = self.vault.path_template.format(operator_id=op.id)
        if self.daemon.mode == "distributed":
            if self.store.kind != "postgres":
                problems.append((("store.kind",), 'must be "postgres" when daemon.mode = '
                                 '"distributed"'))
            if self.redis is None:
                problems.append((("redis.url",), 'is required when daemon.mode = "distributed"'))
        if (self.control_source == "postgres" and self.routing.dsn is None
                and self.store.dsn is None):
            problems.append((("routing.dsn",), 'is required when routing.source = "postgres" '
                             "and store.dsn is not set"))
        problems += self._tenant_problems()
        if problems:
            raise Problems(problems)
        return self

    def _tenant_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        tenant_of: dict[str, str] = {}
        seen: set[str] = set()
        for index, tenant in enumerate(self.tenants):
            if tenant.id in seen:
                problems.append(((f"tenants[{index}].id",), f"duplicate tenant id {tenant.id!r}"))
            seen.add(tenant.id)
            for destination in tenant.mo_destinations:
                owner = tenant_of.setdefault(destination, tenant.id)
                if owner != tenant.id:
                    problems.append(((f"tenants[{index}].mo_destinations",),
                                     f"{destination} is also a destination of tenant {owner}"))
        return problems

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        return None

    @property
    def source_file(self) -> Path | None:
        """The file this configuration was loaded from."""
        return self._source

    @property
    def sqlite_path(self) -> Path:
        """store.path, or {daemon.state_dir}/smppd.sqlite when unset."""
        return self.store.path or self.daemon.state_dir / "smppd.sqlite"

    @property
    def control_source(self) -> str:
        """routing.source, or sqlite (embedded) / postgres (distributed) when unset."""
        if self.routing.source is not None:
            return self.routing.source
        return "postgres" if self.daemon.mode == "distributed" else "sqlite"

    @property
    def control_sqlite_path(self) -> Path:
        return self.routing.sqlite_path or self.daemon.state_dir / "control.sqlite"

    def operator(self, operator_id: str) -> OperatorConfig:
        for op in self.operators:
            if op.id == operator_id:
                return op
        raise KeyError(operator_id)

    @property
    def total_binds(self) -> int:
        return sum(op.binds for op in self.operators)
