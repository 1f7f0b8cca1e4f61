"""Messages submitted through the control API: idempotency keys, duplicate message
ids, tenants a token may act for, senders leased to another tenant.

* An ``Idempotency-Key`` belongs to its caller (the token and the tenants of the
  request) for 48 h: the same request again is answered with the first one's results
  (``duplicate: true``); another request under the key is a 409 naming the header.
  Messages without a ``message_id`` get one derived from the key, so two copies of a
  request racing each other store each message once.
* A ``message_id`` that is already stored answers the original (``duplicate: true``)
  when the message is the same, and is a 409 naming the field when it is not, for
  whatever tenant stored it: never a second row, never a 500.
* A sender ValidateLease denies refuses the whole request, single or bulk, and
  nothing of it is stored: a 403 with a problem naming each denied message
  (``messages[i].source``, or ``messages[i].tenant_id`` for ``WRONG_TENANT``) and its
  reason code in ``denied``; a 503 with Retry-After when every denial is
  ``UNAVAILABLE`` (the check could not be made: the same request may pass later).
  A dispatch command from NATS has no caller to answer: it is stored REJECTED with
  the reason code instead (smppd.intake.dispatch).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from control.view import Caller, InputError
from correlation.store import CorrelationStore, MessageRecord
from smppd.intake.dispatch import Accepted, Dispatcher
from smppd.intake.message import Outbound, relative_validity
from smppd.link.operator import Operator

# uuid5 namespace of the message ids derived from idempotency keys.
_KEYED_IDS = uuid.UUID("5b0e6a57-52f1-4d2e-9b7c-2c7f6f1e9d35")
WRONG_TENANT = "WRONG_TENANT"
UNAVAILABLE = "UNAVAILABLE"
# What each ValidateLease reason code tells the caller.
_DENIED = {
    "NOT_REGISTERED": "sender {source!r} is not registered to any tenant",
    WRONG_TENANT: "sender {source!r} is leased to another tenant, not {tenant!r}",
    "LEASE_SUSPENDED": "the lease of sender {source!r} is suspended",
    "QUARANTINE_ACTIVE": "sender {source!r} is in quarantine",
    UNAVAILABLE: "the lease of sender {source!r} could not be checked (lease cache and "
                 "database unreachable); retry later",
}


def fingerprint(bodies: Sequence[Any]) -> str:
    """SHA-256 of the request as JSON with sorted keys: the same request, the same print."""
    text = json.dumps(list(bodies), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def scope_of(caller: Caller, items: Sequence[tuple[Outbound, Operator]]) -> str:
    """Whose key it is: the token's name and the tenants the request is for."""
    tenants = sorted({msg.tenant_id for msg, _ in items})
    return f"{caller.name or ''}\x1f{','.join(tenants)}"


def same_message(stored: MessageRecord, msg: Outbound) -> bool:
    """Whether a stored message is this one again (what the caller sent; the operator
    routing picked may differ)."""
    validity = relative_validity(msg.validity) if msg.validity else None
    return (stored.tenant_id, stored.source, stored.destination, stored.data_coding,
            bytes(stored.body), bool(stored.registered_delivery), stored.priority,
            stored.validity) == (msg.tenant_id, msg.source, msg.destination, msg.data_coding,
                                 msg.body, msg.registered_delivery, msg.priority, validity)


def _field(single: bool, index: int, name: str) -> str:
    return name if single else f"messages[{index}].{name}"


