"""Search quality on generated queries of held-out items.

* known-item success@5: the item a query came from is among the first 5 results;
* intent precision@10: share of the first 10 results with the genre and/or decade asked for;
* anchor overlap@10: share of the first 10 results that full all-MiniLM-L6-v2 search (every item's
  text against the query, exact) also returns;
* personalisation: how often the same query gives two real users different top-10s.

Every function takes ranked rows per query, so the fp32 encoder, the device bundle (through the
runtime's own ``search``) and the language model itself are measured by the same code.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data import Item
from .queries import Query


def exact_top(queries: np.ndarray, items: np.ndarray, k: int = 10) -> np.ndarray:
    """(n, k) rows by inner product, best first (full search: the anchor, or an fp32 encoder)."""
    out = []
    for s in range(0, len(queries), 2048):
        scores = queries[s:s + 2048] @ items.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def title_matches(dataset, texts: Sequence[str]) -> List[Any]:
    """The device's title matches (:class:`edge_rec.titles.TitleMatches`) of each text over ``dataset``'s
    catalog, read from the metadata the bundle ships."""
    from edge_rec.query import QueryError, normalize_query
    from edge_rec.titles import TitleIndex, TitleMatches
    index = TitleIndex.from_metadata([{"title": it.title, "year": it.year} for it in dataset.items])
    out = []
    for text in texts:
        try:
            out.append(index.match(normalize_query(text)))
        except QueryError:
            out.append(TitleMatches.none())
    return out


def query_facets(dataset, texts: Sequence[str]) -> Tuple[Any, List[Any]]:
    """The device's facet index of ``dataset``'s catalog (:class:`edge_rec.facets.FacetIndex`, from the
    metadata the bundle ships) and the facets each text names."""
    from edge_rec.facets import FacetIndex, QueryFacets
    from edge_rec.query import QueryError, normalize_query
    index = FacetIndex.from_metadata([{"year": it.year, "genres": list(it.genres)} for it in dataset.items])
    out = []
    for text in texts:
        try:
            out.append(index.parse(normalize_query(text)))
        except QueryError:
            out.append(QueryFacets())
    return index, out


def hybrid_top(queries: np.ndarray, items: np.ndarray, matches: Sequence[Any], weight: float, k: int = 10,
               facets: Optional[Tuple[Any, Sequence[Any]]] = None, facet_weight: float = 0.0) -> List[np.ndarray]:
    """The first ``k`` rows for each query as the device's hybrid search ranks them (:meth:`edge_rec.EdgeRecommender.search`,
    with the runtime's default retrieval policy), with exact search for the encoder's candidates instead of the
    index. ``facets``: :func:`query_facets` of the same texts, read at ``facet_weight``."""
    from edge_rec.facets import facet_boost
    from edge_rec.retrieval import RetrievalPolicy
    from edge_rec.titles import hybrid_rank
    policy = RetrievalPolicy()
    out = []
    for i, (q, m) in enumerate(zip(queries, matches)):
        scores = items @ q
        named = facets[1][i] if facets is not None and facet_weight > 0 else None
        want = min(max(policy.blend_candidates, 5 * k) * (policy.facet_widen if named else 1), len(scores) - 1)
        dense = np.argpartition(-scores, want)[:want]
        score = (lambda rows: scores[rows]) if not named else \
            (lambda rows, boost=facet_boost(facets[0], named, facet_weight): scores[rows] + boost(rows))
        out.append(hybrid_rank(dense, m.best(policy.title_candidates) if weight > 0 else np.zeros(0, np.int64),
                               score, m, weight)[0][:k])
    return out


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def search_metrics(top: Sequence[Sequence[int]], queries: Sequence[Query], items: Sequence[Item],
                   anchor_top: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Known-item success@5, intent precision@10 and (with ``anchor_top``) overlap@10, overall and per kind."""
    decades = [(it.year // 10) * 10 if it.year else None for it in items]
    success: Dict[str, List[float]] = {}
    precision: Dict[str, List[float]] = {}
    overlap: Dict[str, List[float]] = {}
    for i, (rows, q) in enumerate(zip(top, queries)):
        rows = [int(r) for r in rows][:10]
        if q.known_item:
            success.setdefault(q.kind, []).append(float(q.item in rows[:5]))
        else:
            hits = [(q.genre is None or q.genre in items[r].genres) and (q.decade is None or decades[r] == q.decade)
                    for r in rows]
            precision.setdefault(q.kind, []).append(float(np.mean(hits)) if hits else 0.0)
        if anchor_top is not None:
            overlap.setdefault(q.kind, []).append(len(set(rows) & set(anchor_top[i][:10].tolist())) / 10)

    def summary(per_kind: Dict[str, List[float]]) -> Dict[str, Any]:
        everything = [v for values in per_kind.values() for v in values]
        return {"all": _mean(everything), "queries": len(everything),
                "by_kind": {k: _mean(v) for k, v in sorted(per_kind.items())}}
    out = {"known_item_success@5": summary(success), "intent_precision@10": summary(precision)}
    if anchor_top is not None:
        out["anchor_overlap@10"] = summary(overlap)
    return out


def headline(metrics: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """The three overall numbers of :func:`search_metrics`."""
    return {k: metrics[k]["all"] for k in ("known_item_success@5", "intent_precision@10", "anchor_overlap@10") if k in metrics}


def personalisation_effect(search: Callable[[str, Sequence[str]], List[str]], queries: Sequence[Query],
                           histories: Sequence[Sequence[str]], seed: int = 0) -> Dict[str, Any]:
    """Run each query for two different real users (histories of item ids, drawn at random): the share of
    queries whose top-10 differ, and the mean top-10 overlap between the two users."""
    rng = np.random.default_rng(seed)
    differ, overlaps = [], []
    for q in queries:
        a, b = rng.choice(len(histories), 2, replace=False)
        top_a, top_b = search(q.text, histories[a]), search(q.text, histories[b])
        differ.append(float(top_a != top_b))
        overlaps.append(len(set(top_a) & set(top_b)) / max(1, len(top_a)))
    return {"queries": len(differ), "different_top10_share": _mean(differ), "mean_top10_overlap": _mean(overlaps)}


TITLE_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
FACET_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


def objective(h: Dict[str, Optional[float]]) -> float:
    """What search choices maximise on validation queries: known-item success@5 + intent precision@10 +
    anchor overlap@10 (a :func:`headline`; missing measures count 0)."""
    return sum(v or 0.0 for v in h.values())


def choose_weight(search: Callable[[str, float], Sequence[int]], queries: Sequence[Query], items: Sequence[Item],
                  anchor_top: np.ndarray, grid: Sequence[float], overlap_tolerance: float = 0.01) -> Tuple[float, Dict[str, Any]]:
    """A weight of the hybrid score (title matching, :func:`edge_rec.titles.hybrid_scores`; facets,
    :func:`edge_rec.facets.facet_boost`) on validation queries: among the weights whose anchor overlap@10
    stays within ``overlap_tolerance`` of the grid's best, the one with the best sum of known-item
    success@5, intent precision@10 and anchor overlap@10. A hybrid may move results where it helps
    known-item and intent queries, not away from what the language model means (facets bought intent
    precision with overlap one for one). ``search(text, weight)`` returns the device's ranked catalog
    rows without a history. Ties go to the earlier (smaller) weight."""
    table: Dict[str, Dict[str, Optional[float]]] = {
        str(w): headline(search_metrics([search(q.text, w) for q in queries], queries, items, anchor_top)) for w in grid}
    closest = max(h["anchor_overlap@10"] or 0.0 for h in table.values())
    best, chosen = -1.0, float(grid[0])
    for w in grid:
        total = objective(table[str(w)])
        if (table[str(w)]["anchor_overlap@10"] or 0.0) >= closest - overlap_tolerance and total > best + 1e-9:
            best, chosen = total, float(w)
    return chosen, {"by_weight": table, "queries": len(queries), "chosen": chosen, "overlap_tolerance": overlap_tolerance,
                    "objective": "known-item success@5 + intent precision@10 + anchor overlap@10 (validation), among "
                                 f"the weights within {overlap_tolerance} of the best anchor overlap@10"}


def choose_blend(search: Callable[[str, Optional[Sequence[str]], float], List[str]], queries: Sequence[Query],
                 histories: Sequence[Sequence[str]], grid: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
                 tolerance: float = 0.01, seed: int = 0) -> Tuple[float, Dict[str, Any]]:
    """The largest personalisation weight that keeps known-item success@5 (each query asked by a random
    real user) within ``tolerance`` of the unpersonalised search; ``search(text, history, weight)``."""
    known = [q for q in queries if q.known_item]
    rng = np.random.default_rng(seed)
    users = [histories[int(i)] for i in rng.integers(0, len(histories), len(known))]

    def success(weight: float) -> float:
        return float(np.mean([q.item_id in search(q.text, h if weight else None, weight)[:5] for q, h in zip(known, users)]))
    table = {"0": success(0.0)}
    chosen = grid[0]
    for w in grid:
        table[str(w)] = success(w)
        if table[str(w)] >= table["0"] - tolerance:
            chosen = w
    return chosen, {"known_item_success@5_by_weight": table, "queries": len(known), "tolerance": tolerance,
                    "chosen": chosen}


def device_search(rec, queries: Sequence[Query], anchor_top: np.ndarray, items: Sequence[Item],
                  histories: Sequence[Sequence[str]], personal_queries: int = 300) -> Dict[str, Any]:
    """A bundle's search through the runtime (``rec``: an EdgeRecommender), on generated queries whose
    catalog rows index ``items`` (mapped to the bundle's rows by item id): quality against the anchor,
    the anchor's own quality on the same queries, personalisation with real ``histories``, latency."""
    import time
    bundle_row = {item_id: r for r, item_id in enumerate(rec.items.ids)}
    row = {it.id: r for r, it in enumerate(items)}
    times, tops = [], []
    for q in queries:
        t = time.perf_counter()
        results = rec.search(q.text, k=10, personalize=False)
        times.append(time.perf_counter() - t)
        tops.append([row[r.item_id] for r in results if r.item_id in row])
    device = search_metrics(tops, queries, items, anchor_top)
    effect = personalisation_effect(lambda text, h: [r.item_id for r in rec.search(text, k=10, history=h)],
                                    queries[:personal_queries], histories)
    known = [q for q in queries if q.known_item and q.item_id in bundle_row][:personal_queries]
    users = np.random.default_rng(1).integers(0, len(histories), len(known))
    with_history = float(np.mean([q.item_id in [r.item_id for r in rec.search(q.text, k=5, history=histories[u])]
                                  for q, u in zip(known, users)])) if known else None
    return {"device_heldout": device, "headline": headline(device),
            "anchor_headline": headline(search_metrics(anchor_top, queries, items, anchor_top)),
            "personalisation": {**effect, "weight": rec.bundle.manifest.search.blend,
                                "known_item_success@5_with_history": with_history},
            "latency_ms": {"p50": 1e3 * float(np.median(times)), "p99": 1e3 * float(np.percentile(times, 99)),
                           "queries": len(times)}}
