"""The Protocols the daemon's parts meet through.

Each part is handed its collaborators at construction (``smppd.runtime.wiring`` builds
them) typed by what it asks of them, not by the class that happens to answer: the
store is a ``correlation.store.CorrelationStore``, the event sink a
``smppd.intake.events.EventSink``, and the rest are here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from correlation.ids import IdForm
from correlation.matcher import MatchResult
from correlation.receipts import Receipt
from smppd.intake.message import Outbound
from smppd.link.operator import Operator

# SelectOperator: the operator the control plane's routing picks (None: the prefixes decide).
Selector = Callable[[Outbound], str | None]
# ValidateLease: (sender, tenant) -> (allowed, reason code).
LeaseCheck = Callable[[str, str], Awaitable[tuple[bool, str]]]
# The circuit breaker: (operator, the submit went well) after each response.
CircuitRecord = Callable[[str, bool], None]
# Refuses a callback_url the daemon will not POST to: raises MessageError naming it.
CallbackCheck = Callable[[Outbound], None]
# A held receipt matched at expiry (its submit was stored by another replica).
LateMatch = Callable[[str, MatchResult], Awaitable[None]]


class Matcher(Protocol):
    """Receipts to submitted parts (``correlation.matcher.ReceiptMatcher``)."""

    @property
    def held_count(self) -> int: ...

    def learned_id_forms(self, operator_id: str) -> dict[str, str]: ...

    def expect_submits(self, operator_id: str, submits: Sequence[tuple[str, int, int, str]],
                       id_form: IdForm) -> None: ...

    async def on_submitted_many(self, operator_id: str,
                                submits: Sequence[tuple[str, int, int, str]],
                                id_form: IdForm) -> list[MatchResult]: ...

    async def on_receipts(self, operator_id: str, receipts: Sequence[Receipt],
                          id_form: IdForm) -> list[MatchResult | None]: ...

    async def expire_held(self, now: float, on_late_match: LateMatch | None = None) -> int: ...


class Commands(Protocol):
    """What the NATS intake asks of the dispatcher: commands made into stored messages."""

    @property
    def operators(self) -> Mapping[str, Operator]: ...

    def prepare(self, raw: Any) -> tuple[Outbound, Operator]: ...

    async def accept(self, items: Sequence[tuple[Outbound, Operator]], *,
                     dedupe: bool = ...) -> Sequence[object]: ...
