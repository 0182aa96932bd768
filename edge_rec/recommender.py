"""EdgeRecommender: history -> user query (int8 TFLite student) -> ANN retrieval -> re-scored, filtered top-k;
and search: text -> query encoder -> ANN retrieval in the search space, blended with the user's taste."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Union
from weakref import WeakKeyDictionary

import numpy as np

from .bundle import Bundle
from .errors import ManifestError, SearchUnavailableError
from .facets import FacetIndex, QueryFacets, facet_boost
from .history import HistoryStore
from .history_rows import HistoryRows
from .index import ItemIndex, load_projection
from .item_ids import ItemIds
from .items import ItemTable
from .model import StudentModel
from .query import QueryEncoder, normalize_query
from .retrieval import Filter, RetrievalPolicy, Retriever, matcher
from .signing import KeyLike
from .titles import TitleIndex, TitleMatches, hybrid_rank
from .vectors import GraphPart, ItemVectors

if TYPE_CHECKING:
    from .golden import GoldenResult



@dataclass
class Recommendation:
    item_id: str
    score: float
    metadata: Dict[str, Any] = field(default_factory=dict)


class EdgeRecommender:
    """Recommends from a verified bundle, entirely on the device."""

    def __init__(self, bundle: Bundle, history: Optional[HistoryStore] = None, num_threads: int = 1,
                 backend: Optional[str] = None, policy: Optional[RetrievalPolicy] = None) -> None:
        m = bundle.manifest
        self.bundle = bundle
        self.history = history
        self.policy = policy or RetrievalPolicy()
        self._owned: List[Any] = []  # what close() closes besides the item table (a history store opened from a path)
        edgetpu = bundle.read_bytes(m.model.edgetpu_file) if m.model.edgetpu_file else None
        self.model = StudentModel(bundle.read_bytes(m.model.file), m.model, num_threads, backend, edgetpu)
        # before the index, which hands back the heap's free pages; the ids' bytes stay in the file
        ids = ItemIds.from_json(bundle.read_bytes(m.items.ids), bundle.reader(m.items.ids))
        projection = load_projection(bundle.verify_file(m.index.projection), m.index, m.items.dim) if m.index.projection else None
        self.index = ItemIndex(bundle.verify_file(m.index.file), m.index,
                               np.ascontiguousarray(projection[:, :m.index.dim]) if projection is not None else None)
        graph = GraphPart(projection, self.index.stored_vectors()) if m.index.residual else None
        self.items = ItemTable(bundle.map_array(m.items.vectors), bundle.map_array(m.items.scales), ids,
                               bundle.load_array(m.items.popularity), bundle.verify_file(m.items.metadata), graph)
        self.retriever = Retriever(self.index, self.items.vectors, self.items, self.policy)
        self.query_encoder: Optional[QueryEncoder] = None
        self.search_retriever: Optional[Retriever] = None
        self._titles: Optional[TitleIndex] = None
        self._facets: Optional[FacetIndex] = None
        self._device_rows: "WeakKeyDictionary[HistoryStore, HistoryRows]" = WeakKeyDictionary()  # per history store
        self._titles_lock = threading.Lock()
        if m.search is not None:
            s = m.search
            vectors, scales = bundle.map_array(s.vectors), bundle.map_array(s.scales)
            if vectors.dtype != np.int8 or vectors.shape != (len(self.items), s.dim) or scales.shape != (len(self.items),):
                raise ManifestError(f"search vectors {vectors.dtype} {vectors.shape} / scales {scales.shape} do not fit "
                                    f"{len(self.items)} items of dimension {s.dim}")
            self.query_encoder = QueryEncoder(bundle.read_bytes(s.tokenizer), bundle.read_bytes(s.encoder.file), s,
                                              num_threads, backend)
            search_index = ItemIndex(bundle.verify_file(s.index.file), s.index)
            self.search_retriever = Retriever(search_index, ItemVectors(vectors, scales), self.items, self.policy)

    @classmethod
    def open(cls, bundle_dir: Union[str, Path], public_key: Union[KeyLike, Iterable[KeyLike]],
             history: Union[str, Path, HistoryStore, None] = None, **kw: Any) -> "EdgeRecommender":
        """Verify the bundle against ``public_key`` and load it; ``history`` is a HistoryStore or its path
        (a store opened from a path is closed by :meth:`close`)."""
        store = HistoryStore(history) if isinstance(history, (str, Path)) else history
        rec = cls(Bundle.open(bundle_dir, public_key), store, **kw)
        if store is not history:
            rec._owned.append(store)
        return rec

    def close(self) -> None:
        """Release the open files (metadata, a history store opened from a path). Idempotent."""
        self.items.close()
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> "EdgeRecommender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def history_len(self) -> int:
        return self.bundle.manifest.model.history_len

    @property
    def has_search(self) -> bool:
        return self.query_encoder is not None

    def query_vector(self, rows: np.ndarray) -> np.ndarray:
        """The student's query for a history given as item-table rows, oldest first."""
        return self.model.query(self.items.dequantized(rows))

    def _popular(self, k: int, exclude: Collection[int], match) -> Tuple[np.ndarray, np.ndarray]:
        skip = set(map(int, exclude)) | set(self.items.deleted.tolist())
        rows = [r for r in self.items.popularity if r not in skip]
        if match is not None:
            rows = [r for r in rows if match(self.items.metadata(int(r)))]
        rows = np.asarray(rows[:k], dtype=np.int64)
        return rows, np.zeros(len(rows), np.float32)

    @property
    def exclude_seen(self) -> bool:
        """Whether recommend() leaves out items the user has seen, by default: the bundle's protocol
        (``manifest.seen_items``, chosen by the converter per data set and evaluated that way)."""
        return self.bundle.manifest.seen_items == "exclude"

    def recommend_rows(self, rows: np.ndarray, k: int = 10, exclude_seen: Optional[bool] = None, filter: Filter = None,
                       exclude: Optional[Collection[int]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (rows, scores) for a history of rows; popularity order when the history is empty.
        With ``exclude_seen`` (default: the bundle's :attr:`exclude_seen`), the rows in ``exclude``
        (default: the history's) are never returned."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        rows = np.asarray(rows, dtype=np.int64)
        if exclude_seen is None:
            exclude_seen = self.exclude_seen
        seen = (rows if exclude is None else exclude) if exclude_seen else ()
        match = matcher(filter)
        if len(rows) == 0:
            return self._popular(k, seen, match)
        q = self.query_vector(rows[-self.history_len:])
        return self.retriever.top(q, k, seen, match)

    def _history_rows(self, history: Optional[Sequence[str]]) -> Tuple[np.ndarray, Optional[Collection[int]]]:
        """The rows the model reads, and the rows that count as seen (None: the same)."""
        if history is not None:
            return self.items.rows(history, strict=False), None
        if self.history is None:
            return np.zeros(0, np.int64), None
        window = self._device_rows.get(self.history)
        if window is None:
            window = self._device_rows.setdefault(self.history, HistoryRows(self.items))
        window.update(self.history.last(max(self.policy.seen_window, self.history_len)))
        aligned = window.aligned[-4 * self.history_len:]  # enough to fill the model's window after unknown ids
        rows = aligned[aligned >= 0]
        if len(rows) < self.history_len and len(aligned) < len(window.aligned):
            rows = window.aligned[window.aligned >= 0]
        return rows[-self.history_len:], window.seen

    def recommend(self, k: int = 10, history: Optional[Sequence[str]] = None, exclude_seen: Optional[bool] = None,
                  filter: Filter = None) -> List[Recommendation]:
        """Top-``k`` items with scores and metadata.

        ``history`` is a list of item ids, oldest first; without it the device's HistoryStore is read.
        Unknown ids (e.g. items removed by a sync) are ignored. An empty history gets the most popular
        items. ``filter`` restricts results by metadata; fewer than ``k`` come back when fewer match.
        ``exclude_seen`` (True: items in the history are never returned; False: they may come back, as
        re-purchases do) defaults to the bundle's protocol, :attr:`exclude_seen`.
        """
        rows, seen = self._history_rows(history)
        top, scores = self.recommend_rows(rows, k, exclude_seen, filter, exclude=seen)
        return self._results(top, scores)

    def recommend_batch(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: Optional[bool] = None,
                        filter: Filter = None) -> List[List[Recommendation]]:
        """:meth:`recommend` for several histories."""
        return [self.recommend(k, list(h), exclude_seen, filter) for h in histories]

    def similar_items(self, item_id: str, k: int = 10, filter: Filter = None) -> List[Recommendation]:
        """The ``k`` items nearest to ``item_id`` in the item space (itself excluded)."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        row = self.items.rows([item_id])[0]
        q = self.items.dequantized(np.array([row]))[0]
        # an item's own vector is a harder query for the compact store than a user's: more candidates
        top, scores = self.retriever.top(q, k, np.array([row]), matcher(filter), rerank_scale=self.policy.similar_rerank)
        return self._results(top, scores)

    def search(self, query: str, k: int = 10, filter: Filter = None, history: Optional[Sequence[str]] = None,
               personalize: Union[bool, float] = True) -> List[Recommendation]:
        """Items matching a text query, best first, found on the device.

        The query is normalised, tokenized and encoded by the bundle's int8 query encoder and matched
        against every item's search vector. Bundles of format 4 add title matching (hybrid search): the
        best max(50, 5k) encoder matches and the 20 best title matches are scored
        ``cos(query, item's search vector) + t * coverage**2``, where coverage is the share of the query's
        character trigrams (weighted by rarity) found in the item's title and year, and ``t`` the
        bundle's ``search.title_weight``. Bundles of format 5 also read the catalog genres and decades the
        query names ("a 90s comedy", see :mod:`edge_rec.facets`): such a query re-ranks four times as many
        encoder matches and adds ``f * share`` (the share of the named genres and decades an item has; ``f``
        the bundle's ``search.facet_weight``). With ``personalize`` (True: the bundle's blend weight w; a
        float in [0, 1]: that weight; False or 0: none) and a history (``history``, or the device's
        HistoryStore), the candidates are re-ranked by ``(1 - w) * text score + w * cos(user's vector,
        item's vector)``. Items in the history are not excluded (people search for what they know).
        Raises QueryError for non-text or word-less queries and SearchUnavailableError when the bundle
        has no search; returns [] when none of the query's words is in the tokenizer's vocabulary and
        no title matches.
        """
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self.query_encoder is None or self.search_retriever is None:
            raise SearchUnavailableError(
                f"bundle version {self.bundle.manifest.bundle_version} has no search: it was converted without a "
                "query encoder (edge-rec convert writes one from edge-rec 0.2 on; re-convert or sync a newer version)")
        weight = self._blend_weight(personalize)
        spec = self.bundle.manifest.search
        assert spec is not None
        q = self.query_encoder.encode(query)
        match = matcher(filter)
        rows = self._history_rows(history)[0] if weight > 0 else np.zeros(0, np.int64)
        normalized = normalize_query(query)  # read once: the facets and the title matches take the same text
        facets = self.facet_index().parse(normalized) if spec.facet_weight > 0 else QueryFacets()
        if spec.title_weight <= 0 and not facets:
            if q is None:
                return []
            if len(rows) == 0:
                return self._results(*self.search_retriever.top(q, k, np.zeros(0, np.int64), match))
            cand, text = self.search_retriever.top(q, max(self.policy.blend_candidates, 5 * k), np.zeros(0, np.int64), match)
        else:
            cand, text = self._hybrid_candidates(normalized, q, k, match, facets)
            if len(rows) == 0:
                return self._results(cand[:k], text[:k])
        if len(cand) == 0:
            return []
        user = self.query_vector(rows[-self.history_len:])
        vectors = self.items.dequantized(cand)
        taste = vectors @ user / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(user) + 1e-12)
        blended = (1.0 - weight) * text + weight * taste
        order = np.argsort(-blended, kind="stable")[:k]
        return self._results(cand[order], blended[order])

    def _hybrid_candidates(self, normalized: str, q: Optional[np.ndarray], k: int, match, facets: QueryFacets
                           ) -> Tuple[np.ndarray, np.ndarray]:
        """Encoder matches and title matches (filtered, no deleted rows) ranked by :func:`edge_rec.titles.hybrid_rank`,
        with the facet boost when the query names genres or decades."""
        assert self.query_encoder is not None and self.search_retriever is not None
        spec = self.bundle.manifest.search
        assert spec is not None
        want = max(self.policy.blend_candidates, 5 * k) * (self.policy.facet_widen if facets else 1)
        if spec.title_weight > 0:
            titles = self.title_index().match(normalized)
            lexical = titles.best(self.policy.title_candidates)
            lexical = lexical[~np.isin(lexical, self.items.deleted)]
        else:
            titles, lexical = TitleMatches.none(), np.zeros(0, np.int64)
        if match is not None:
            lexical = np.asarray([r for r in lexical if match(self.items.metadata(int(r)))], dtype=np.int64)
        boost = facet_boost(self.facet_index(), facets, spec.facet_weight) if facets else None
        if q is None:  # no known piece: the title matches alone
            dense, cosine = lexical, (lambda rows: np.zeros(len(rows), np.float32))
        else:
            dense = self.search_retriever.top(q, want, np.zeros(0, np.int64), match)[0]
            cosine = lambda rows: self.search_retriever.scores(rows, q)  # noqa: E731
        score = cosine if boost is None else (lambda rows: cosine(rows) + boost(rows))
        return hybrid_rank(dense, lexical, score, titles, spec.title_weight)

    def title_index(self) -> TitleIndex:
        """The title-matching index of this bundle's catalog, built on first use (see :mod:`edge_rec.titles`)."""
        with self._titles_lock:
            if self._titles is None:
                self._titles = TitleIndex.from_metadata(self.items.all_metadata())
            return self._titles

    def facet_index(self) -> FacetIndex:
        """The genres and decades of this bundle's catalog, read on first use (see :mod:`edge_rec.facets`)."""
        with self._titles_lock:
            if self._facets is None:
                self._facets = FacetIndex.from_metadata(self.items.all_metadata())
            return self._facets

    def _blend_weight(self, personalize: Union[bool, float, None]) -> float:
        if personalize is True:
            return self.bundle.manifest.search.blend  # type: ignore[union-attr]
        if personalize is None or personalize is False:
            return 0.0
        if not isinstance(personalize, (int, float, np.floating)) or not 0.0 <= float(personalize) <= 1.0:
            raise ValueError(f"personalize must be True, False or a weight in [0, 1], got {personalize!r}")
        return float(personalize)

    def search_vector(self, query: str) -> Optional[np.ndarray]:
        """The query's unit vector in the search space (None when none of its words is known)."""
        if self.query_encoder is None:
            raise SearchUnavailableError(f"bundle version {self.bundle.manifest.bundle_version} has no search")
        return self.query_encoder.encode(query)

    def _results(self, rows: np.ndarray, scores: np.ndarray) -> List[Recommendation]:
        return [Recommendation(item_id, sc, meta) for item_id, sc, meta
                in zip(self.items.ids.take(rows), scores.tolist(), self.items.metadata_rows(rows.tolist()))]

    def check_golden(self) -> "GoldenResult":
        """Replay the manifest's golden cases (see :func:`edge_rec.golden.replay`)."""
        from .golden import replay
        return replay(self)
