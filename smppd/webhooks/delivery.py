"""Delivery and MO webhooks: every DLR event of a message with a callback URL (its own
``callback_url``, or its tenant's in ``[[tenants]]``) and every MO for a tenant is
POSTed, signed, as the same JSON as the event.

At least once, through the store's outbox: an event is written to the outbox in the
same write that publishes it (``WebhookSink``), so a crash or a receiver down for hours
loses nothing. ``Deliverer`` claims due deliveries (the oldest undelivered event of each
message only: a message's events go out one at a time, in order), POSTs them with a
limit per receiver host, and retries failures with exponential back-off and jitter up
to ``[webhooks] max_age``; then the delivery is a dead letter, listed and replayed
through the API. ``CallbackGuard`` refuses, at submit, a URL the daemon would not POST
to (the API itself, or a tenant with no secret to sign with).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from correlation.store import CorrelationStore, WebhookRecord, WebhookTargets
from smppd.config import Config, TenantConfig
from smppd.intake.events import EventSink
from smppd.intake.message import MessageError, Outbound
from smppd.metrics import Metrics
from smppd.webhooks import client as webhook_http

log = logging.getLogger("smppd.webhooks")

DEPTH_PERIOD = 5.0  # seconds between refreshes of the outbox gauges
LEASE_MARGIN = 30.0  # seconds a claim outlives the longest its delivery can take
# Seconds a wake-up waits before claiming, so the events and answers of that moment are
# claimed together: one claim per burst, not one per event (a claim is a store write).
GATHER = 0.005


class Tenants:
    """Which tenant an event is for, from the running config (a reload applies)."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config
        self._seen: Config | None = None
        self._defaults: tuple[str, ...] = ()
        self._mo: dict[str, str] = {}

    def _refresh(self) -> None:
        config = self._config()
        if config is not self._seen:
            self._seen = config
            self._defaults = tuple(t.id for t in config.tenants if t.callback_url)
            self._mo = {d: t.id for t in config.tenants for d in t.mo_destinations}

    def targets(self, kind: str, events: Sequence[dict[str, Any]]) -> WebhookTargets | None:
        """What of these events goes to the outbox; None: none of them."""
        self._refresh()
        if kind == "dlr":  # the store looks at each event's message
            return WebhookTargets(tenants=self._defaults)
        owners = [self._mo.get(str(event.get("destination", ""))) for event in events]
        return WebhookTargets(owners=owners) if any(owners) else None


class WebhookSink:
    """An EventSink that also queues the events' webhooks. Over the embedded sink (events
    in the same store) both go in one write; over NATS the outbox is written once the
    events are published (a failure there is retried by the caller: JetStream drops the
    duplicate publish)."""

    def __init__(self, inner: EventSink, store: CorrelationStore, tenants: Tenants, *,
                 combined: bool, on_queued: Callable[[WebhookTargets], None]) -> None:
        self.inner = inner
        self._store = store
        self._tenants = tenants
        self._combined = combined
        self._on_queued = on_queued

    async def publish(self, kind: str, event: dict[str, Any]) -> None:
        await self.publish_many(kind, [event])

    async def publish_many(self, kind: str, events: Sequence[dict[str, Any]]) -> None:
        targets = self._tenants.targets(kind, events)
        if self._combined:
            if targets is None:
                await self._store.store_events(kind, events)
            else:
                await self._store.store_events_with_webhooks(kind, events, targets)
        else:
            await self.inner.publish_many(kind, events)
            if targets is not None:
                await self._store.webhook_enqueue(kind, events, targets)
        if targets is not None:
            self._on_queued(targets)


class CallbackGuard:
    """Dispatcher.callback_check: a message's callback_url must not point at this
    daemon's API, and its tenant must have a secret to sign with."""

    def __init__(self, config: Callable[[], Config], api_port: Callable[[], int | None],
                 accepted: Callable[[], None] = lambda: None) -> None:
        self._config = config
        self._api_port = api_port
        self._accepted = accepted  # told of each URL let through

    def __call__(self, msg: Outbound) -> None:
        assert msg.callback_url is not None
        config = self._config()
        host, port = config.api.listen
        port = self._api_port() or port
        if port and webhook_http.points_at(msg.callback_url, host, port):
            raise MessageError([("callback_url", "must not point at this daemon's API")])
        if config.tenant(msg.tenant_id) is None:
            raise MessageError([("callback_url", f"tenant {msg.tenant_id!r} has no "
                                 "[[tenants]] entry with a secret to sign webhooks with")])
        self._accepted()


