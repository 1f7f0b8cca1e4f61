"""The daemon's GC settings after start (smppd.runtime.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from smppd.runtime.gc_tuning import FIRST_THRESHOLD, tune_after_start


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_rarer(restore_gc: None) -> None:
    keep = [object() for _ in range(1000)]  # what start-up left behind
    tune_after_start()
    assert gc.get_freeze_count() >= len(keep)
    assert gc.get_threshold()[0] == FIRST_THRESHOLD
