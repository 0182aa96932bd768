"""The HNSW item index (hnswlib), loaded only after its file's hash was verified.

hnswlib stores neither the dimension nor the space in its file and crashes on corrupted files, so
both come from the signed manifest and the file is hashed right before it is loaded.
"""
from __future__ import annotations

import bisect
import struct
import threading
from pathlib import Path
from typing import Collection, Optional, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ItemIndexError
from .manifest import IndexSpec

# hnswlib 0.8 file header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t each), maxlevel (int), enterpoint (uint), maxM, maxM0, M (size_t),
# mult (double), ef_construction (size_t); 64-bit little-endian builds.
_HEADER = struct.Struct("<6Q i I 3Q d Q")

FETCH_EXTRA = 3  # the unfiltered first try fetches up to (1 + FETCH_EXTRA) * k rows


def check_index_file(path: Path, spec: IndexSpec) -> None:
    """Check a whole hnswlib file against the manifest before hnswlib sees it: header, graph and labels.

    hnswlib stores neither the dimension nor the space (it loads a file of another dimension silently
    and answers wrongly) and trusts every link it reads: a neighbour id out of range, or a link to a
    level its target does not have, is an out-of-bounds read during search. The sha256 check stops
    tampering with shipped files; this stops a damaged file a device built itself (a delta grows the
    index in place) or one that no signature covers from crashing the process.
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
    if count:
        _check_graph(path, size, count, per_element, offset_data, max_level, enter, max_m, max_m0)


def _check_graph(path: Path, size: int, count: int, per_element: int, offset_data: int, max_level: int, enter: int,
                 max_m: int, max_m0: int) -> None:
    """Every link list in range (counts within M, neighbour ids < count, each neighbour present on the
    level it is linked at), labels a permutation of the rows, and the file exactly as long as its lists."""
    def bad(what: str) -> ItemIndexError:
        return ItemIndexError(f"index file {path.name} is damaged: {what}")

    if (size - _HEADER.size) % 4:
        raise bad("its length is not a whole number of link lists")
    all_words = np.memmap(path, dtype="<u4", mode="r", offset=_HEADER.size)  # every field below is 4-byte aligned
    level0 = all_words[:count * per_element // 4].reshape(count, per_element // 4)
    low, high = level0[:, -2], level0[:, -1]  # the 8-byte label of each element
    if high.any() or low.max() >= count or np.bincount(low, minlength=count).max() != 1:
        raise bad("its labels are not one per row")
    _check_lists(level0[:, :offset_data // 4], max_m0, count, bad, "level 0")
    words = all_words[count * per_element // 4:].view(np.ndarray)
    list_words = max_m + 1
    levels = np.zeros(count, np.int64)
    firsts = []  # where each upper-level element's link block starts, in words
    nonzero = np.flatnonzero(words).tolist()
    p, row = 0, 0
    while row < count:  # one size word per element; only elements above level 0 (about 1 in M) take a step here
        i = bisect.bisect_left(nonzero, p)
        q = nonzero[i] if i < len(nonzero) else len(words)
        if q - p >= count - row:
            p += count - row
            break
        row += q - p
        nbytes = int(words[q])
        if nbytes % (4 * list_words) or nbytes // (4 * list_words) > max_level:
            raise bad(f"element {row} has a link block of {nbytes} bytes")
        levels[row] = nbytes // (4 * list_words)
        firsts.append(q + 1)
        p, row = q + 1 + nbytes // 4, row + 1
        if p > len(words):
            raise bad("it ends inside a link list")
    if p != len(words):
        raise bad(f"{4 * (len(words) - p)} bytes follow the last link list")
    if levels[enter] != max_level:
        raise bad(f"the entry point is on level {levels[enter]}, the header says {max_level}")
    if firsts:
        per_row = levels[levels > 0]
        within = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # 0.. per element
        first = np.repeat(np.asarray(firsts), per_row) + list_words * within
        _check_lists(words[first[:, None] + np.arange(list_words)], max_m, count, bad, "an upper level", levels,
                     within + 1)


def _check_lists(lists: np.ndarray, limit: int, count: int, bad, where: str, levels: Optional[np.ndarray] = None,
                 level_of: Optional[np.ndarray] = None) -> None:
    """Rows of [size word, ids...]: the size's low 16 bits are the count (byte 2 the deleted mark, 0 or 1);
    slots past the count are unused and may hold anything."""
    head = lists[:, 0]
    n = head & 0xFFFF
    if (n > limit).any() or ((head >> 16) > 1).any():
        raise bad(f"a link list on {where} has a bad size word")
    ids = np.where(np.arange(lists.shape[1] - 1)[None, :] < n[:, None], lists[:, 1:], 0)
    if ids.max(initial=0) >= count:
        raise bad(f"a link on {where} points past the last element")
    if levels is not None and (np.where(ids > 0, levels[ids], 64) < level_of[:, None]).any():
        raise bad(f"a link on {where} points to an element that is not on that level")


def load_projection(path: Path, spec: IndexSpec, full_dim: int) -> np.ndarray:
    """The compact store's projection matrix, (full_dim, spec.dim) float32, from a verified .npy file."""
    try:
        projection = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IncompatibleBundleError(f"index projection {path.name} is not a .npy matrix: {e}") from None
    if projection.dtype != np.float32 or projection.shape != (full_dim, spec.dim) or not np.isfinite(projection).all():
        raise IncompatibleBundleError(f"index projection {path.name} is {projection.dtype} {projection.shape}, the manifest "
                                      f"needs float32 ({full_dim}, {spec.dim}) with finite values")
    return np.ascontiguousarray(projection)