def backoff(attempts: int, low: float, high: float, rand: Callable[[], float]) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: low, 2 low, 4 low,
    ... up to high, each with jitter (between half and all of it)."""
    delay: float = min(high, low * 2.0 ** min(attempts - 1, 60))
    return delay * (0.5 + rand() / 2)


class _HostLimits:
    """A semaphore per receiver host, dropped when no delivery uses it."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str, limit: int) -> Any:
        semaphore, users = self._held.get(host, (asyncio.Semaphore(limit), 0))
        self._held[host] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._held[host]
            if users == 1:
                del self._held[host]
            else:
                self._held[host] = (semaphore, users - 1)


class Deliverer:
    """The outbox worker (see the module docstring)."""

    def __init__(self, store: CorrelationStore, config: Callable[[], Config], metrics: Metrics,
                 *, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self._store = store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._hosts = _HostLimits()
        self._wake = asyncio.Event()
        self._claimed: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self._expecting = False
        self._session: aiohttp.ClientSession | None = None
        self._depth_at = -math.inf
        self._delivered = metrics.webhook_deliveries.labels("delivered")
        self._retried = metrics.webhook_deliveries.labels("retried")

    # -- lifecycle --

    async def start(self) -> None:
        # No connection limit here: _HostLimits and [webhooks] in_flight bound it.
        # trust_env=False: a proxy from the environment would see every event.
        # No cookies, no decompression: a receiver's answer is only its status.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding"))
        self._loop_task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop claiming, cancel the deliveries under way and give their claims back
        (due at once after a restart)."""
        if self._loop_task is not None:
            # Not cancelled mid-claim: a claim the store made but no one recorded would
            # hold its rows for a whole lease. The loop ends at its next turn.
            self._closing = True
            self._wake.set()
            await self._loop_task
            self._loop_task = None
        running = list(self._claimed.items())
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)
        left = [delivery_id for delivery_id, _ in running if delivery_id in self._claimed]
        self._claimed.clear()
        if left:
            try:
                await self._store.webhook_release(left, self._clock())
            except Exception:  # they come back when their lease runs out
                log.exception("webhook claims not released", extra={"event": "webhook_failed"})
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """Events were queued: look for due deliveries now."""
        self._wake.set()

    def expect(self) -> None:
        """A message with its own callback_url was accepted: from now on every DLR write
        wakes the worker (until then DLR writes of tenants without a default URL do not,
        and what they queue, e.g. for messages of a previous run, is found by the
        poll every ``poll_interval``)."""
        self._expecting = True

    def queued(self, targets: WebhookTargets) -> None:
        """WebhookSink wrote events for these targets: wake up if they may have gone to
        the outbox."""
        if targets.owners is not None or targets.tenants or self._expecting:
            self._wake.set()

    # -- the loop --

    def _lease(self) -> float:
        """Seconds a claim holds: the longest a claimed delivery can wait for its host's
        slots and then take (so it is not claimed twice while under way)."""
        settings = self._config().webhooks
        rounds = math.ceil(settings.in_flight / settings.per_host)
        return settings.timeout * rounds + LEASE_MARGIN

    async def _run(self) -> None:
        while not self._closing:
            settings = self._config().webhooks
            self._wake.clear()
            free = settings.in_flight - len(self._claimed)
            claimed: list[WebhookRecord] = []
            if free > 0:
                try:
                    claimed = await self._store.webhook_claim(self._clock(), free, self._lease())
                except Exception:
                    log.exception("webhook claim failed", extra={"event": "webhook_failed"})
            for record in claimed:
                self._claimed[record.id] = asyncio.ensure_future(self._deliver(record))
            await self._refresh_gauges()
            if claimed and len(claimed) == free:
                continue  # more may be due: claim again once a slot frees (it wakes us)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.poll_interval)
                if not self._closing:
                    await asyncio.sleep(GATHER)

    async def _refresh_gauges(self) -> None:
        now = self._clock()
        if now - self._depth_at < DEPTH_PERIOD:
            return
        self._depth_at = now
        try:
            depth = await self._store.webhook_depth()
        except Exception:
            return  # the next look tries again
        self._metrics.webhook_depth.set(depth.waiting)
        age = 0.0 if depth.oldest is None else max(0.0, now - depth.oldest)
        self._metrics.webhook_oldest.set(age)
        self._metrics.webhook_dead.set(depth.dead)

    async def _deliver(self, record: WebhookRecord) -> None:
        try:
            await self._attempt(record)
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed: the claim runs out and it is tried again
            log.exception("webhook delivery not recorded", extra={"event": "webhook_failed"})
            self._claimed.pop(record.id, None)
        else:
            self._claimed.pop(record.id, None)
        finally:
            self._wake.set()  # a slot is free, and the message's next event may be due

    async def _attempt(self, record: WebhookRecord) -> None:
        config = self._config()
        tenant = config.tenant(record.tenant_id)
        url = record.url or (tenant.callback_url if tenant is not None else None)
        if tenant is None or url is None:
            # Not retried: nothing will change until the config does (then replay).
            why = ("no [[tenants]] entry to sign with" if tenant is None
                   else "no callback_url (the tenant has none)")
            await self._give_up(record, "no_callback", why)
            return
        outcome = await self._post(record, url, tenant, config)
        if outcome.ok:
            await self._store.webhook_delivered([record.id])
            self._delivered.inc()
            return
        self._metrics.webhook_failures.labels(outcome.reason).inc()
        now = self._clock()
        settings = config.webhooks
        deadline = record.created_at + settings.max_age
        if now >= deadline:
            await self._give_up(record, None, f"max age reached; last: {outcome.detail}")
            return
        delay = backoff(record.attempts + 1, settings.backoff_min, settings.backoff_max,
                        self._rand)
        await self._store.webhook_retry(record.id, min(now + delay, deadline), outcome.detail)
        self._retried.inc()

    async def _post(self, record: WebhookRecord, url: str, tenant: TenantConfig,
                    config: Config) -> webhook_http.Outcome:
        assert self._session is not None
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        async with self._hosts.slot(host, config.webhooks.per_host):
            stamp = str(int(self._clock()))
            request_headers = webhook_http.headers(tenant.secret_value(), stamp, record.body,
                                                   record.kind, record.id)
            started = time.monotonic()
            outcome = await webhook_http.post(self._session, url, record.body.encode(),
                                              request_headers, config.webhooks.timeout)
            self._metrics.webhook_latency.observe(time.monotonic() - started)
        return outcome

    async def _give_up(self, record: WebhookRecord, reason: str | None, detail: str) -> None:
        if reason is not None:
            self._metrics.webhook_failures.labels(reason).inc()
        await self._store.webhook_kill(record.id, self._clock(), detail)
        self._metrics.webhook_deliveries.labels("dead").inc()
        log.warning("webhook delivery dead", extra={
            "event": "webhook_dead", "delivery": record.id, "tenant": record.tenant_id,
            "kind": record.kind, "attempts": record.attempts + 1, "reason": detail})

    # -- the dead letters, for the API --

    async def dead(self, after: int, limit: int,
                   tenants: Sequence[str] | None = None) -> list[dict[str, Any]]:
        records = await self._store.webhook_dead(after, limit, tenants=tenants)
        return [dead_letter(record) for record in records]

    async def replay(self, delivery_id: int) -> bool:
        replayed = await self._store.webhook_replay(delivery_id, self._clock())
        if replayed:
            log.info("webhook delivery replayed", extra={"event": "webhook_replayed",
                                                         "delivery": delivery_id})
            self.wake()
        return replayed


def dead_letter(record: WebhookRecord) -> dict[str, Any]:
    """A dead delivery as the API shows it (the URL without credentials or query)."""
    return {
        "id": record.id, "kind": record.kind, "tenant_id": record.tenant_id,
        "url": None if record.url is None else webhook_http.redacted(record.url),
        "attempts": record.attempts, "last_error": record.last_error,
        "created_at": record.created_at, "dead_at": record.dead_at,
        "event": json.loads(record.body),
    }
