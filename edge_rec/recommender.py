"""EdgeRecommender: history -> user query (int8 TFLite student) -> ANN retrieval -> re-scored, filtered top-k."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .bundle import Bundle
from .errors import ItemIndexError, ManifestError
from .history import HistoryStore
from .index import ItemIndex
from .items import ItemTable
from .model import StudentModel
from .signing import KeyLike

Filter = Union[Callable[[Dict[str, Any]], bool], Mapping[str, Any], None]
TOLERANT_OVERLAP = 0.8  # golden top-10 overlap accepted for an index built on the device
EXCLUDE_WINDOW = 1000  # stored events whose items are excluded as "seen"


@dataclass
class Recommendation:
    item_id: str
    score: float
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class GoldenResult:
    """How the runtime reproduced the converter's golden cases."""

    cases: int
    top_identical: int
    min_cosine: float
    min_overlap: float = 1.0  # smallest top-k overlap with the expected list
    tolerant: bool = False    # an index built on the device: near-ties may swap an item or two

    @property
    def passed(self) -> bool:
        top_ok = self.min_overlap >= TOLERANT_OVERLAP if self.tolerant else self.top_identical == self.cases
        return top_ok and self.min_cosine >= 0.999


def _matcher(filter: Filter) -> Optional[Callable[[Dict[str, Any]], bool]]:
    """A predicate over item metadata. A mapping matches when every key equals the item's value, or is
    contained in it when the item's value is a list (``{"genres": "Comedy"}``)."""
    if filter is None or callable(filter):
        return filter
    if not isinstance(filter, Mapping):
        raise TypeError("filter must be a callable(metadata) -> bool or a mapping of metadata values")
    wanted = dict(filter)

    def match(meta: Dict[str, Any]) -> bool:
        for key, value in wanted.items():
            have = meta.get(key)
            if not (have == value or (isinstance(have, list) and value in have)):
                return False
        return True
    return match


