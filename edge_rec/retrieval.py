"""The one retrieval policy: top-k from a vector space (an hnswlib index and the item vectors it was built
from), seen items excluded inside the search, metadata filters by widening the search, exact search
when a request covers much of the catalog. recommend, similar_items and search all go through here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import ItemIndexError
from .index import ItemIndex
from .items import ItemTable
from .vectors import ItemVectors

Filter = Union[Callable[[Dict[str, Any]], bool], Mapping[str, Any], None]
Match = Optional[Callable[[Dict[str, Any]], bool]]


@dataclass(frozen=True)
class RetrievalPolicy:
    """The numbers of the retrieval policy (defaults measured on ML-1M and a 100k-item catalog)."""

    filter_fetch: int = 4         # a filtered request first fetches filter_fetch * k items (at least min_fetch) ...
    min_fetch: int = 32
    widen: int = 4                # ... and multiplies the fetch by this until k items match or every item was seen
    exact_share: float = 0.5      # a request reaching this share of the catalog is answered by exact search
    seen_window: int = 1000       # the device history's most recent events whose items count as seen
    blend_candidates: int = 50    # a personalised or hybrid search re-ranks max(blend_candidates, 5 * k) text matches
    title_candidates: int = 20    # ... and, in a hybrid search, this many best title matches
    facet_widen: int = 4          # a search naming genres or decades re-ranks this many times more encoder matches
    similar_rerank: int = 4       # similar_items on a compact index re-ranks this many times its rerank candidates


def matcher(filter: Filter) -> Match:
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


class Retriever:
    """Top-k (rows, scores) in one space: an hnswlib index and the item vectors it was built from (an int8
    table, or the residual layout's two parts); scores are inner products with those vectors."""

    def __init__(self, index: ItemIndex, vectors: ItemVectors, items: ItemTable, policy: RetrievalPolicy) -> None:
        self.index, self.store, self.items, self.policy = index, vectors, items, policy

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), dim) float32 vectors of the given rows."""
        return self.store.rows(rows)

    def scores(self, rows: Union[np.ndarray, slice], q: np.ndarray) -> np.ndarray:
        """Inner products of ``q`` with the rows' vectors (``slice(None)``: every row)."""
        return self.store.scores(rows, q)

    def top(self, q: np.ndarray, k: int, exclude: Collection[int], match: Match = None, rerank_scale: int = 1
            ) -> Tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows for query ``q``, never one in ``exclude`` (an array, set or mapping of rows) or
        deleted; with ``match``, only rows whose metadata match (fewer than ``k`` when fewer do). A compact
        index (``spec.rerank``) yields at least ``rerank_scale * rerank`` candidates, re-ranked here with the int8 table."""
        p = self.policy
        rerank = self.index.spec.rerank * rerank_scale
        want = k if match is None else max(p.filter_fetch * k, p.min_fetch)
        while True:
            fetch = max(want, rerank)
            if fetch + len(exclude) >= p.exact_share * len(self.items):
                return self.scored(self._exact(q, k, exclude, match), q)
            try:
                # unfiltered, only the best k survive the re-rank: excluded rows need replacing among those k only
                cand, dist = self.index.search(q, fetch, exclude, need=k if match is None else None)
            except ItemIndexError:
                return self.scored(self._exact(q, k, exclude, match), q)
            # hnswlib's ip distance is 1 - dot with the vectors the graph holds: the whole score of a plain
            # graph, the graph part of a residual store's
            along_graph = (1.0 - dist) if self.index.spec.space == "ip" else None
            if match is None:
                if along_graph is not None and not rerank:
                    return cand, along_graph.astype(np.float32)
                rows, scores = self.scored(cand, q, along_graph)
                return rows[:k], scores[:k]
            keep = np.asarray([match(self.items.metadata(int(r))) for r in cand], dtype=bool)
            if keep.sum() >= k or len(cand) < fetch:
                rows, scores = self.scored(cand[keep], q, along_graph[keep] if along_graph is not None else None)
                return rows[:k], scores[:k]
            want *= p.widen

    def scored(self, cand: np.ndarray, q: np.ndarray, along_graph: Optional[np.ndarray] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Candidates ordered by their exact score (inner product with the stored vectors); ``along_graph``:
        the candidates' inner products with what the graph holds, when the search gave them."""
        scores = self.store.scores(cand, q, along_graph)
        order = np.argsort(-scores, kind="stable")
        return cand[order], scores[order].astype(np.float32)

    def _exact(self, q: np.ndarray, k: int, exclude: Collection[int], match: Match) -> np.ndarray:
        """Brute force over the whole table: for answers that cover much of the catalog."""
        exclude = np.fromiter(exclude, np.int64, len(exclude))
        scores = self.scores(slice(None), q)
        scores[exclude] = -np.inf
        scores[self.items.deleted] = -np.inf
        order = np.argsort(-scores, kind="stable")[:len(self.items) - len(np.union1d(exclude, self.items.deleted))]
        if match is not None:
            order = [r for r in order if match(self.items.metadata(int(r)))]
        return np.asarray(order[:k], dtype=np.int64)
