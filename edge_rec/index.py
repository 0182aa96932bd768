"""The HNSW item index (hnswlib), loaded only after its file's hash was verified.

hnswlib stores neither the dimension nor the space in its file and crashes on corrupted files, so
both come from the signed manifest and the file is hashed right before it is loaded.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ItemIndexError
from .manifest import IndexSpec


class ItemIndex:
    def __init__(self, path: Path, spec: IndexSpec, extra_capacity: int = 0) -> None:
        import hnswlib
        self.spec = spec
        self._index = hnswlib.Index(space=spec.space, dim=spec.dim)
        try:
            self._index.load_index(str(path), max_elements=spec.count + extra_capacity, allow_replace_deleted=True)
        except RuntimeError as e:
            raise ItemIndexError(f"cannot load the index {path.name}: {e}") from None
        if self._index.get_current_count() != spec.count:
            raise IncompatibleBundleError(f"the index holds {self._index.get_current_count()} items, the manifest says {spec.count}")
        self._index.set_ef(spec.ef_search)
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._index.element_count

    def search(self, query: np.ndarray, k: int, exclude: Optional[np.ndarray] = None, ef: Optional[int] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` (rows, distances) nearest to ``query``, best first, skipping the rows in ``exclude``."""
        exclude = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
        n = min(self.count, k + len(exclude))
        if n <= 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with self._lock:
            self._index.set_ef(max(ef or self.spec.ef_search, n))
            try:
                labels, dist = self._index.knn_query(np.asarray(query, np.float32).reshape(1, -1), k=n)
            except RuntimeError as e:
                raise ItemIndexError(f"index search for {n} neighbours failed: {e}") from None
        labels, dist = labels[0].astype(np.int64), dist[0]
        if len(exclude):
            keep = ~np.isin(labels, exclude)
            labels, dist = labels[keep], dist[keep]
        return labels[:k], dist[:k].astype(np.float32)