class ItemIndex:
    """An hnswlib index over the item vectors, or (the compact store) over their projection: then
    :meth:`search` projects the query and returns candidates for an exact re-rank (see :class:`Retriever`)."""

    def __init__(self, path: Path, spec: IndexSpec, projection: Optional[np.ndarray] = None) -> None:
        import hnswlib
        check_index_file(path, spec)
        if (projection is None) != (spec.projection is None):
            raise IncompatibleBundleError(f"index {spec.file}: the manifest {'names' if spec.projection else 'has no'} "
                                          "projection, the caller gave " + ("none" if projection is None else "one"))
        self.spec, self.projection = spec, projection
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

    def search(self, query: np.ndarray, k: int, exclude: Optional[Collection[int]] = None, ef: Optional[int] = None,
               need: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` (rows, distances) nearest to ``query``, best first, never returning a row in ``exclude``
        (rows as an array, or a set or mapping of them: a device's seen rows are kept as one between requests).
        ``query`` is in the item space; a compact index projects it, and its distances are the projection's.

        First an unfiltered search for a few more than ``k`` rows, excluded ones dropped afterwards;
        only when too many of them were excluded does hnswlib's per-node filter (a Python callback,
        several times slower) run. Raises ItemIndexError if the graph cannot yield ``k`` rows.

        ``need`` (default ``k``): the caller keeps only the best ``need`` of them after its own exact re-rank
        (a compact store's candidate pool): the first search fetches extra rows for excluded ones among
        ``need``, not among all ``k``, and its unexcluded rows (at least ``need``, at most ``k``) are enough.
        """
        skip = _row_set(exclude)
        n = min(k, self.count - len(skip))
        if n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.asarray(query, np.float32).reshape(1, -1)
        if self.projection is not None:
            query = query @ self.projection
        ef = max(ef or self.spec.ef_search, n)
        need = min(n, need or n)
        fetch = n + min(len(skip), FETCH_EXTRA * need)
        with self._lock:
            try:
                labels, dist = self._query(query, fetch, max(ef, fetch), None)
                if not skip:
                    if len(labels) >= n:
                        return labels[:n], dist[:n]
                else:
                    keep = np.array([i for i, label in enumerate(labels.tolist()) if label not in skip][:n], np.intp)
                    if len(keep) >= need:
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
        return labels[0].astype(np.int64), dist[0].astype(np.float32, copy=False)


def _row_set(exclude: Optional[Collection[int]]) -> Collection[int]:
    """``exclude`` as something with fast ``in`` and a distinct count: sets and mappings as they are."""
    if isinstance(exclude, (set, frozenset, dict)):
        return exclude
    if exclude is None or len(exclude) == 0:
        return frozenset()
    return set(np.asarray(exclude, dtype=np.int64).reshape(-1).tolist())
