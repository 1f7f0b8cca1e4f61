"""Live reload (SIGHUP, POST /v1/admin/reload): re-read the config and apply it.

The file is loaded and validated first; an invalid one changes nothing and is
reported (log line, API answer, STATUS=). A valid one is compared with the running
config operator by operator (``plan``), then applied:

- added operators bind; removed ones leave routing at once, keep sending what they
  have queued (bounded by the drain timeout), drain their windows and unbind, and
  any part still unsent is marked FAILED with a reason (never silently dropped);
- TPS, window, bind count, status table and per-message settings apply in place,
  binds stay up (same connections);
- hosts, credentials and session settings rebind (``Operator.rebind``).

Sections that only take effect at start (api, store, redis, nats, vault, daemon
mode) are swapped in but reported as ``restart_required``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from correlation.store import CorrelationStore
from smppd.config import Config, ConfigError, OperatorConfig, load_config
from smppd.link.bind import BindWorker
from smppd.link.operator import Operator
from smppd.runtime.fleet import Fleet
from smppd.runtime.notify import Notifier

log = logging.getLogger("smppd.reload")

# Changes that need the sessions to bind again.
REBIND_KEYS = ("hosts", "system_id", "bind_type", "bind_types", "system_type",
               "enquire_link_interval", "inactivity_timeout", "response_timeout",
               "tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "tls_verify")
# Sections read only at start.
START_ONLY = ("api", "store", "redis", "nats", "vault")


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retuned: dict[str, list[str]] = field(default_factory=dict)  # id -> changed keys
    rebind: dict[str, list[str]] = field(default_factory=dict)  # id -> why
    restart_required: list[str] = field(default_factory=list)


@dataclass
class ReloadResult:
    ok: bool
    plan: Plan = field(default_factory=Plan)
    errors: list[tuple[str, str]] = field(default_factory=list)
    failed_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        if not self.ok:
            return {"reloaded": False,
                    "errors": [{"field": k, "message": m} for k, m in self.errors]}
        return {"reloaded": True, "added": self.plan.added, "removed": self.plan.removed,
                "retuned": self.plan.retuned, "rebound": sorted(self.plan.rebind),
                "restart_required": self.plan.restart_required,
                "failed_messages": self.failed_messages}


def _credentials(cfg: OperatorConfig) -> tuple[object, ...]:
    return (cfg.password_value(), cfg.password_env, cfg.credentials, cfg.vault_path)


def plan(old: Config, new: Config) -> Plan:
    """What applying ``new`` over the running ``old`` config means, operator by operator."""
    result = Plan()
    before = {op.id: op for op in old.operators}
    after = {op.id: op for op in new.operators}
    result.added = [i for i in after if i not in before]
    result.removed = [i for i in before if i not in after]
    ignored = {"password", "password_env", "credentials"}  # compared as credentials
    for op_id in (i for i in after if i in before):
        a, b = before[op_id].model_dump(exclude=ignored), after[op_id].model_dump(exclude=ignored)
        changed = [k for k in b if a.get(k) != b[k]]
        why = [k for k in changed if k in REBIND_KEYS]
        if _credentials(before[op_id]) != _credentials(after[op_id]):
            why.append("credentials")
        if why:
            result.rebind[op_id] = why
        tuned = [k for k in changed if k not in REBIND_KEYS]
        if tuned:
            result.retuned[op_id] = tuned
    for section in START_ONLY:
        if getattr(old, section) != getattr(new, section):
            result.restart_required.append(section)
    if old.daemon.mode != new.daemon.mode or old.daemon.state_dir != new.daemon.state_dir:
        result.restart_required.append("daemon")
    return result


class Reloader:
    """Applies config reloads to the running fleet, one at a time."""

    def __init__(self, fleet: Fleet, store: CorrelationStore, notifier: Notifier) -> None:
        self.fleet = fleet
        self.store = store
        self.notifier = notifier
        self._lock = asyncio.Lock()

    async def reload(self, path: str | Path | None = None) -> ReloadResult:
        async with self._lock:
            notifier = self.notifier
            notifier.reloading()
            result = await self._reload(path)
            if result.ok:
                notifier.ready(self.fleet.summary())
            else:
                first = f"{result.errors[0][0]}: {result.errors[0][1]}" if result.errors else ""
                notifier.ready(f"reload failed, running the previous config ({first}); "
                               + self.fleet.summary())
            return result

    async def _reload(self, path: str | Path | None) -> ReloadResult:
        fleet = self.fleet
        source = path or fleet.config.source_file
        if source is None:
            return self._rejected([("", "the running config was not loaded from a file")])
        try:
            new = load_config(source)
        except ConfigError as exc:  # messages never carry secret values
            return self._rejected(exc.problems, str(source))
        changes = plan(fleet.config, new)
        log.info("reloading", extra={"event": "reload", "added": changes.added,
                                     "removed": changes.removed,
                                     "retuned": sorted(changes.retuned),
                                     "rebind": sorted(changes.rebind),
                                     "restart_required": changes.restart_required})
        fleet.config = new
        for op_cfg in new.operators:
            if op_cfg.id in changes.added:
                await fleet.add(op_cfg)
            elif op_cfg.id in changes.retuned or op_cfg.id in changes.rebind:
                await self._update(fleet.operators[op_cfg.id], op_cfg,
                                   rebind=op_cfg.id in changes.rebind)
        failed = 0
        if changes.removed:
            counts = await asyncio.gather(*(self._remove(i) for i in changes.removed))
            failed = sum(counts)
        log.info("reloaded", extra={"event": "reloaded", "operators": len(fleet.operators)})
        return ReloadResult(True, changes, failed_messages=failed)

    def _rejected(self, problems: list[tuple[str, str]], source: str = "") -> ReloadResult:
        log.error("reload rejected: config invalid, nothing changed",
                  extra={"event": "reload_rejected", "file": source,
                         "problems": [f"{k}: {m}" if k else m for k, m in problems]})
        return ReloadResult(False, errors=problems)

    async def _update(self, op: Operator, cfg: OperatorConfig, *, rebind: bool) -> None:
        old = op.config
        op.config = cfg  # status table and per-message settings are read from here
        op.password = self.fleet.password_source(cfg)
        if cfg.tps != old.tps:
            op.set_tps(cfg.tps)
            self.fleet.show_limit(op)
        if cfg.tps_margin != old.tps_margin:
            op.set_tps_margin(cfg.tps_margin)
        if cfg.window != old.window:
            op.set_window(cfg.window)
        await self._resize_binds(op, cfg.binds)
        if rebind:
            if cfg.hosts != old.hosts:
                for bind in op.binds:
                    bind.host_index = 0  # the old index may point past the new list
            # A standby has no session to rebind: it binds with the new settings once
            # it leads (and waiting for its binds would hold the reload up).
            if self.fleet.runs_binds(op.id):
                await op.rebind()

    async def _resize_binds(self, op: Operator, count: int) -> None:
        while len(op.binds) < count:
            bind = BindWorker(op, len(op.binds))
            op.binds.append(bind)
            if self.fleet.runs_binds(op.id):  # a standby starts it with the others
                bind.start()
        extra = op.binds[count:]
        del op.binds[count:]
        # Parts in an extra bind's window go back on the queue when it closes.
        await asyncio.gather(*(b.stop(self.fleet.config.daemon.drain_timeout) for b in extra))

    async def _remove(self, op_id: str) -> int:
        """Take the operator out of routing, let it send what it holds, unbind it."""
        fleet = self.fleet
        op = fleet.operators.pop(op_id)  # the dispatcher shares this dict: no new messages
        drain = fleet.config.daemon.drain_timeout
        deadline = time.monotonic() + drain
        # PartQueue has no "empty" event to wait on; a short poll, bounded by the drain timeout.
        while len(op.queue) and op.healthy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await op.stop(drain)
        leftover = {part.message_id for part in op.queue.drain()}
        for message_id in leftover:
            await self.store.set_message_state(message_id, "FAILED",
                                                 reason="operator removed by a config reload",
                                                 at=time.time())
        # Renewed until now so no peer binds while this one drains; released only
        # once the binds are down.
        await fleet.retire(op_id)
        if leftover:
            log.warning("operator removed with unsent messages",
                        extra={"event": "operator_removed", "operator": op_id,
                               "failed": len(leftover)})
        else:
            log.info("operator removed", extra={"event": "operator_removed", "operator": op_id})
        return len(leftover)
