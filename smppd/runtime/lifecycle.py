"""Start and stop the parts ``smppd.runtime.wiring`` built, in one uvloop event loop.

Start: open the store (fail loudly if it cannot), queue what a previous run
accepted but did not submit, connect to NATS, start the binds, serve the API, take
dispatch commands, tell systemd READY=1. Each part that started is pushed on an
``AsyncExitStack``: if a later one fails, what was started is stopped again in
reverse and the error raised.
Stop (SIGTERM/SIGINT): stop intake, drain windows with a timeout, unbind, settle
store writes, close the store; a second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from smppd.runtime import control_wiring
from smppd.runtime.watchdog import DEFAULT_PERIOD, LoopWatchdog, watchdog_period
from smppd.runtime.wiring import Components

log = logging.getLogger("smppd.daemon")  # its records keep the name they had

BOARD_LOGGERS = ("smppd", "control")  # whose warnings the status page lists


class Lifecycle:
    """``serve_api`` starts the control API (the daemon hands the view to its server)."""

    def __init__(self, parts: Components, serve_api: Callable[[], Awaitable[None]]) -> None:
        self.parts = parts
        self._serve_api = serve_api
        self.ready = False
        self._stop = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every part in order; if one fails, what was started is stopped again
        in reverse (binds unbound, API closed, store closed) and the error raised, so
        the process can exit non-zero with nothing left behind."""
        p = self.parts
        async with contextlib.AsyncExitStack() as started:
            if p.redis is not None:
                started.push_async_callback(p.redis.aclose)
            await p.store.open()
            started.push_async_callback(p.store.close)
            await control_wiring.start(p.control, p.fleet.config)
            started.push_async_callback(p.control.stop)
            resumed = await p.dispatcher.resume_pending()
            if resumed:
                log.info("resumed pending messages", extra={"event": "resumed", "count": resumed})
            restored = await p.dispatcher.inbound.restore_mo_parts()
            if restored:
                log.info("restored parts of MO messages", extra={
                    "event": "mo_parts_restored", "count": restored})
            if p.vault is not None:
                started.push_async_callback(p.vault.close)
                await p.vault.start(p.fleet.operators)
            if p.bus is not None:  # before the binds: a leader takes commands at once
                started.push_async_callback(p.bus.close)
                await p.bus.connect()
                await p.fleet.prepare_intake()
            started.push_async_callback(p.fleet.stop_binds)
            for op in p.fleet.operators.values():
                p.fleet.start_operator(op)
            started.push_async_callback(p.server.close)
            await self._serve_api()
            if p.bus is not None:
                p.bus.start_consumer(p.dispatcher)
            if p.webhooks is not None:
                started.push_async_callback(p.webhooks.stop)
                await p.webhooks.start()
            self._housekeeping = asyncio.ensure_future(self._housekeep())
            self._watchdog = asyncio.ensure_future(self._watch())
            p.board.attach(*BOARD_LOGGERS)
            self.ready = True
            started.pop_all()  # from here on stop() owns the shutdown
        p.notifier.ready(p.fleet.summary())

    async def stop(self) -> None:
        """Ordered shutdown; safe to call twice."""
        if not self.ready:
            return
        self.ready = False
        p = self.parts
        p.board.detach(*BOARD_LOGGERS)
        p.notifier.stopping()
        p.dispatcher.accepting = False
        if p.bus is not None:
            await p.bus.stop_consumer()
        await p.fleet.stop_binds()
        await p.dispatcher.settle(timeout=p.fleet.config.daemon.drain_timeout)
        for task in (self._housekeeping, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await p.server.close()
        await p.control.stop()
        if p.bus is not None:
            await p.bus.close()
        if p.vault is not None:
            await p.vault.close()
        if p.webhooks is not None:  # what is not delivered waits in the outbox
            await p.webhooks.stop()
        await p.store.close()
        if p.redis is not None:
            await p.redis.aclose()
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
            task = loop.create_task(self.parts.reloader.reload())
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
        p = self.parts
        while True:
            await asyncio.sleep(1.0)
            try:
                await p.matcher.expire_held(time.time(), p.dispatcher.late_match)
            except Exception:
                log.exception("expire_held failed", extra={"event": "housekeeping_failed"})
            p.fleet.sample()
            p.board.sample()

    async def _watch(self) -> None:
        """WATCHDOG=1 + STATUS= while the loop is responsive (see smppd.runtime.watchdog)."""
        notifier, fleet = self.parts.notifier, self.parts.fleet
        period = watchdog_period() or DEFAULT_PERIOD
        await LoopWatchdog(
            period, lambda: notifier.watchdog(fleet.summary()),
            on_lag=lambda lag: notifier.status(f"event loop blocked {lag:.1f}s"),
        ).run()


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
