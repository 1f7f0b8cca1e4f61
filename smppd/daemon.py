"""The daemon: wires config, store, operators, dispatcher and control API, and runs
them in one uvloop event loop with an ordered shutdown.

Start: open the store (fail loudly if it cannot), queue what a previous run
accepted but did not submit, connect to NATS, start the binds, serve the API, take
dispatch commands, tell systemd READY=1.
Stop (SIGTERM/SIGINT): stop intake, drain windows with a timeout, unbind, settle
store writes, close the store; a second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from control.view import ANYONE, Caller, InputError, Unavailable
from correlation.matcher import ReceiptMatcher
from correlation.sqlite_store import SqliteStore
from smppd.config import Config, OperatorConfig, OperatorSettings
from smppd.credentials import VaultCredentials
from smppd.dispatch import Dispatcher
from smppd.events import EventSink, ShadowSink, StoredEvents
from smppd.message import MessageError, problems_of
from smppd.metrics import Metrics
from smppd.nats_bus import NatsBus
from smppd.notify import Notifier
from smppd.operator import Operator
from smppd.reload import Reloader
from smppd.statusboard import StatusBoard
from smppd.submissions import Submissions
from smppd.watchdog import DEFAULT_PERIOD, LoopWatchdog, RateMeter, status_line, watchdog_period
from vault.client import VaultError

log = logging.getLogger("smppd.daemon")


class Daemon:
    def __init__(self, config: Config, *, store: Any = None, sink: EventSink | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        if store is None:
            store = self._make_store(config)
        self.store = store
        self.matcher = ReceiptMatcher(store, clock=time.time,
                                      hold_seconds=config.store.receipt_hold_seconds)
        self.bus: NatsBus | None = None
        if sink is None and config.nats is not None:
            self.bus = NatsBus(config.nats, shadow=config.daemon.shadow)
            sink = self.bus
        if sink is None:
            sink = ShadowSink() if config.daemon.shadow else StoredEvents(store)
        self.webhooks, sink = self._webhooks(sink)
        self.sink = sink
        self.dispatcher = Dispatcher(store, self.matcher, sink, self.metrics,
                                     max_unrecorded=config.store.max_unrecorded)
        self.matcher.on_late_match = self.dispatcher.late_match
        self.submissions = Submissions(self.dispatcher, store)
        self.operators: dict[str, Operator] = {}
        self.redis: Any = None
        if config.redis is not None:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(config.redis.url.get_secret_value(),
                                           socket_timeout=1.0, socket_connect_timeout=1.0)
        self.vault: VaultCredentials | None = None
        if config.vault is not None and any(op.credentials for op in config.operators):
            self.vault = VaultCredentials(config.vault, config.operators,
                                          poll_interval=config.vault.poll_interval)
        self.standbys: dict[str, Any] = {}  # operator id -> smppd.leader.Standby
        for op_cfg in config.operators:
            op = self.make_operator(op_cfg)
            self.operators[op.id] = op
        self.dispatcher.operators = self.operators
        self.notifier = Notifier()
        self.runner: web.AppRunner | None = None
        self.api_port: int | None = None
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None
        self._exported: dict[tuple[str, str], int] = {}  # (metric, bind) -> count exported
        self._watchdog: asyncio.Task[None] | None = None
        self.rate = RateMeter()  # submit_sm per second, for STATUS=
        self.reloader = Reloader(self)
        self._init_control()
        self.board = StatusBoard(lambda: self.operators, unmatched=self._unmatched,
                                 held=lambda: self.matcher.held_count)
        self.ready = False

    def _init_control(self) -> None:
        """SelectOperator and ValidateLease, in-process seams of the dispatcher."""
        from control.routing import Circuits
        from smppd import controlplane

        routing = self.config.routing
        self.circuits = Circuits(routing.circuit_failures, routing.circuit_cooldown)
        self.control = controlplane.build(self.config, self.metrics.registry,
                                          lambda: self.operators, self.circuits)
        self.dispatcher.selector = controlplane.selector(self.control)
        if self.webhooks is not None:
            from smppd.webhooks import CallbackGuard

            self.dispatcher.callback_check = CallbackGuard(
                lambda: self.config, lambda: self.api_port, self.webhooks.expect)
        self.dispatcher.circuit = self.circuits.record
        if self.config.leases is not None:
            self.dispatcher.lease_check = controlplane.lease_check(self.control)

    def _webhooks(self, sink: EventSink) -> tuple[Any, EventSink]:
        """The webhook outbox worker, and the sink that feeds it (shadow mode publishes
        nothing: no webhooks either)."""
        if isinstance(sink, ShadowSink):
            return None, sink
        from smppd.webhooks import Deliverer, Tenants, WebhookSink

        deliverer = Deliverer(self.store, lambda: self.config, self.metrics)
        return deliverer, WebhookSink(sink, self.store, Tenants(lambda: self.config),
                                      combined=isinstance(sink, StoredEvents),
                                      on_queued=deliverer.queued)

    @staticmethod
    def _make_store(config: Config) -> Any:
        """SQLite in embedded mode; PostgreSQL (+ the Redis hot index) when distributed."""
        if config.store.kind == "postgres":
            from correlation.pg_store import PgStore

            assert config.store.dsn is not None  # the config's own rule
            redis_url = config.redis.url.get_secret_value() if config.redis else None
            prefix = f"{config.redis.key_prefix}:corr:" if config.redis else "smppd:corr:"
            return PgStore(config.store.dsn.get_secret_value(), redis_url=redis_url,
                           redis_prefix=prefix)
        path = Path(config.sqlite_path)
        # The state directory for the daemon's user only (systemd's StateDirectory= is
        # 0700 too); the store's files are made 0600 by SqliteStore.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStore(str(path))

    def _shared_bucket(self, op_cfg: Any) -> Any:
        """The operator's cluster-wide bucket in Redis; None keeps it in-process."""
        if self.redis is None or self.config.redis is None:
            return None
        from throttling.redis_bucket import RedisTokenBucket

        key = f"{self.config.redis.key_prefix}:bucket:{op_cfg.id}"
        return RedisTokenBucket(self.redis, key, op_cfg.tps, replicas=self.config.redis.replicas,
                                headroom=op_cfg.tps_margin)

    # -- lifecycle --

    async def start(self) -> None:
        """Start every part in order; if one fails, what was started is stopped again
        in reverse (binds unbound, API closed, store closed) and the error raised, so
        the process can exit non-zero with nothing left behind."""
        from smppd import controlplane

        async with contextlib.AsyncExitStack() as started:
            if self.redis is not None:
                started.push_async_callback(self.redis.aclose)
            await self.store.open()
            started.push_async_callback(self.store.close)
            await controlplane.start(self.control, self.config)
            started.push_async_callback(self.control.stop)
            resumed = await self.dispatcher.resume_pending()
            if resumed:
                log.info("resumed pending messages", extra={"event": "resumed", "count": resumed})
            restored = await self.dispatcher.inbound.restore_mo_parts()
            if restored:
                log.info("restored parts of MO messages", extra={
                    "event": "mo_parts_restored", "count": restored})
            if self.vault is not None:
                started.push_async_callback(self.vault.close)
                await self.vault.start(self.operators)
            if self.bus is not None:  # before the binds: a leader takes commands at once
                started.push_async_callback(self.bus.close)
                await self.bus.connect()
                await self._prepare_intake()
            started.push_async_callback(self._stop_binds)
            for op in self.operators.values():
                self.metrics.tps_limit.labels(op.id).set(op.limiter.limit)
                self.start_operator(op)
            started.push_async_callback(self._close_api)
            await self._start_api()
            if self.bus is not None:
                self.bus.start_consumer(self.dispatcher)
            if self.webhooks is not None:
                started.push_async_callback(self.webhooks.stop)
                await self.webhooks.start()
            self._housekeeping = asyncio.ensure_future(self._housekeep())
            self._watchdog = asyncio.ensure_future(self._watch())
            self.board.attach(*BOARD_LOGGERS)
            self.ready = True
            started.pop_all()  # from here on stop() owns the shutdown
        self.notifier.ready(self.summary())

    async def _stop_binds(self) -> None:
        """Unbind every operator (active/standby: leave its lease too), in reverse."""
        drain = self.config.daemon.drain_timeout
        await asyncio.gather(*(standby.close() for standby in reversed(self.standbys.values())))
        await asyncio.gather(*(op.stop(drain) for op in reversed(self.operators.values())))

    async def _start_api(self) -> None:
        from control.access import make_runner
        from control.app import create_app
        from smppd.controlplane import authenticator

        app = create_app(self, authenticator(self.config), self.config.api.metrics_public)
        self.runner = make_runner(app, self.config.api.access_log)
        await self.runner.setup()
        host, port = self.config.api.listen
        context = self.config.api.ssl_context()  # HTTPS, mutual TLS with tls_client_ca
        site = web.TCPSite(self.runner, host, port, ssl_context=context)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.api_port = sockets[0].getsockname()[1]
        log.info("api listening", extra={
            "event": "api_listening", "port": self.api_port, "tls": context is not None,
            "client_certificates": self.config.api.tls_client_ca is not None})

    async def _close_api(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def stop(self) -> None:
        """Ordered shutdown; safe to call twice."""
        if not self.ready:
            return
        self.ready = False
        self.board.detach(*BOARD_LOGGERS)
        self.notifier.stopping()
        self.dispatcher.accepting = False
        if self.bus is not None:
            await self.bus.stop_consumer()
        await self._stop_binds()
        await self.dispatcher.settle(timeout=self.config.daemon.drain_timeout)
        for task in (self._housekeeping, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_api()
        await self.control.stop()
        if self.bus is not None:
            await self.bus.close()
        if self.vault is not None:
            await self.vault.close()
        if self.webhooks is not None:  # what is not delivered waits in the outbox
            await self.webhooks.stop()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()
        log.info("stopped", extra={"event": "stopped"})

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal signals
            signals += 1
            if signals > 1 and sig == signal.SIGINT:
                log.warning("second SIGINT: exiting now", extra={"event": "forced_exit"})
                raise SystemExit(130)
            log.info("signal received", extra={"event": "signal", "signal": sig.name})
            self._stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        reloads: set[asyncio.Task[Any]] = set()

        def on_hup() -> None:  # systemctl reload: ExecReload sends SIGHUP
            task = loop.create_task(self.reloader.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        await self._stop.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    async def _housekeep(self) -> None:
        """Once a second: expire held receipts, refresh gauges, tell systemd we live."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.matcher.expire_held(time.time())
            except Exception:
                log.exception("expire_held failed", extra={"event": "housekeeping_failed"})
            self.export_counters()
            for op in self.operators.values():
                self.metrics.bucket_rate.labels(op.id).set(op.limiter.rate)
                self.metrics.queued.labels(op.id).set(len(op.queue))
                for bind in op.binds:
                    self.metrics.window_in_use.labels(op.id, bind.name).set(bind.window_in_use)
            self.rate.update(time.monotonic(), self._submits_total())
            self.board.sample()

    async def _watch(self) -> None:
        """WATCHDOG=1 + STATUS= while the loop is responsive (see smppd.watchdog)."""
        period = watchdog_period() or DEFAULT_PERIOD
        await LoopWatchdog(
            period, lambda: self.notifier.watchdog(self.summary()),
            on_lag=lambda lag: self.notifier.status(f"event loop blocked {lag:.1f}s"),
        ).run()

    def _submits_total(self) -> float:
        return sum(s.value for m in self.metrics.submits.collect() for s in m.samples
                   if s.name.endswith("_total"))

    # -- operators and reload --

    def password_source(self, cfg: OperatorConfig) -> Callable[[], str | None]:
        if self.vault is not None and self.vault.uses_vault(cfg.id):
            return self.vault.password_source(cfg.id)
        return cfg.password_value

    def make_operator(self, cfg: OperatorConfig) -> Operator:
        op = Operator(cfg, self.dispatcher, password=self.password_source(cfg),
                      limiter=self._shared_bucket(cfg))
        if self.config.redis is not None and self.config.redis.standby:
            self.standbys[op.id] = self._standby(op)
        return op

    def start_operator(self, op: Operator) -> None:
        """Bring an operator's binds up: at once, or (active/standby) once its lease
        is ours. At start and for an operator a reload adds."""
        if op.config.tls and not op.config.tls_verify:
            log.warning("TLS certificate verification is off for this operator: anyone on "
                        "the path can pose as its SMSC", extra={
                            "event": "tls_verify_off", "operator": op.id})
        standby = self.standbys.get(op.id)
        if standby is not None:
            standby.start()
        else:
            op.start()

    def runs_binds(self, op_id: str) -> bool:
        """Whether the operator's binds run here now: always, unless it is in
        active/standby mode and this replica does not hold its lease."""
        standby = self.standbys.get(op_id)
        return standby is None or bool(standby.leader)

    async def close_standby(self, op_id: str) -> None:
        """An operator a reload removed, once its binds are down: stop following its
        lease and release it if it is ours (peers need not wait for it to expire)."""
        standby = self.standbys.pop(op_id, None)
        if standby is not None:
            await standby.close()
            if self.bus is not None:
                await self._retire_intake(op_id, standby.lease)

    @property
    def intake_per_operator(self) -> bool:
        """Active/standby over NATS: each operator's commands go to its leader only."""
        return self.bus is not None and self.config.redis is not None and \
            self.config.redis.standby

    async def _prepare_intake(self) -> None:
        """Active/standby: every operator's own consumer exists before the shared one
        starts leaving commands to it. Active/active: one an active/standby run left
        is drained into the usual flow and deleted (replicas switch mode together)."""
        assert self.bus is not None
        for op_id in self.operators:
            if self.intake_per_operator:
                await self.bus.cover(op_id)
            else:
                await self.bus.retire_operator(op_id, self.dispatcher)

    async def follow_intake(self, op_id: str) -> None:
        """An operator a reload added: its own consumer exists before its lease is
        looked at. If NATS fails here the shared consumer keeps taking its commands
        (stored ACCEPTED, the leader's sweep sends them) until its leader makes it."""
        if self.bus is None or not self.intake_per_operator:
            return
        try:
            await self.bus.cover(op_id)
        except Exception:
            log.exception("operator consumer not made", extra={
                "event": "nats_consumer_failed", "operator": op_id})

    async def _retire_intake(self, op_id: str, lease: Any) -> None:
        """A removed operator's own consumer: the shared one takes (refuses) its
        commands from now on; whoever can take its lease drains and deletes it. A
        peer holding the lease still runs the operator: its own reload does it."""
        assert self.bus is not None
        self.bus.covered.pop(op_id, None)
        try:
            if not await lease.acquire():
                return
        except Exception:  # Redis away: the consumer stays for the next removal
            return
        try:
            await self.bus.retire_operator(op_id, self.dispatcher)
        except Exception:
            log.exception("operator consumer not deleted", extra={
                "event": "nats_consumer_failed", "operator": op_id})
        finally:
            with contextlib.suppress(Exception):
                await lease.release()

    def _standby(self, op: Operator) -> Any:
        """Active/standby: the operator's binds follow its leader lease in Redis, and
        the leader sends every ACCEPTED message of the operator, whoever accepted it."""
        from smppd.leader import BacklogSweep, LeaderLease, OperatorLead, Standby

        redis = self.config.redis
        assert redis is not None
        lease = LeaderLease(self.redis, f"{redis.key_prefix}:leader:{op.id}", redis.lease_time)
        op.track_queued()  # the sweep skips what this replica queued itself
        sweep = BacklogSweep(op, self.store, self.dispatcher.queue_stored,
                             interval=redis.sweep_interval, grace=redis.sweep_grace)
        intake = None
        if self.bus is not None:  # the operator's commands reach its leader only
            from smppd.nats_bus import OperatorIntake

            intake = OperatorIntake(self.bus, op.id, self.dispatcher)
        lead = OperatorLead(op, sweep, intake=intake)
        standby = Standby(lease, op.id, lead.start, lead.stop, idle=lead.idle)
        op.bind_guard = standby.may_bind  # fencing check right before each bind PDU
        return standby

    def export_counters(self) -> None:
        """Bring the submit and bind-attempt metrics up to the binds' plain counts
        (kept as ints on the send path, where a labelled metric costs too much)."""
        for op in self.operators.values():
            for bind in op.binds:
                for name, metric, count in (
                    ("submits", self.metrics.submits.labels(op.id), bind.sent),
                    ("attempts", self.metrics.bind_attempts.labels(op.id, bind.name),
                     bind.attempts),
                    ("stalls", self.metrics.bind_stalls.labels(op.id, bind.name),
                     bind.stalls),
                ):
                    key = (name, bind.name)
                    delta = count - self._exported.get(key, 0)
                    if delta > 0:
                        metric.inc(delta)
                        self._exported[key] = count

    # -- state for the API (the narrow interface control/ reads through) --

    def summary(self) -> str:
        up = sum(1 for op in self.operators.values() if op.healthy)
        return status_line(up, len(self.operators), self.rate.rate)

    async def dependencies(self) -> dict[str, str]:
        """Each dependency this mode uses: "ok", or what is wrong with it. Asked
        concurrently, each within CHECK_TIMEOUT seconds."""
        checks: dict[str, Any] = {"store": self.store.ping()}
        if self.redis is not None:
            checks["redis"] = self.redis.ping()
        if self.vault is not None and self.config.vault is not None:
            checks["vault"] = _vault_health(self.config.vault.addr)
        names = list(checks)
        answers = await asyncio.gather(
            *(asyncio.wait_for(checks[name], CHECK_TIMEOUT) for name in names),
            return_exceptions=True)
        found = {name: _verdict(answer) for name, answer in zip(names, answers, strict=True)}
        if self.bus is not None:  # the client reconnects on its own: ask it
            nc = self.bus.nc
            found["nats"] = "ok" if nc is not None and nc.is_connected else "unreachable"
        return found

    # -- GatewayView: what the control API sees --

    @property
    def registry(self) -> Any:
        self.export_counters()  # a scrape sees the counts of this moment
        return self.metrics.registry

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: started, a bind up, and every dependency the message path needs
        answering: the store (nothing is accepted without it) and NATS (the intake and
        the receipts' way out). Redis and Vault are reported, not required: without
        Redis each replica paces at its share of the TPS and lease answers come from
        the database; without Vault the credentials read last keep working."""
        bound = {op.id: op.bound_count for op in self.operators.values()}
        found = await self.dependencies()
        required = [name for name in ("store", "nats") if name in found]
        ready = (self.ready and any(bound.values())
                 and all(found[name] == "ok" for name in required))
        failing = {op.id: [{"bind": b.name, "reason": b.error_reason, "error": b.last_error,
                            "since": b.error_since} for b in op.binds if b.error_reason]
                   for op in self.operators.values()}
        return ready, {**found, "required": required, "binds_up": bound,
                       "bind_errors": {op_id: errors for op_id, errors in failing.items()
                                       if errors}}

    def operator_statuses(self) -> list[dict[str, Any]]:
        return [self._operator_view(op) for op in self.operators.values()]

    def operator_status(self, operator_id: str) -> dict[str, Any] | None:
        op = self.operators.get(operator_id)
        return self._operator_view(op) if op is not None else None

    def status_snapshot(self) -> dict[str, Any]:
        return self.board.snapshot(self.operator_statuses())

    def _unmatched(self, operator_id: str) -> float:
        return sum(s.value for m in self.metrics.unmatched.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get("operator") == operator_id)

    def _operator_view(self, op: Operator) -> dict[str, Any]:
        return {**op.status(), "learned_id_forms": self.matcher.learned_id_forms(op.id)}

    async def operator_action(self, operator_id: str, action: str) -> dict[str, Any] | None:
        op = self.operators.get(operator_id)
        if op is None:
            return None
        if action == "pause":
            op.pause()  # binds stay up; receipts keep flowing
        elif action == "resume":
            op.resume()
        elif action == "reload_credentials":
            if self.vault is None or not self.vault.uses_vault(op.id):
                raise InputError([("id", "this operator's credentials are not in Vault")],
                                 status=409, title="Conflict")
            try:
                await self.vault.reload(op)
            except VaultError as exc:
                raise Unavailable(f"vault: {exc}") from None
        else:
            await op.rebind()
        log.info("operator action", extra={"event": f"operator_{action}", "operator": op.id})
        return op.status()

    def patch_operator(self, operator_id: str, tps: float | None,
                       window: int | None) -> dict[str, Any] | None:
        """Runtime only: a reload (or restart) puts the config's values back."""
        op = self.operators.get(operator_id)
        if op is None:
            return None
        # The whole change is checked as the config would be (every rule, cross-field
        # ones too) before any of it applies.
        changes = {k: v for k, v in (("tps", tps), ("window", window)) if v is not None}
        current = {name: getattr(op.config, name) for name in OperatorSettings.model_fields}
        try:
            OperatorSettings.model_validate({**current, **changes})
        except ValidationError as exc:
            raise InputError(problems_of(exc)) from None
        if tps is not None:
            op.set_tps(tps)
            self.metrics.tps_limit.labels(op.id).set(op.limiter.limit)
        if window is not None:
            op.set_window(window)
        log.info("operator patched", extra={"event": "operator_patched", "operator": op.id,
                                            "tps": tps, "window": window})
        return op.status()

    def bind_status(self, operator_id: str, bind: str) -> dict[str, Any] | None:
        op = self.operators.get(operator_id)
        found = [b for b in op.binds if b.name == bind] if op is not None else []
        if not found:
            return None
        return {"operator_id": operator_id, "paused": op.paused if op else False,
                **found[0].status()}

    async def submit(self, bodies: list[Any], idempotency_key: str | None,
                     caller: Caller = ANYONE) -> list[dict[str, Any]]:
        if not self.dispatcher.accepting:
            raise Unavailable("shutting down: not accepting messages")
        prepared = []
        problems: list[tuple[str, str]] = []
        single = len(bodies) == 1
        for index, body in enumerate(bodies):
            try:
                prepared.append(self.dispatcher.prepare(body))
            except MessageError as exc:
                prefix = "" if single else f"messages[{index}]."
                problems.extend((prefix + f, m) for f, m in exc.problems)
        if problems:
            raise InputError(problems)
        return await self.submissions.submit(bodies, prepared, idempotency_key, caller)

    async def message(self, message_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.store.get_message(message_id)
        if found is None:
            return None
        found.pop("body", None)  # the text is the tenant's business, not the API's
        if found.get("callback_url"):  # its user:password or query may be a credential
            from smppd.webhook_http import redacted

            found["callback_url"] = redacted(found["callback_url"])
        return {k: v for k, v in found.items() if not isinstance(v, bytes)}

    async def reload(self) -> dict[str, Any]:
        result = await self.reloader.reload()
        if not result.ok:
            problems = [(key or "config", message) for key, message in result.errors]
            raise InputError(problems, status=422, title="Configuration rejected")
        return result.to_dict()

    def set_log_level(self, level: str) -> dict[str, Any]:
        logging.getLogger().setLevel(level)
        log.warning("log level changed", extra={"event": "log_level", "level": level})
        return {"level": level}

    async def webhook_dead(self, after: int, limit: int,
                           tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        if self.webhooks is None:
            return []
        found: list[dict[str, Any]] = await self.webhooks.dead(
            after, limit, None if tenants is None else sorted(tenants))
        return found

    async def webhook_replay(self, delivery_id: int) -> bool:
        return self.webhooks is not None and bool(await self.webhooks.replay(delivery_id))

    async def events(self, kind: str, after: int, limit: int,
                     tenants: frozenset[str] | None = None) -> list[dict[str, Any]]:
        records = await self.store.list_events(
            kind, after, limit, tenants=None if tenants is None else sorted(tenants))
        return [{"id": r.id, "kind": r.kind, "created_at": r.created_at, **r.payload}
                for r in records]


CHECK_TIMEOUT = 1.0  # seconds a readiness check may take
BOARD_LOGGERS = ("smppd", "control")  # whose warnings the status page lists


def _verdict(answer: Any) -> str:
    if isinstance(answer, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(answer, BaseException):
        return "unreachable"
    return answer if isinstance(answer, str) else "ok"


async def _vault_health(addr: str) -> str:
    """Vault's /v1/sys/health: ok (active or standby), sealed, or unreachable."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, \
            http.get(f"{addr.rstrip('/')}/v1/sys/health") as resp:
        if resp.status in (200, 429, 472, 473):  # active, standby, DR / performance standby
            return "ok"
        return "sealed" if resp.status == 503 else f"http {resp.status}"


def log_tasks() -> None:
    """SIGUSR1: log every task and the chain of awaits it is suspended in (for "what
    is it waiting on?" without a debugger)."""
    for task in asyncio.all_tasks():
        chain = []
        awaited: Any = task.get_coro()
        while awaited is not None and hasattr(awaited, "cr_frame"):
            frame = awaited.cr_frame
            if frame is not None:
                chain.append(f"{frame.f_code.co_name} "
                             f"({frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
            awaited = awaited.cr_await
        log.warning("task %s waits in %s", task.get_name(), " -> ".join(chain) or "?",
                    extra={"event": "task_dump"})
