"""The send window: outstanding requests by sequence number, with expiry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class WindowFullError(Exception):
    """No free slot: the caller must wait for a response or an expiry."""

    def __init__(self, size: int) -> None:
        super().__init__(f"window full ({size} outstanding requests)")
        self.size = size


class DuplicateSequenceError(Exception):
    def __init__(self, sequence_number: int) -> None:
        super().__init__(f"sequence number {sequence_number} is already outstanding")
        self.sequence_number = sequence_number


@dataclass(slots=True)
class Pending:
    """One request waiting for its response."""

    sequence_number: int
    command_id: int
    sent_at: float
    deadline: float
    context: Any = None  # whatever the sender needs back with the response


class Window:
    """Outstanding requests, at most ``size``, each expiring ``timeout`` after it was sent.

    Every entry gets the same timeout, so insertion order is deadline order and
    expiry pops from the front of the dict without a heap.
    """

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        if timeout <= 0:
            raise ValueError("response timeout must be positive")
        self.size = size
        self.timeout = timeout
        self._pending: dict[int, Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, sequence_number: object) -> bool:
        return sequence_number in self._pending

    @property
    def free(self) -> int:
        return max(0, self.size - len(self._pending))

    def add(self, sequence_number: int, command_id: int, now: float, context: Any = None,
            *, force: bool = False) -> Pending:
        """Record a request; ``force`` lets session housekeeping (enquire_link, unbind) in
        even when the window is full, so a busy bind can still be probed and closed."""
        if not force and len(self._pending) >= self.size:
            raise WindowFullError(self.size)
        if sequence_number in self._pending:
            raise DuplicateSequenceError(sequence_number)
        entry = Pending(sequence_number, command_id, now, now + self.timeout, context)
        self._pending[sequence_number] = entry
        return entry

    def complete(self, sequence_number: int) -> Pending | None:
        """The request answered by a response; None means an unexpected response."""
        return self._pending.pop(sequence_number, None)

    def expire(self, now: float) -> list[Pending]:
        """Remove and return every request whose deadline has passed."""
        expired: list[Pending] = []
        pending = self._pending
        while pending:
            first = next(iter(pending.values()))
            if first.deadline > now:
                break
            expired.append(pending.pop(first.sequence_number))
        return expired

    def next_deadline(self) -> float | None:
        if not self._pending:
            return None
        return next(iter(self._pending.values())).deadline

    def drain(self) -> list[Pending]:
        """Remove and return everything still outstanding (the connection is gone)."""
        entries = list(self._pending.values())
        self._pending.clear()
        return entries

    def resize(self, size: int) -> None:
        """A new size at runtime; outstanding requests above it simply finish."""
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
