"""The webhook outbox worker: POSTs what the outbox holds, at least once, in order per
message, with a limit per receiver host.

Two ways in. The fast one: the write that queues an event also takes it for this
process's lease (``WebhookSink``, ``take``), so it is POSTed from memory at once, with
no claim and no second read. The store's claim (``webhook_claim``, every
``poll_interval`` and when something may have become due) finds the rest: retries, the
rows of a previous run or of a replica that died (their lease ran out), a message's
event that waited behind an earlier one, and what did not fit in ``in_flight``.

Per receiver host, at most ``per_host`` workers, each taking the host's next delivery
and POSTing it over a kept-alive connection (smppd.webhooks.connections): no task per
delivery. A message's events held here go out one after the other (a chain per
message); if one fails, the later ones go back to the store, behind its retry.
Delivered rows are deleted in batches. A failed attempt is due again after an
exponential back-off with jitter, up to ``[webhooks] max_age``; then it is a dead letter.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from correlation.store import CorrelationStore, Queued, WebhookRecord
from smppd.config import Config
from smppd.metrics import Metrics
from smppd.webhooks import client as webhook_http
from smppd.webhooks.connections import Client

log = logging.getLogger("smppd.webhooks")

DEPTH_PERIOD = 5.0  # seconds between refreshes of the outbox gauges
PURGE_PERIOD = 3600.0  # seconds between deletions of dead letters past their retention
PURGE_BATCH = 10_000  # dead letters deleted per store write
LEASE_MARGIN = 30.0  # seconds a claim outlives the longest its delivery can take
# Seconds a wake-up waits before claiming, so the answers of that moment are claimed
# together: one claim per burst, not one per event (a claim is a store write).
GATHER = 0.005
DELIVERED, DEAD, RETRY = "delivered", "dead", "retry"  # how an attempt ended


def backoff(attempts: int, low: float, high: float, rand: Callable[[], float]) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: low, 2 low, 4 low,
    ... up to high, each with jitter (between half and all of it)."""
    delay: float = min(high, low * 2.0 ** min(attempts - 1, 60))
    return delay * (0.5 + rand() / 2)


def dead_letter(record: WebhookRecord) -> dict[str, Any]:
    """A dead delivery as the API shows it (the URL without credentials or query)."""
    return {
        "id": record.id, "kind": record.kind, "tenant_id": record.tenant_id,
        "url": None if record.url is None else webhook_http.redacted(record.url),
        "attempts": record.attempts, "last_error": record.last_error,
        "created_at": record.created_at, "dead_at": record.dead_at,
        "event": json.loads(record.body),
    }


class _Host:
    """One receiver host's deliveries waiting for a worker, and its workers."""

    __slots__ = ("waiting", "workers")

    def __init__(self) -> None:
        self.waiting: collections.deque[WebhookRecord] = collections.deque()
        self.workers = 0


