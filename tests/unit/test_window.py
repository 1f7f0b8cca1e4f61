"""The send window: slots, completion, expiry in deadline order."""

from __future__ import annotations

import pytest

from smppd.protocol.constants import CommandId
from smppd.protocol.window import DuplicateSequenceError, Pending, Window, WindowFullError


def test_add_complete_and_free_slots() -> None:
    window = Window(2, timeout=10.0)
    entry = window.add(1, CommandId.SUBMIT_SM, 100.0, context="ctx")
    assert entry == Pending(1, CommandId.SUBMIT_SM, 100.0, 110.0, "ctx")
    assert 1 in window and len(window) == 1 and window.free == 1
    assert window.complete(1) is entry
    assert window.complete(1) is None  # a second response is unexpected
    assert window.free == 2


def test_full_window_refuses_unless_forced() -> None:
    window = Window(1, timeout=10.0)
    window.add(1, CommandId.SUBMIT_SM, 0.0)
    with pytest.raises(WindowFullError) as info:
        window.add(2, CommandId.SUBMIT_SM, 0.0)
    assert info.value.size == 1
    window.add(3, CommandId.ENQUIRE_LINK, 0.0, force=True)
    assert len(window) == 2 and window.free == 0


def test_duplicate_sequence_refused() -> None:
    window = Window(5, timeout=10.0)
    window.add(7, CommandId.SUBMIT_SM, 0.0)
    with pytest.raises(DuplicateSequenceError) as info:
        window.add(7, CommandId.SUBMIT_SM, 1.0)
    assert info.value.sequence_number == 7


def test_expiry_in_deadline_order() -> None:
    window = Window(10, timeout=5.0)
    for seq, sent in [(1, 0.0), (2, 1.0), (3, 2.0)]:
        window.add(seq, CommandId.SUBMIT_SM, sent)
    window.complete(2)
    assert window.next_deadline() == 5.0
    assert window.expire(4.999) == []
    assert [p.sequence_number for p in window.expire(7.0)] == [1, 3]
    assert window.next_deadline() is None and len(window) == 0


def test_expiry_is_inclusive_of_the_deadline() -> None:
    window = Window(10, timeout=5.0)
    window.add(1, CommandId.SUBMIT_SM, 0.0)
    assert [p.sequence_number for p in window.expire(5.0)] == [1]


def test_drain_and_resize() -> None:
    window = Window(3, timeout=5.0)
    window.add(1, CommandId.SUBMIT_SM, 0.0)
    window.add(2, CommandId.SUBMIT_SM, 0.0)
    window.resize(1)
    assert window.free == 0
    assert [p.sequence_number for p in window.drain()] == [1, 2]
    assert window.free == 1
    with pytest.raises(ValueError):
        window.resize(0)


@pytest.mark.parametrize(("size", "timeout"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_bad_parameters(size: int, timeout: float) -> None:
    with pytest.raises(ValueError):
        Window(size, timeout)