class EdgeRecommender:
    """Recommends from a verified bundle, entirely on the device."""

    def __init__(self, bundle: Bundle, history: Optional[HistoryStore] = None, num_threads: int = 1,
                 backend: Optional[str] = None) -> None:
        m = bundle.manifest
        self.bundle = bundle
        self.history = history
        self.items = ItemTable(bundle.load_array(m.items.vectors), bundle.load_array(m.items.scales),
                               _json_list(bundle.read_bytes(m.items.ids)), bundle.load_array(m.items.popularity),
                               bundle.verify_file(m.items.metadata))
        edgetpu = bundle.read_bytes(m.model.edgetpu_file) if m.model.edgetpu_file else None
        self.model = StudentModel(bundle.read_bytes(m.model.file), m.model, num_threads, backend, edgetpu)
        self.index = ItemIndex(bundle.verify_file(m.index.file), m.index)

    @classmethod
    def open(cls, bundle_dir: Union[str, Path], public_key: Union[KeyLike, Iterable[KeyLike]],
             history: Union[str, Path, HistoryStore, None] = None, **kw: Any) -> "EdgeRecommender":
        """Verify the bundle against ``public_key`` and load it; ``history`` is a HistoryStore or its path."""
        store = HistoryStore(history) if isinstance(history, (str, Path)) else history
        return cls(Bundle.open(bundle_dir, public_key), store, **kw)

    @property
    def history_len(self) -> int:
        return self.bundle.manifest.model.history_len

    def query_vector(self, rows: np.ndarray) -> np.ndarray:
        """The student's query for a history given as item-table rows, oldest first."""
        return self.model.query(self.items.dequantized(rows))

    def _popular(self, k: int, exclude: np.ndarray, match) -> Tuple[np.ndarray, np.ndarray]:
        skip = set(exclude.tolist()) | set(self.items.deleted.tolist())
        rows = [r for r in self.items.popularity if r not in skip]
        if match is not None:
            rows = [r for r in rows if match(self.items.metadata(int(r)))]
        rows = np.asarray(rows[:k], dtype=np.int64)
        return rows, np.zeros(len(rows), np.float32)

    def _exact(self, q: np.ndarray, k: int, exclude: np.ndarray, match) -> np.ndarray:
        """Brute force over the whole item table: for answers that cover much of the catalog."""
        scores = self.items.dequantized(np.arange(len(self.items))) @ q
        scores[exclude] = -np.inf
        scores[self.items.deleted] = -np.inf
        order = np.argsort(-scores, kind="stable")[:len(self.items) - len(np.union1d(exclude, self.items.deleted))]
        if match is not None:
            order = [r for r in order if match(self.items.metadata(int(r)))]
        return np.asarray(order[:k], dtype=np.int64)

    def _search(self, q: np.ndarray, k: int, exclude: np.ndarray, match) -> Tuple[np.ndarray, np.ndarray]:
        """Top (rows, scores) from the index; with a filter, widen the search until ``k`` match or all were
        seen. Requests reaching half the catalog go to exact search (HNSW cannot promise every node)."""
        want = k if match is None else max(4 * k, 32)
        while True:
            if want + len(exclude) >= len(self.items) // 2:
                return self._scored(self._exact(q, k, exclude, match), q)
            try:
                cand, dist = self.index.search(q, want, exclude)
            except ItemIndexError:
                return self._scored(self._exact(q, k, exclude, match), q)
            if match is None:
                if self.index.spec.space == "ip":  # hnswlib's ip distance is 1 - dot, over the same vectors
                    return cand, (1.0 - dist).astype(np.float32)
                return self._scored(cand, q)
            kept = [r for r in cand if match(self.items.metadata(int(r)))]
            if len(kept) >= k or len(cand) < want:
                return self._scored(np.asarray(kept[:k], dtype=np.int64), q)
            want *= 4

    def recommend_rows(self, rows: np.ndarray, k: int = 10, exclude_seen: bool = True, filter: Filter = None,
                       exclude: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (rows, scores) for a history of rows; popularity order when the history is empty."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        rows = np.asarray(rows, dtype=np.int64)
        seen = (rows if exclude is None else np.concatenate([rows, exclude])) if exclude_seen else np.zeros(0, np.int64)
        match = _matcher(filter)
        if len(rows) == 0:
            return self._popular(k, seen, match)
        q = self.query_vector(rows[-self.history_len:])
        return self._search(q, k, seen, match)

    def _scored(self, cand: np.ndarray, q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Candidates ordered by their exact score against the int8 item table."""
        scores = self.items.dequantized(cand) @ q
        order = np.argsort(-scores, kind="stable")
        return cand[order], scores[order].astype(np.float32)

    def _history_rows(self, history: Optional[Sequence[str]]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        if history is not None:
            return self.items.rows(history, strict=False), None
        if self.history is None:
            return np.zeros(0, np.int64), None
        recent = self.history.last(max(EXCLUDE_WINDOW, self.history_len))
        rows = self.items.rows(recent, strict=False)
        return rows[-self.history_len:], rows

    def recommend(self, k: int = 10, history: Optional[Sequence[str]] = None, exclude_seen: bool = True,
                  filter: Filter = None) -> List[Recommendation]:
        """Top-``k`` items with scores and metadata.

        ``history`` is a list of item ids, oldest first; without it the device's HistoryStore is read.
        Unknown ids (e.g. items removed by a sync) are ignored. An empty history gets the most popular
        items. ``filter`` restricts results by metadata; fewer than ``k`` come back when fewer match.
        """
        rows, seen = self._history_rows(history)
        top, scores = self.recommend_rows(rows, k, exclude_seen, filter, exclude=seen)
        return [Recommendation(self.items.ids[r], float(s), self.items.metadata(int(r))) for r, s in zip(top, scores)]

    def recommend_batch(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True,
                        filter: Filter = None) -> List[List[Recommendation]]:
        """:meth:`recommend` for several histories."""
        return [self.recommend(k, list(h), exclude_seen, filter) for h in histories]

    def similar_items(self, item_id: str, k: int = 10, filter: Filter = None) -> List[Recommendation]:
        """The ``k`` items nearest to ``item_id`` in the item space (itself excluded)."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        row = self.items.rows([item_id])[0]
        q = self.items.dequantized(np.array([row]))[0]
        top, scores = self._search(q, k, np.array([row]), _matcher(filter))
        return [Recommendation(self.items.ids[r], float(sc), self.items.metadata(int(r))) for r, sc in zip(top, scores)]

    def check_golden(self, tolerant: bool = False) -> GoldenResult:
        """Replay the manifest's golden cases: same top-10 and query cosine >= 0.999 expected. ``tolerant``
        (for an index a device grew itself, whose float rounding can differ from the publisher's)
        accepts a top-10 overlap of at least TOLERANT_OVERLAP."""
        same, cosines, overlaps = 0, [], [1.0]
        for case in self.bundle.manifest.golden:
            rows = self.items.rows(case.history, strict=False)
            if len(rows):  # an empty history is served by popularity, without the model
                q = self.query_vector(rows[-self.history_len:])
                expected = np.asarray(case.query, np.float32)
                cos = float(q @ expected / (np.linalg.norm(q) * np.linalg.norm(expected) + 1e-12))
                cosines.append(cos if np.isfinite(cos) else -1.0)  # a NaN query fails the check
            top, _ = self.recommend_rows(rows, len(case.top))
            got = [self.items.ids[r] for r in top]
            same += got == case.top
            overlaps.append(len(set(got) & set(case.top)) / max(1, len(case.top)))
        return GoldenResult(len(self.bundle.manifest.golden), same, min(cosines) if cosines else 1.0, min(overlaps), tolerant)


def _json_list(data: bytes) -> List[str]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"item ids are not a JSON list: {e}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError("item ids must be a JSON list of strings")
    return value
