"""The device history's recent window as item-table rows, kept between requests.

Between two requests the window usually gained an event or two at its end (and, once full, lost as
many at its start), so only those events are mapped to rows, and the seen rows (a multiset, used to
exclude items from recommendations) change by as many: no per-request pass over a 1,000-event window.
"""
from __future__ import annotations

import threading
from typing import Dict, List

import numpy as np

from .items import ItemTable

MAX_SHIFT = 4  # windows that moved by more events than this since the last request are mapped again


class HistoryRows:
    """``aligned``: the row of each id of the window (-1: not in the catalog), oldest first; ``seen``:
    the rows in it, as a mapping row -> count (``row in seen``, ``len(seen)`` distinct rows)."""

    def __init__(self, items: ItemTable) -> None:
        self.items = items
        self.ids: List[str] = []
        self.aligned = np.zeros(0, np.int64)
        self.seen: Dict[int, int] = {}
        self._lock = threading.Lock()

    def update(self, ids: List[str]) -> None:
        """Move to the window ``ids`` (the history store's list: unchanged events are the same objects)."""
        with self._lock:
            self._update(ids)

    def _update(self, ids: List[str]) -> None:
        old = self.ids
        for shift in range(MAX_SHIFT):
            keep = len(ids) - shift
            if 0 < keep <= len(old) and ids[keep - 1] is old[-1] and ids[:keep] == old[len(old) - keep:]:
                tail = self.items.aligned_rows(ids[keep:])
                self._count(self.aligned[:len(old) - keep], -1)
                self._count(tail, 1)
                self.aligned = np.concatenate([self.aligned[len(old) - keep:], tail])
                self.ids = ids
                return
        self.ids, self.aligned, self.seen = ids, self.items.aligned_rows(ids), {}
        self._count(self.aligned, 1)

    def _count(self, rows: np.ndarray, step: int) -> None:
        seen = self.seen
        for r in rows.tolist():
            if r >= 0:
                n = seen.get(r, 0) + step
                if n:
                    seen[r] = n
                else:
                    del seen[r]