class Submissions:
    def __init__(self, dispatcher: Dispatcher, store: CorrelationStore) -> None:
        self.dispatcher = dispatcher
        self.store = store

    async def submit(self, bodies: Sequence[Any], items: list[tuple[Outbound, Operator]],
                     key: str | None, caller: Caller) -> list[dict[str, Any]]:
        """Accept validated messages (``items``, from ``bodies``); the API's results."""
        single = len(bodies) == 1
        if key is None:
            await self._refuse_denied(items, single)
            return await self._accept(bodies, items, single, keyed=False)
        scope, print_ = scope_of(caller, items), fingerprint(bodies)
        claim = await self.store.idempotency_claim(scope, key, print_)
        if claim.fingerprint != print_:
            raise InputError([("Idempotency-Key", "already used by another request of this"
                               " caller in the last 48 h")], status=409,
                             title="Idempotency key reused")
        if claim.response is not None:
            return [{**result, "duplicate": True} for result in claim.response]
        for index, (body, (msg, _)) in enumerate(zip(bodies, items, strict=True)):
            if not (isinstance(body, dict) and body.get("message_id")):
                # The claim's time too: the key taken again after 48 h is a new request.
                seed = f"{scope}\x1f{key}\x1f{claim.created_at!r}\x1f{index}"
                msg.message_id = str(uuid.uuid5(_KEYED_IDS, seed))
        try:
            await self._refuse_denied(items, single)  # after the claim: a replay is answered
            results = await self._accept(bodies, items, single, keyed=True)
        except InputError:  # refused, nothing stored: the key is free for a corrected request
            await self.store.idempotency_release(scope, key, print_)
            raise
        await self.store.idempotency_complete(
            scope, key, print_, [{k: v for k, v in r.items() if k != "duplicate"}
                                 for r in results])
        return results

    async def _refuse_denied(self, items: list[tuple[Outbound, Operator]],
                             single: bool) -> None:
        """403 (503 if the check could not be made) before anything is stored, naming
        each message whose sender ValidateLease denies, with its reason code."""
        verdicts = await self.dispatcher.lease_verdicts(items)
        if not verdicts:
            return
        problems: list[tuple[str, str]] = []
        denied: list[dict[str, Any]] = []
        for i, (msg, _) in enumerate(items):
            reason = verdicts.get((msg.source, msg.tenant_id))
            if reason is None:
                continue
            field = _field(single, i, "tenant_id" if reason == WRONG_TENANT else "source")
            text = _DENIED.get(reason, "sender {source!r} is not leased to {tenant!r}")
            problems.append((field, f"{text.format(source=msg.source, tenant=msg.tenant_id)}"
                                    f" ({reason})"))
            denied.append({"index": i, "field": field, "source": msg.source,
                           "tenant_id": msg.tenant_id, "reason_code": reason})
        unavailable = all(d["reason_code"] == UNAVAILABLE for d in denied)
        error = InputError(problems, status=503 if unavailable else 403,
                           title="Lease check unavailable" if unavailable
                           else "Sender not leased")
        error.extra = {"denied": denied}
        if single:
            error.extra["reason_code"] = denied[0]["reason_code"]
        if unavailable:
            error.headers["Retry-After"] = "5"
        raise error

    async def _accept(self, bodies: Sequence[Any], items: list[tuple[Outbound, Operator]],
                      single: bool, *, keyed: bool) -> list[dict[str, Any]]:
        given = [i for i, body in enumerate(bodies)
                 if keyed or (isinstance(body, dict) and body.get("message_id"))]
        await self._refuse_conflicts(items, given, single)
        # Ids the daemon drew itself (uuid4) cannot be stored already: a plain insert.
        # Every sender passed the lease check (_refuse_denied): nothing to look up again.
        accepted = await self.dispatcher.accept(items, dedupe=bool(given), verdicts={})
        await self._refuse_raced(items, accepted, single)
        return [{"message_id": a.message_id, "operator_id": a.operator_id or None,
                 "parts": a.parts, "duplicate": a.duplicate} for a in accepted]

    async def _refuse_conflicts(self, items: list[tuple[Outbound, Operator]],
                                given: list[int], single: bool) -> None:
        """409 before anything is stored: a given id twice in the request for two
        different messages, or already stored for another message."""
        if not given:
            return
        problems: list[tuple[str, str]] = []
        first: dict[str, int] = {}
        for i in given:
            msg = items[i][0]
            j = first.setdefault(msg.message_id, i)
            if j != i and not _same_outbound(items[j][0], msg):
                problems.append((_field(single, i, "message_id"),
                                 f"also the id of messages[{j}], a different message"))
        stored = await self.store.find_messages(list(first))
        for i in given:
            msg = items[i][0]
            found = stored.get(msg.message_id)
            if found is not None and not same_message(found, msg):
                problems.append((_field(single, i, "message_id"),
                                 "already the id of a different message"))
        if problems:
            raise InputError(problems, status=409, title="Duplicate message id")

    async def _refuse_raced(self, items: list[tuple[Outbound, Operator]],
                            accepted: list[Accepted], single: bool) -> None:
        """A concurrent request stored an id first: the same message is a duplicate,
        another one a 409 (which lists what this request did store)."""
        dupes = [i for i, a in enumerate(accepted) if a.duplicate]
        if not dupes:
            return
        stored = await self.store.find_messages([items[i][0].message_id for i in dupes])
        problems = [(_field(single, i, "message_id"), "already the id of a different message")
                    for i in dupes
                    if (found := stored.get(items[i][0].message_id)) is not None
                    and not same_message(found, items[i][0])]
        if problems:
            error = InputError(problems, status=409, title="Duplicate message id")
            error.extra = {"accepted": [a.message_id for a in accepted if not a.duplicate]}
            raise error


def _same_outbound(a: Outbound, b: Outbound) -> bool:
    return (a.tenant_id, a.source, a.destination, a.data_coding, a.body,
            a.registered_delivery, a.priority, a.validity) == (
        b.tenant_id, b.source, b.destination, b.data_coding, b.body,
        b.registered_delivery, b.priority, b.validity)