class Deliverer:
    """The outbox worker (see the module docstring)."""

    def __init__(self, store: CorrelationStore, config: Callable[[], Config], metrics: Metrics,
                 *, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random,
                 client: Client | None = None) -> None:
        self._store = store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._client = client or Client(lambda: self._config().webhooks.ssl_context)
        self._held: dict[int, WebhookRecord] = {}  # taken for our lease, not finished
        self._from_claim: set[int] = set()  # of those, the ones a claim took
        self._hosts: dict[str, _Host] = {}
        # Ordering key -> its events held after the one under way (present: one is).
        self._chains: dict[str, collections.deque[WebhookRecord]] = {}
        self._behind: set[str] = set()  # keys with a later event waiting in the store
        self._store_due = False  # something we gave back may be due: claim when a slot frees
        self._delivered_ids: list[int] = []  # POSTed, not yet deleted
        self._unblocks = False  # a deleted one has a later event in the store
        self._workers: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Task[None]] = set()  # give-backs under way
        self._flushing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running = False
        self._closing = False
        self._depth_at = -math.inf
        self._purged_at = -math.inf
        self._signers: tuple[Config | None, dict[str, webhook_http.Signer]] = (None, {})
        self._delivered = metrics.webhook_deliveries.labels("delivered")
        self._retried = metrics.webhook_deliveries.labels("retried")

    # -- lifecycle --

    async def start(self) -> None:
        self._running = True
        self._loop_task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop claiming, cancel the deliveries under way and give back what is held
        (due at once after a restart)."""
        self._running = False
        if self._loop_task is not None:
            # Not cancelled mid-claim: a claim the store made but no one recorded would
            # hold its rows for a whole lease. The loop ends at its next turn.
            self._closing = True
            self._wake.set()
            await self._loop_task
            self._loop_task = None
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for pending in (self._flushing, *self._writes):
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
        await self._flush_delivered()
        left = list(self._held)
        self._held.clear()
        self._hosts.clear()
        self._chains.clear()
        if left:
            await self._give_back(left)
        self._client.close()

    def lease(self) -> float | None:
        """Seconds a delivery taken now is ours: the longest one can wait for its host's
        workers and then take (so it is not claimed twice while under way); None while
        not running (a write then takes nothing)."""
        if not self._running:
            return None
        settings = self._config().webhooks
        rounds = math.ceil(settings.in_flight / settings.per_host)
        return settings.timeout * rounds + LEASE_MARGIN

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._wake.set()

    def take(self, queued: Queued) -> None:
        """A write queued these (WebhookSink): deliver the ones it took for our lease,
        up to ``in_flight`` held; give the rest back to the store."""
        behind = [key for key in queued.behind if key is not None]
        self._behind.update(behind)
        if any(key not in self._chains for key in behind):
            # What holds it back is not ours to finish: perhaps one just delivered, its
            # row not deleted yet. Look once that delete is done (or now).
            self._unblocks = True
            if self._flushing is None:
                self._wake.set()
        records = queued.claimed
        if not records:
            return
        room = self._config().webhooks.in_flight - len(self._held) if self._running else 0
        if len(records) > room:
            extra = records[max(room, 0):]
            records = records[:max(room, 0)]
            self._behind.update(r.ordering_key for r in extra if r.ordering_key is not None)
            self._spawn(self._writes, self._give_back([r.id for r in extra]))
        for record in records:
            self._held[record.id] = record
            self._admit(record)

    # -- in memory: chains per message, workers per host --

    def _admit(self, record: WebhookRecord) -> None:
        key = record.ordering_key
        if key is not None:
            chain = self._chains.get(key)
            if chain is not None:  # one of its events is under way: this one waits
                chain.append(record)
                return
            self._chains[key] = collections.deque()
        self._enqueue(record)

    def _enqueue(self, record: WebhookRecord) -> None:
        config = self._config()
        url = record.url
        if url is None:
            tenant = config.tenant(record.tenant_id)
            url = tenant.callback_url if tenant is not None else None
        try:
            hostname = "" if url is None else webhook_http.prepared(url).hostname
        except ValueError:
            hostname = ""  # the attempt says why
        host = self._hosts.get(hostname)
        if host is None:
            host = self._hosts[hostname] = _Host()
        host.waiting.append(record)
        if host.workers < config.webhooks.per_host:
            host.workers += 1
            self._spawn(self._workers, self._work(hostname, host))

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _work(self, hostname: str, host: _Host) -> None:
        """One of a host's workers: its deliveries one after the other."""
        try:
            while host.waiting:
                record = host.waiting.popleft()
                try:
                    outcome = await self._attempt(record)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store failed: the lease runs out, it is tried again
                    log.exception("webhook delivery not recorded",
                                  extra={"event": "webhook_failed"})
                    self._finish(record, None)
                else:
                    self._finish(record, outcome)
        finally:
            host.workers -= 1
            if host.workers == 0 and not host.waiting and self._hosts.get(hostname) is host:
                del self._hosts[hostname]

    def _finish(self, record: WebhookRecord, outcome: str | None) -> None:
        """``record`` is done here: DELIVERED or DEAD (its message's next event may go),
        or RETRY, back in the store (the next ones go back too); None: not recorded
        (the next ones are dropped as well: all come back when their lease runs out)."""
        advanced = outcome in (DELIVERED, DEAD)
        self._held.pop(record.id, None)
        if record.id in self._from_claim:
            self._from_claim.discard(record.id)
            self._wake.set()  # a slot is free, and the message's next event may be due
        elif self._store_due:
            self._wake.set()
        key = record.ordering_key
        if key is None:
            return
        chain = self._chains.get(key)
        if advanced and chain:
            self._enqueue(chain.popleft())
            return
        self._chains.pop(key, None)
        if chain:  # the later ones wait in the store, behind this one's retry
            later = [r.id for r in chain]
            for r in chain:
                self._held.pop(r.id, None)
                self._from_claim.discard(r.id)
            if outcome is not None:
                self._spawn(self._writes, self._give_back(later))
        if key in self._behind:
            self._behind.discard(key)  # else the poll finds it once the retry is done
            if outcome == DELIVERED:
                self._unblocks = True  # claim once its row is deleted
            elif outcome == DEAD:
                self._wake.set()

    async def _give_back(self, ids: list[int]) -> None:
        self._store_due = True
        try:
            await self._store.webhook_release(ids, self._clock())
        except Exception:  # they come back when their lease runs out
            log.exception("webhook claims not released", extra={"event": "webhook_failed"})

    def _delivered_one(self, record: WebhookRecord) -> None:
        self._delivered_ids.append(record.id)
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            await self._flush_delivered()
        finally:
            self._flushing = None

    async def _flush_delivered(self) -> None:
        """Delete what was delivered, many rows per write (the group commit joins them
        too); a row whose delete is lost is POSTed again after its lease (at least once)."""
        while self._delivered_ids:
            ids, self._delivered_ids = self._delivered_ids, []
            self._delivered.inc(len(ids))
            try:
                await self._store.webhook_delivered(ids)
            except Exception:
                log.exception("webhook deliveries not removed",
                              extra={"event": "webhook_failed"})
            if self._unblocks:
                self._unblocks = False
                self._wake.set()

    # -- one attempt --

    def _signer(self, config: Config, tenant_id: str) -> webhook_http.Signer | None:
        seen, signers = self._signers
        if seen is not config:  # a reload may change a secret
            signers = {}
            self._signers = (config, signers)
        signer = signers.get(tenant_id)
        if signer is None:
            tenant = config.tenant(tenant_id)
            if tenant is None:
                return None
            signer = signers[tenant_id] = webhook_http.Signer(tenant.secret_value())
        return signer

    async def _attempt(self, record: WebhookRecord) -> str:
        """POST it and record the outcome: DELIVERED, DEAD or RETRY."""
        config = self._config()
        tenant = config.tenant(record.tenant_id)
        url = record.url or (tenant.callback_url if tenant is not None else None)
        signer = self._signer(config, record.tenant_id)
        if tenant is None or url is None or signer is None:
            # Not retried: nothing will change until the config does (then replay).
            why = ("no [[tenants]] entry to sign with" if tenant is None
                   else "no callback_url (the tenant has none)")
            await self._give_up(record, "no_callback", why)
            return DEAD
        body = record.body.encode()
        stamp = str(int(self._clock()))
        request_headers = webhook_http.signed_headers(signer(stamp, body), stamp, record.kind,
                                                      record.id)
        started = time.monotonic()
        outcome = await webhook_http.post(self._client, url, body, request_headers,
                                          config.webhooks.timeout)
        self._metrics.webhook_latency.observe(time.monotonic() - started)
        if outcome.ok:
            self._delivered_one(record)
            return DELIVERED
        self._metrics.webhook_failures.labels(outcome.reason).inc()
        now = self._clock()
        settings = config.webhooks
        deadline = record.created_at + settings.max_age
        if now >= deadline:
            await self._give_up(record, None, f"max age reached; last: {outcome.detail}")
            return DEAD
        delay = backoff(record.attempts + 1, settings.backoff_min, settings.backoff_max,
                        self._rand)
        await self._store.webhook_retry(record.id, min(now + delay, deadline), outcome.detail)
        self._retried.inc()
        return RETRY

    async def _give_up(self, record: WebhookRecord, reason: str | None, detail: str) -> None:
        if reason is not None:
            self._metrics.webhook_failures.labels(reason).inc()
        await self._store.webhook_kill(record.id, self._clock(), detail)
        self._metrics.webhook_deliveries.labels("dead").inc()
        log.warning("webhook delivery dead", extra={
            "event": "webhook_dead", "delivery": record.id, "tenant": record.tenant_id,
            "kind": record.kind, "attempts": record.attempts + 1, "reason": detail})

    # -- the claim loop: what the fast way did not bring --

    async def _run(self) -> None:
        while not self._closing:
            settings = self._config().webhooks
            self._wake.clear()
            free = settings.in_flight - len(self._held)
            claimed: list[WebhookRecord] = []
            if free > 0:
                lease = self.lease() or LEASE_MARGIN
                try:
                    claimed = await self._store.webhook_claim(self._clock(), free, lease)
                except Exception:
                    log.exception("webhook claim failed", extra={"event": "webhook_failed"})
                else:
                    self._store_due = len(claimed) == free  # more may be due
            for record in claimed:
                self._held[record.id] = record
                self._from_claim.add(record.id)
                self._admit(record)
            await self._purge_dead(settings.dead_retention)
            await self._refresh_gauges()
            self._client.sweep()
            if claimed and len(claimed) == free:
                continue  # more may be due: claim again once a slot frees (it wakes us)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.poll_interval)
                if not self._closing:
                    await asyncio.sleep(GATHER)

    async def _purge_dead(self, retention: float) -> None:
        """Delete the dead letters older than ``retention`` seconds (0: keep them), at
        the first turn and then every PURGE_PERIOD."""
        now = self._clock()
        if retention <= 0 or now - self._purged_at < PURGE_PERIOD:
            return
        self._purged_at = now
        deleted = 0
        try:
            while True:
                count = await self._store.webhook_purge_dead(now - retention, PURGE_BATCH)
                deleted += count
                if count < PURGE_BATCH:
                    break
        except Exception:
            log.exception("dead letters not purged", extra={"event": "webhook_failed"})
        if deleted:
            self._depth_at = -math.inf  # the gauge shows it now
            log.info("dead letters past their retention deleted", extra={
                "event": "webhook_dead_purged", "count": deleted, "retention": retention})

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
