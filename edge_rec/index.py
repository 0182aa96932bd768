"""The HNSW item index (hnswlib), loaded only after its file's hash was verified.

hnswlib stores neither the dimension nor the space in its file and crashes on corrupted files, so
both come from the signed manifest and the file is hashed right before it is loaded.
"""
from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ItemIndexError
from .manifest import IndexSpec

# hnswlib 0.8 file header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t each), maxlevel (int), enterpoint (uint), maxM, maxM0, M (size_t),
# mult (double), ef_construction (size_t); 64-bit little-endian builds.
_HEADER = struct.Struct("<6Q i I 3Q d Q")

FETCH_EXTRA = 3  # the unfiltered first try fetches up to (1 + FETCH_EXTRA) * k rows


def check_header(path: Path, spec: IndexSpec) -> None:
    """Check an hnswlib file's header against the manifest before hnswlib sees it.

    hnswlib loads a file of another dimension silently (and answers wrongly) and can crash on damaged
    headers; the sha256 check stops tampering, this stops a wrong or inconsistent index file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise ItemIndexError(f"{path.name} is too short to be an hnswlib index ({size} bytes)")
    (offset0, max_elements, count, per_element, label_offset, offset_data, max_level, enter, max_m, max_m0, m,
     mult, ef_construction) = _HEADER.unpack(raw)
    dim = (label_offset - offset_data) // 4
    problems = []
    if dim != spec.dim or label_offset - offset_data != 4 * spec.dim:
        problems.append(f"dimension {dim}, the manifest says {spec.dim}")
    if count != spec.count:
        problems.append(f"{count} items, the manifest says {spec.count}")
    if m != spec.M or max_m0 != 2 * m or max_m != m:
        problems.append(f"M {m} (maxM {max_m}, maxM0 {max_m0}), the manifest says M {spec.M}")
    if offset0 != 0 or offset_data != max_m0 * 4 + 4 or per_element != label_offset + 8 or not 0 <= max_level < 64:
        problems.append("inconsistent header fields")
    if count > max_elements or (count and enter >= count) or _HEADER.size + count * per_element > size:
        problems.append("element counts do not fit the file")
    if problems:
        raise IncompatibleBundleError(f"index file {path.name} does not match the manifest: {'; '.join(problems)}")


class ItemIndex:
    def __init__(self, path: Path, spec: IndexSpec) -> None:
        import hnswlib
        check_header(path, spec)
        self.spec = spec
        self._index = hnswlib.Index(space=spec.space, dim=spec.dim)
        try:
            self._index.load_index(str(path), max_elements=spec.count)
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
        """Up to ``k`` (rows, distances) nearest to ``query``, best first, never returning a row in ``exclude``.

        First an unfiltered search for a few more than ``k`` rows, excluded ones dropped afterwards;
        only when too many of them were excluded does hnswlib's per-node filter (a Python callback,
        several times slower) run. Raises ItemIndexError if the graph cannot yield ``k`` rows.
        """
        skip = set(np.asarray(exclude, dtype=np.int64).tolist()) if exclude is not None and len(exclude) else set()
        n = min(k, self.count - len(skip))
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.asarray(query, np.float32).reshape(1, -1)
        ef = max(ef or self.spec.ef_search, n)
        fetch = n + min(len(skip), FETCH_EXTRA * n)
        with self._lock:
            try:
                labels, dist = self._query(query, fetch, max(ef, fetch), None)
                keep = [i for i, label in enumerate(labels.tolist()) if label not in skip][:n]
                if len(keep) == n:
                    return labels[keep], dist[keep]
            except ItemIndexError:
                pass
            allowed = (lambda label: label not in skip) if skip else None
            while True:
                try:
                    return self._query(query, n, ef, allowed)
                except ItemIndexError:  # fewer than n reachable: widen the beam, then give up
                    if ef >= self.count:
                        raise
                    ef = min(self.count, ef * 4)

    def _query(self, query: np.ndarray, n: int, ef: int, allowed) -> Tuple[np.ndarray, np.ndarray]:
        self._index.set_ef(ef)
        try:
            labels, dist = self._index.knn_query(query, k=n, filter=allowed)
        except RuntimeError as e:
            raise ItemIndexError(f"the index cannot return {n} neighbours: {e}") from None
        return labels[0].astype(np.int64), dist[0].astype(np.float32)
