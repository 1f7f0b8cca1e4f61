"""Labelled metric children, cached: a ``labels()`` lookup costs more than the
``inc()`` it is for, and receipts and accepts are counted one by one."""

from __future__ import annotations

from typing import Any


class MetricChildren:
    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}

    def get(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per metric and labels."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child
