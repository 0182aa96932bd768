"""The HNSW item index (hnswlib), loaded only after its file's hash was verified.

hnswlib stores neither the dimension nor the space in its file and crashes on corrupted files, so
both come from the signed manifest and the file is hashed right before it is loaded. The check reads
the whole graph; what it read is handed to hnswlib as the state its pickle support restores (a copy of
three arrays), which is about three times faster than hnswlib's own loader at a million items (that
loader seeks through the file element by element); any other hnswlib falls back to its loader. The index
a device serves from is restored for queries only, without hnswlib's label map (see
:meth:`Graph.hnswlib_state`); a delta grows a copy restored with it.
"""
from __future__ import annotations

import ctypes
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Dict, Optional, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ItemIndexError
from .manifest import IndexSpec
from .vectors import check_basis

# hnswlib 0.8 file header: offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t each), maxlevel (int), enterpoint (uint), maxM, maxM0, M (size_t),
# mult (double), ef_construction (size_t); 64-bit little-endian builds.
_HEADER = struct.Struct("<6Q i I 3Q d Q")

_STATE_VERSION = 1  # hnswlib 0.8's pickle format (``ser_version``), which :meth:`Graph.hnswlib_state` writes
FETCH_EXTRA = 3  # the unfiltered first try fetches up to (1 + FETCH_EXTRA) * k rows


@dataclass
class Graph:
    """A checked hnswlib file's graph, as read by :func:`check_index_file`."""

    header: Dict[str, Any]   # the file header's fields, by hnswlib's names
    level0: np.ndarray       # every element's level-0 block (links, vector, label), int8, mapped from the file
    labels: np.ndarray       # (count,) uint64: each element's label (a row of the item table)
    levels: np.ndarray       # (count,) int32: each element's top level
    upper: np.ndarray        # int8: the upper-level link lists, element by element
    deleted: bool            # some element carries hnswlib's deleted mark

    def hnswlib_state(self, spec: IndexSpec, capacity: Optional[int] = None, ef_construction: Optional[int] = None,
                      lookup: bool = True) -> Dict[str, Any]:
        """The dict hnswlib 0.8's ``Index.__setstate__`` restores an index from: room for ``capacity`` items
        (default: as many as it holds), inserting at ``ef_construction`` (default: the file's).

        ``lookup=False``: an index for queries only, without hnswlib's label -> element map. A query answers
        with the label stored beside each element (and a filter sees that label), so only updates (add,
        replace, mark_deleted, get_items) read the map, which costs about 40 MB at a million items (a hash
        map node per element and its buckets: a 1M-item bundle opens at 331 MB instead of 373). Every label is then given as 0:
        the map holds one entry, and an update on such an index fails with hnswlib's "Label not found"."""
        count = self.header["cur_element_count"]
        h = dict(self.header, max_elements=max(capacity or 0, count))
        if ef_construction is not None:
            h["ef_construction"] = ef_construction
        # seed 1: hnswlib's loader leaves its level generator at the engine's default seed (1), so items added
        # after either way of reading a file get the same levels, and the grown graph the same bytes
        return {**h, "ser_version": _STATE_VERSION, "space": spec.space, "dim": spec.dim, "index_inited": True,
                "ep_added": True, "normalize": spec.space == "cosine", "num_threads": 1, "seed": 1,
                "ef": spec.ef_search, "has_deletions": self.deleted, "size_links_per_element": (h["max_M"] + 1) * 4,
                "allow_replace_deleted": False,
                "label_lookup_external": self.labels if lookup else np.zeros(count, np.uint64),
                "label_lookup_internal": np.arange(count, dtype=np.uint32) if lookup else np.zeros(count, np.uint32),
                "element_levels": self.levels, "data_level0": self.level0, "link_lists": self.upper}


def check_index_file(path: Path, spec: IndexSpec) -> Optional[Graph]:
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
    if not count:
        return None
    header = {"offset_level0": offset0, "max_elements": count, "cur_element_count": count,
              "size_data_per_element": per_element, "label_offset": label_offset, "offset_data": offset_data,
              "max_level": max_level, "enterpoint_node": enter, "max_M": max_m, "max_M0": max_m0, "M": m, "mult": mult,
              "ef_construction": ef_construction}
    return _check_graph(path, size, header)


