"""Active/standby binds: a leader lease per operator in Redis.

With ``[redis] standby = true`` a replica holds an operator's binds only while it
owns the lease ``{key_prefix}:leader:{operator_id}``: taken with SET NX PX and a
random token, renewed every ``lease_time / 3`` and released by Lua scripts that
check the token, so only the owner can extend or drop it. The standby polls at the
same pace and takes over once the lease expires.

Never two actives: a replica that cannot renew (lease taken, Redis unreachable)
stops sending at once and unbinds before its lease can have expired in Redis, so
the next owner only binds after the old binds are gone; and each bind checks the
token is still ours right before its bind PDU (the fencing check).

The leader takes the operator's NATS dispatch commands (its own consumer runs
only while the lease is ours, see ``smppd.cluster.nats_bus``) and sends the operator's
messages, whichever replica accepted them: a replica may still store one ACCEPTED
(an HTTP submit, a command older than the operator's consumer, a batch in hand when
the lease was lost); a standby drops its queue (the rows stay ACCEPTED), and the
leader picks up the ACCEPTED rows it does not hold when it takes the lease and
every few seconds after (``BacklogSweep``). So neither a message accepted by a
standby nor one queued on a leader killed with -9 waits for a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from correlation.store import CorrelationStore
    from smppd.link.operator import Operator

log = logging.getLogger("smppd.leader")

Clock = Callable[[], float]

# KEYS[1]: the lease. ARGV: token, lease (ms). 1 if renewed, 0 if not ours.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1]: the lease. ARGV: token. 1 if released, 0 if not ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
MARGIN = 0.5  # seconds of the lease kept back: the binds are gone before it can expire
SWEEP_LIMIT = 10_000  # ACCEPTED ids read per sweep: the oldest first, the rest next time


class LeaderLease:
    """One lease in Redis, owned while its value is our token."""

    def __init__(self, redis: Any, key: str, lease_time: float, *,
                 token: str | None = None, clock: Clock = time.monotonic) -> None:
        self.redis = redis
        self.key = key
        self.lease_time = lease_time
        self.token = token or secrets.token_hex(16)
        self.clock = clock
        # Local time by which the lease has surely expired unless renewed: counted
        # from before the command was sent, so never later than Redis's own expiry.
        self.valid_until = 0.0
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    @property
    def _ms(self) -> int:
        return int(self.lease_time * 1000)

    async def acquire(self) -> bool:
        sent = self.clock()
        if await self.redis.set(self.key, self.token, nx=True, px=self._ms):
            self.valid_until = sent + self.lease_time
            return True
        return False

    async def renew(self) -> bool:
        sent = self.clock()
        if int(await self._renew(keys=[self.key], args=[self.token, self._ms])) == 1:
            self.valid_until = sent + self.lease_time
            return True
        self.valid_until = 0.0
        return False

    async def release(self) -> bool:
        self.valid_until = 0.0
        return int(await self._release(keys=[self.key], args=[self.token])) == 1

    async def held(self) -> bool:
        """The fencing check: the lease is still ours, in Redis and by our clock."""
        if self.clock() >= self.valid_until - MARGIN:
            return False
        value = await self.redis.get(self.key)
        return value is not None and (value.decode() if isinstance(value, bytes)
                                      else value) == self.token


class Standby:
    """Runs an operator's binds only while this replica leads it.

    ``start`` brings the binds up; ``stop(budget)`` must have them all down within
    ``budget`` seconds (see ``unbind_within``).
    """

    def __init__(self, lease: LeaderLease, name: str, start: Callable[[], None],
                 stop: Callable[[float], Awaitable[None]], *,
                 idle: Callable[[], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.lease = lease
        self.name = name
        self._start = start
        self._stop = stop
        self._idle = idle  # each look at the lease while a peer holds it
        self._sleep = sleep
        self.leader = False
        self.takeovers = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(),
                                                            name=f"leader {self.name}")

    async def close(self) -> None:
        """Stop polling; unbind (by the caller's own stop) and give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leader:
            await self.step_down("shutting down")
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def may_bind(self) -> bool:
        """Fencing check before a bind PDU; any doubt (Redis down) means no."""
        if not self.leader:
            return False
        try:
            return await self.lease.held()
        except Exception:
            return False

    async def run(self) -> None:
        period = self.lease.lease_time / 3
        while True:
            await self.tick()
            await self._sleep(period)

    async def tick(self) -> None:
        """One look at the lease: renew it (or step down), or try to take it."""
        if self.leader:
            try:
                ok = await self.lease.renew()
            except Exception as exc:  # ConnectionError, TimeoutError, ... from redis-py
                log.warning("lease renewal failed", extra={"event": "lease_error",
                                                           "operator": self.name,
                                                           "error": str(exc)})
                ok = False
            if not ok:
                await self.step_down("lease lost")
            return
        try:
            taken = await self.lease.acquire()
        except Exception:
            taken = False  # Redis unreachable: stay standby
        if not taken:
            if self._idle is not None:
                self._idle()
            return
        self.leader = True
        self.takeovers += 1
        log.info("lease taken: binding", extra={"event": "leader", "operator": self.name})
        self._start()

    async def step_down(self, reason: str) -> None:
        """Stop sending, drain and unbind before the lease can expire in Redis."""
        self.leader = False
        budget = max(0.0, self.lease.valid_until - MARGIN - self.lease.clock())
        log.warning("stepping down: unbinding", extra={"event": "standby", "reason": reason,
                                                       "operator": self.name,
                                                       "budget": round(budget, 3)})
        await self._stop(budget)


async def unbind_within(op: Operator, budget: float) -> None:
    """Take the operator's binds down within ``budget`` seconds: drain and unbind if
    there is time, abort the connections if not. The binds can be started again."""
    stopping = asyncio.ensure_future(op.stop(budget))
    done, _ = await asyncio.wait([stopping], timeout=budget)
    if not done:
        for bind in op.binds:
            if bind.conn is not None:
                bind.conn.abort()  # the SMSC frees the bind when the TCP connection ends
        await stopping


class BacklogSweep:
    """The lease holder queues its operator's ACCEPTED messages that it does not hold.

    Run when the lease is taken and every ``interval`` seconds while it is held. Only
    rows older than ``grace`` seconds are taken: a younger one may be mid-accept on
    this replica (stored, not yet queued). Parts that already have an SMSC id are not
    sent again (``Dispatcher.queue_stored``), so a takeover resends at most what the
    old leader had in flight: its windows. The sweep also lets the operator forget
    the messages it queued that are no longer ACCEPTED (``Operator.forget_finished``),
    which keeps that memory to about one interval of traffic.
    """

    def __init__(self, op: Operator, store: CorrelationStore,
                 queue_stored: Callable[[Operator, list[str]], Awaitable[int]], *,
                 interval: float, grace: float, clock: Clock = time.time,
                 limit: int = SWEEP_LIMIT) -> None:
        self.op = op
        self.store = store
        self.queue_stored = queue_stored
        self.interval = interval
        self.grace = grace
        self.clock = clock  # wall clock, like the store's created_at
        self.limit = limit

    async def sweep(self) -> int:
        """One look at the store; returns how many messages it queued."""
        cutoff = self.clock() - self.grace
        rows = await self.store.accepted_ids(self.op.id, cutoff, self.limit)
        # A full page lists every ACCEPTED row only up to its last one.
        listed_until = rows[-1][1] if len(rows) >= self.limit else cutoff
        self.op.forget_finished({message_id for message_id, _ in rows}, listed_until)
        missing = [message_id for message_id, _ in rows if not self.op.holds(message_id)]
        if not missing:
            return 0
        queued = await self.queue_stored(self.op, missing)
        if queued:
            log.info("queued ACCEPTED messages this replica did not hold",
                     extra={"event": "backlog_taken", "operator": self.op.id, "count": queued})
        return queued

    async def run(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the store may be away for a while: look again later
                log.exception("backlog sweep failed",
                              extra={"event": "backlog_sweep_failed", "operator": self.op.id})
            await sleep(self.interval)


class CommandSource(Protocol):
    """The operator's own source of dispatch commands (its NATS consumer)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...  # once the commands in hand are stored


class OperatorLead:
    """What leading one operator means here, as ``Standby``'s start/stop/idle: its
    binds up, its dispatch commands taken (``intake``) and its ACCEPTED messages
    swept while leader; nothing of it kept in memory while a peer leads (the rows
    stay ACCEPTED for that peer)."""

    def __init__(self, op: Operator, sweep: BacklogSweep, *, intake: CommandSource | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.op = op
        self.sweep = sweep
        self.intake = intake
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.op.start()
        if self.intake is not None:
            self.intake.start()
        self._task = asyncio.get_running_loop().create_task(
            self.sweep.run(self._sleep), name=f"backlog {self.op.id}")

    async def stop(self, budget: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # The unbind keeps its budget: the intake finishes its batches meanwhile.
        stopping = [unbind_within(self.op, budget)]
        if self.intake is not None:
            stopping.append(self.intake.stop())
        await asyncio.gather(*stopping)
        # After the binds closed and the intake stopped: parts the binds could not
        # send came back to the queue, the last batches queued theirs.
        dropped = self.op.drop_queue()
        if dropped:
            log.info("queue dropped: the next leader sends it",
                     extra={"event": "queue_dropped", "operator": self.op.id, "count": dropped})

    def idle(self) -> None:
        self.op.drop_queue()  # what intake queued here since the last look
