"""`smppd migrate`: every schema the daemon's configuration uses, brought up to date.

PostgreSQL schemas are forward-only SQL files applied under an advisory lock
(correlation.migrate); SQLite tables are created by their stores on open.
"""

from __future__ import annotations

from typing import Any

from correlation.migrate import migrate as migrate_postgres


async def apply_migrations(config: Any, *, seed: bool = False) -> list[str]:
    applied: list[str] = []
    if config.store.kind == "postgres":
        assert config.store.dsn is not None
        applied += [str(m) for m in await migrate_postgres(config.store.dsn.get_secret_value())]
    applied += await _control_migrations(config, seed)
    return applied


async def _control_migrations(config: Any, seed: bool) -> list[str]:
    """Routing rules, prefixes and sender leases (ops_routing, numbering)."""
    from control.data import migrate as migrate_control
    from smppd.runtime.control_wiring import control_data

    data = control_data(config)
    try:
        return list(await migrate_control(data, seed=seed or config.routing.seed))
    finally:
        await data.close()