def _check_graph(path: Path, size: int, header: Dict[str, Any]) -> Graph:
    """Every link list in range (counts within M, neighbour ids < count, each neighbour present on the
    level it is linked at), labels a permutation of the rows, and the file exactly as long as its lists."""
    count, per_element, offset_data = header["cur_element_count"], header["size_data_per_element"], header["offset_data"]
    max_level, enter, max_m, max_m0 = header["max_level"], header["enterpoint_node"], header["max_M"], header["max_M0"]
    def bad(what: str) -> ItemIndexError:
        return ItemIndexError(f"index file {path.name} is damaged: {what}")

    if (size - _HEADER.size) % 4:
        raise bad("its length is not a whole number of link lists")
    all_words = np.memmap(path, dtype="<u4", mode="r", offset=_HEADER.size)  # every field below is 4-byte aligned
    level0 = all_words[:count * per_element // 4].reshape(count, per_element // 4)
    low, high = level0[:, -2], level0[:, -1]  # the 8-byte label of each element
    if high.any() or low.max() >= count or np.bincount(low, minlength=count).max() != 1:
        raise bad("its labels are not one per row")
    deleted = _check_lists(level0[:, :offset_data // 4], max_m0, count, bad, "level 0")
    words = all_words[count * per_element // 4:].view(np.ndarray)
    list_words = max_m + 1
    # One size word per element, then its upper-level link block. Taking every nonzero word for a size word,
    # `after` says where the next one would be; the walk follows it from the first, so only the elements
    # above level 0 (about 1 in M) take a Python step, and everything else is numpy.
    nonzero = np.flatnonzero(words)
    after = np.searchsorted(nonzero, nonzero + 1 + words[nonzero].astype(np.int64) // 4)
    steps, i = [], 0
    while i < len(nonzero) and len(steps) < count:
        steps.append(i)
        i = int(after[i])
    at = nonzero[steps]
    nbytes = words[at].astype(np.int64)
    rows = at - np.r_[0, np.cumsum(nbytes // 4)[:-1]]  # every other word before a size word is a level-0 element's
    inside = rows < count  # a prefix: rows only grow along the walk
    at, nbytes, rows = at[inside], nbytes[inside], rows[inside]
    wrong = np.flatnonzero((nbytes % (4 * list_words) != 0) | (nbytes // (4 * list_words) > max_level))
    if len(wrong):
        raise bad(f"element {rows[wrong[0]]} has a link block of {nbytes[wrong[0]]} bytes")
    end = int(at[-1] + 1 + nbytes[-1] // 4 + count - rows[-1] - 1) if len(at) else count
    if len(at) and at[-1] + 1 + nbytes[-1] // 4 > len(words) or end > len(words):
        raise bad("it ends inside a link list")
    if end != len(words):
        raise bad(f"{4 * (len(words) - end)} bytes follow the last link list")
    levels = np.zeros(count, np.int64)
    levels[rows] = nbytes // (4 * list_words)
    firsts = at + 1  # where each upper-level element's link block starts, in words
    if levels[enter] != max_level:
        raise bad(f"the entry point is on level {levels[enter]}, the header says {max_level}")
    upper = np.zeros((0, list_words), np.uint32)
    if len(firsts):
        per_row = levels[rows]
        within = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # 0.. per element
        first = np.repeat(firsts, per_row) + list_words * within
        upper = words[first[:, None] + np.arange(list_words)]
        _check_lists(upper, max_m, count, bad, "an upper level", levels, within + 1)
    return Graph(header, level0.view(np.int8).reshape(-1), low.astype(np.uint64), levels.astype(np.int32),
                 upper.view(np.int8).reshape(-1), deleted)


def _check_lists(lists: np.ndarray, limit: int, count: int, bad, where: str, levels: Optional[np.ndarray] = None,
                 level_of: Optional[np.ndarray] = None) -> bool:
    """Rows of [size word, ids...]: the size's low 16 bits are the count (byte 2 the deleted mark, 0 or 1);
    slots past the count are unused and may hold anything. True if some row carries the deleted mark."""
    head = lists[:, 0]
    n = head & 0xFFFF
    marks = head >> 16
    if (n > limit).any() or (marks > 1).any():
        raise bad(f"a link list on {where} has a bad size word")
    ids = np.where(np.arange(lists.shape[1] - 1)[None, :] < n[:, None], lists[:, 1:], 0)
    if ids.max(initial=0) >= count:
        raise bad(f"a link on {where} points past the last element")
    if levels is not None and (np.where(ids > 0, levels[ids], 64) < level_of[:, None]).any():
        raise bad(f"a link on {where} points to an element that is not on that level")
    return bool(marks.any())


def load_projection(path: Path, spec: IndexSpec, full_dim: int) -> np.ndarray:
    """The compact store's projection matrix from a verified .npy file, float32: (full_dim, spec.dim), or for
    a residual store the whole orthonormal (full_dim, full_dim) basis whose first spec.dim columns it is."""
    try:
        projection = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IncompatibleBundleError(f"index projection {path.name} is not a .npy matrix: {e}") from None
    shape = (full_dim, full_dim if spec.residual else spec.dim)
    if projection.dtype != np.float32 or projection.shape != shape or not np.isfinite(projection).all():
        raise IncompatibleBundleError(f"index projection {path.name} is {projection.dtype} {projection.shape}, the manifest "
                                      f"needs float32 {shape} with finite values")
    if spec.residual:
        check_basis(projection, f"index projection {path.name}")
    return np.ascontiguousarray(projection)


class ItemIndex:
    """An hnswlib index over the item vectors, or (the compact store) over their projection: then
    :meth:`search` projects the query and returns candidates for an exact re-rank (see :class:`Retriever`)."""

    def __init__(self, path: Path, spec: IndexSpec, projection: Optional[np.ndarray] = None) -> None:
        graph = check_index_file(path, spec)
        if (projection is None) != (spec.projection is None):
            raise IncompatibleBundleError(f"index {spec.file}: the manifest {'names' if spec.projection else 'has no'} "
                                          "projection, the caller gave " + ("none" if projection is None else "one"))
        self.spec, self.projection, self._path = spec, projection, path
        self._index = restore_index(path, spec, graph, lookup=False)  # queries only: a delta updates its own copy
        # where each row's vector sits in the file (see stored_vectors): element i holds label labels[i]
        self._layout = (graph.header["size_data_per_element"], graph.header["offset_data"]) if graph is not None else None
        self._element_of = (None if graph is None or np.array_equal(graph.labels, np.arange(spec.count, dtype=np.uint64))
                            else np.argsort(graph.labels).astype(np.int64))
        del graph
        _return_free_memory()
        if self._index.get_current_count() != spec.count:
            raise IncompatibleBundleError(f"the index holds {self._index.get_current_count()} items, the manifest says {spec.count}")
        self._index.set_ef(spec.ef_search)
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._index.element_count

    def stored_vectors(self) -> np.ndarray:
        """(count, dim) float32: the vector the graph holds for each row, read from the checked file through a
        read-only map, so only the pages of rows read become resident (a residual store's graph coordinates)."""
        if self._layout is None:  # an empty index
            return np.zeros((0, self.spec.dim), np.float32)
        per_element, offset_data = self._layout
        elements = np.memmap(self._path, np.uint8, mode="r", offset=_HEADER.size, shape=(self.spec.count, per_element))
        vectors = elements[:, offset_data:offset_data + 4 * self.spec.dim].view(np.float32)
        return vectors if self._element_of is None else np.ascontiguousarray(vectors[self._element_of])

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


def restore_index(path: Path, spec: IndexSpec, graph: Optional[Graph], capacity: Optional[int] = None,
                  ef_construction: Optional[int] = None, lookup: bool = True):
    """The hnswlib index of a checked file (``graph``: what the check read, None for an empty index), with room
    for ``capacity`` items, adding items at ``ef_construction`` (default: the file's). Restored from the checked
    graph (``lookup=False``: for queries only, see :meth:`Graph.hnswlib_state`); read by hnswlib's own loader
    (with its label map) only for an empty index or an hnswlib whose pickle format is not 0.8's."""
    import hnswlib
    if graph is None and ef_construction is not None:  # an empty index: nothing to read
        index = hnswlib.Index(space=spec.space, dim=spec.dim)
        index.init_index(max_elements=max(capacity or 0, 1), M=spec.M, ef_construction=ef_construction, random_seed=1)
        return index
    if graph is not None:
        try:
            index = hnswlib.Index.__new__(hnswlib.Index)
            index.__setstate__((graph.hnswlib_state(spec, capacity, ef_construction, lookup),))
            return index
        except (TypeError, ValueError, RuntimeError):
            pass
    index = hnswlib.Index(space=spec.space, dim=spec.dim)
    try:
        index.load_index(str(path), max_elements=max(capacity or 0, spec.count))
    except RuntimeError as e:
        raise ItemIndexError(f"cannot load the index {path.name}: {e}") from None
    if ef_construction is not None and index.ef_construction != ef_construction:
        raise IncompatibleBundleError(f"this hnswlib ({getattr(hnswlib, '__version__', 'unknown version')}) cannot "
                                      f"add items to {path.name} at ef_construction {ef_construction}: install "
                                      "hnswlib 0.8.0, which edge-rec pins")
    return index


def _return_free_memory() -> None:
    """Hand the heap's free pages back to the system: glibc keeps what the check's transient arrays used
    (about 28 MB at a million items) until the process ends. Nothing to do elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _row_set(exclude: Optional[Collection[int]]) -> Collection[int]:
    """``exclude`` as something with fast ``in`` and a distinct count: sets and mappings as they are."""
    if isinstance(exclude, (set, frozenset, dict)):
        return exclude
    if exclude is None or len(exclude) == 0:
        return frozenset()
    return set(np.asarray(exclude, dtype=np.int64).reshape(-1).tolist())
