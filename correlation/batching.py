"""Helpers both correlation stores use to run many calls, or many rows, as one write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from correlation.store import FINAL_STATES

T = TypeVar("T")

# (message_id, part, total, state, stat, err, at): one row of record_receipts.
ReceiptRow = tuple[str, int, int, str, str | None, str | None, float]


def split_receipts(rows: Sequence[ReceiptRow]) -> tuple[list[int], list[int]]:
    """Indices of the rows one set-based statement may record, and of the others.

    A row qualifies when it is a final receipt for a single-part message that no other
    row of the batch mentions: it touches one part and one message nothing else in the
    batch touches, so recording it apart from the others gives the same answers as
    recording every row one by one, in order. The rest (multipart messages,
    intermediate receipts, a message named twice) must run one by one, in order.
    """
    mentions = Counter(row[0] for row in rows)
    set_based: list[int] = []
    in_order: list[int] = []
    for i, (message_id, _, total, state, _, _, _) in enumerate(rows):
        if state in FINAL_STATES and total == 1 and mentions[message_id] == 1:
            set_based.append(i)
        else:
            in_order.append(i)
    return set_based, in_order


def rows_of_calls(calls: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The rows of several queued calls whose only argument is a list of rows, in order."""
    return [row for (rows, *_) in calls for row in rows]


def per_call(values: Sequence[T], calls: Sequence[tuple[Any, ...]]) -> list[list[T]]:
    """Cut one answer per row (from ``rows_of_calls``) back into one list per call."""
    answers: list[list[T]] = []
    start = 0
    for rows, *_ in calls:
        answers.append(list(values[start : start + len(rows)]))
        start += len(rows)
    return answers


# An operation fn(conn, *args), run in the batch's transaction (SQLite: sync; PostgreSQL:
# a coroutine), and its variant for many calls: fn(conn, [args of each call]) -> one
# result per call, or None when each call's result is None.
Op = Callable[..., Any]


def runs(
    calls: Sequence[tuple[Op, tuple[Any, ...]]], many: Mapping[Op, Any]
) -> Iterator[tuple[Op, list[tuple[Any, ...]]]]:
    """The calls as runs, in order: consecutive calls of an op that has a variant in
    ``many`` together (it costs about half per call), any other call alone."""
    i = 0
    while i < len(calls):
        op = calls[i][0]
        j = i + 1
        if op in many:
            while j < len(calls) and calls[j][0] is op:
                j += 1
        yield op, [args for _, args in calls[i:j]]
        i = j
