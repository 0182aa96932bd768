"""The HNSW item index: build with hnswlib, and choose its form by measured recall@10 and bytes.

Two forms are tried: the graph over the item vectors (M from M_GRID), and the compact store, the graph
(M 8) over the vectors' projection onto a few directions (COMPACT_DIMS), whose best ``rerank`` rows the
device re-ranks exactly (each vector is stored once: its coordinates along those directions in the graph,
the rest in the int8 table; see :mod:`edge_rec.vectors`). The directions are fitted to the queries as well as the items
(:func:`query_aware_projection`, on other users' queries than those recall is measured on): the ones
that carry most of the query-item scores, not the items' own principal directions, which miss what
separates the items a user vector asks for. Recall is measured against exact search over
the same (int8-dequantized) vectors, the way the device searches, with real student query vectors; the
choice's recall for items' own vectors (similar_items, which re-ranks four times as many candidates on a
compact store) is recorded beside it. The setting with the fewest bytes per item on disk (index and item
table: a compact store's table holds fewer coordinates) that reaches the target with a margin wins; among equal
sizes, the one that reads fewest candidates. A small catalog can afford a near-exact index: given a byte
budget (``near_exact_bytes``), the settings reaching ``near_exact`` recall whose whole index fits it come first,
the one reading fewest candidates (the fastest) first, as an index that misses 2% of a top-10 costs a model
about 2% of its NDCG@10. Given the queries' users' seen items (a device leaves them out
inside its search), the winner must also reach the target with them left out: a user's best unseen items
rank deeper than the catalog's best, where a compact store's projection finds fewer of them.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np

from .errors import ConverterError

EF_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)  # the wide end: 1M-item catalogs
M_GRID = (8, 12, 16, 24, 32)
COMPACT_DIMS = (16, 24, 32)     # projected dimensions tried for the compact store (below the item dimension)
COMPACT_M = 8
RERANK_GRID = (40, 80, 160, 320)  # rows the device re-ranks with the int8 table (320: 1M-item catalogs)


def build_hnsw(vectors: np.ndarray, space: str = "ip", M: int = 16, ef_construction: int = 200, seed: int = 0):
    import hnswlib
    index = hnswlib.Index(space=space, dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=ef_construction, random_seed=seed)
    index.set_num_threads(1)  # deterministic graph
    index.add_items(vectors.astype(np.float32), np.arange(len(vectors)))
    return index


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int, space: str = "ip", chunk: int = 64) -> np.ndarray:
    """(n, k) exact top-``k`` rows of ``vectors`` for each query, best first, ties to the lower row (what a
    stable sort gives). Scored ``chunk`` queries at a time, and only the rows reaching each query's k-th
    score are sorted: a million-item catalog needs megabytes, not a full (n, items) argsort."""
    queries, vectors = np.asarray(queries, np.float32), np.asarray(vectors, np.float32)
    if space == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    k = min(k, len(vectors))
    out = np.zeros((len(queries), k), np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk]
        if space == "l2":
            scores = -((q[:, None, :] - vectors[None]) ** 2).sum(-1)
        else:
            scores = q @ vectors.T
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
        for i, row in enumerate(scores):
            cand = np.flatnonzero(row >= kth[i])  # every row tied with the k-th too, ascending
            out[s + i] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


def query_aware_projection(vectors: np.ndarray, queries: np.ndarray, dim: int, sample: int = 20_000,
                           seed: int = 0) -> np.ndarray:
    """(d, dim) float32 orthonormal: the directions carrying most of the scores q . v between ``queries`` and
    (a seeded sample of) ``vectors``: the top eigenvectors of Cq^1/2 Cv Cq^1/2 mapped back through Cq^1/2
    (C: uncentred second moments), orthonormalised. At 100k items and teacher-encoder queries, 32 of them
    re-ranking 80 candidates reach recall@10 0.979, against 0.911 for the items' principal directions."""
    v = np.asarray(vectors, np.float64)
    if len(v) > sample:
        v = v[np.sort(np.random.default_rng(seed).choice(len(v), sample, replace=False))]
    q = np.asarray(queries, np.float64)
    w, u = np.linalg.eigh(q.T @ q / len(q))
    root = (u * np.sqrt(np.maximum(w, 0.0))) @ u.T
    _, top = np.linalg.eigh(root @ (v.T @ v / len(v)) @ root)  # ascending eigenvalues
    basis, _ = np.linalg.qr(root @ top[:, ::-1][:, :dim])
    basis *= np.where(basis.sum(0) < 0, -1.0, 1.0)  # a fixed sign per direction: the same matrix on every run
    return np.ascontiguousarray(basis.astype(np.float32))


def recall_at(index, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    k = truth.shape[1]
    index.set_ef(max(ef, k))
    labels, _ = index.knn_query(queries.astype(np.float32), k=k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(labels.tolist(), truth.tolist())]))


def index_file_size(index) -> int:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "i.hnsw")
        index.save_index(path)
        return os.path.getsize(path)


def reranked_recall(index, projection: np.ndarray, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                    rerank: int, ef: int) -> float:
    """recall@k of the compact store as the device searches it: ``rerank`` candidates from the graph over
    the projection (at ef), re-ranked exactly over ``vectors``."""
    k = truth.shape[1]
    index.set_ef(max(ef, rerank))
    cand, _ = index.knn_query((queries @ projection).astype(np.float32), k=rerank)
    scores = np.einsum("qcd,qd->qc", vectors[cand.astype(np.int64)], queries)
    top = np.take_along_axis(cand, np.argsort(-scores, axis=1, kind="stable")[:, :k], 1)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top.tolist(), truth.tolist())]))


def excluded_recall(index, queries: np.ndarray, vectors: np.ndarray, exclude: Sequence[np.ndarray], ef: int,
                    k: int = 10, projection: Optional[np.ndarray] = None, rerank: int = 0) -> float:
    """recall@k for queries whose users have seen ``exclude[i]`` rows, left out inside the search (hnswlib's
    filter, as the device does), against the exact top-k of the unseen rows; a compact store (``projection``)
    re-ranks its ``rerank`` best unseen candidates exactly."""
    hits = []
    for q, seen in zip(np.asarray(queries, np.float32), exclude):
        skip = set(np.asarray(seen, np.int64).tolist())
        scores = vectors @ q
        scores[list(skip)] = -np.inf
        n = min(k, len(vectors) - len(skip))
        if n <= 0:
            continue
        truth = np.argsort(-scores, kind="stable")[:n]
        want = rerank if projection is not None else n
        index.set_ef(max(ef, want))
        try:
            cand, _ = index.knn_query((q @ projection if projection is not None else q)[None], k=min(want, len(vectors) - len(skip)),
                                      filter=lambda row: row not in skip)
        except RuntimeError:  # fewer reachable than asked: count what it found
            cand = np.zeros((1, 0), np.int64)
        cand = cand[0].astype(np.int64)
        top = cand[np.argsort(-scores[cand], kind="stable")[:n]] if projection is not None else cand[:n]
        hits.append(len(set(top.tolist()) & set(truth.tolist())) / n)
    return float(np.mean(hits)) if hits else 1.0


@dataclass
class IndexChoice:
    space: str
    M: int
    ef_construction: int
    ef_search: int
    recall: float
    target: float
    bytes_per_item: float
    curves: Dict[int, Dict[int, float]] = field(default_factory=dict)   # M -> ef -> recall@10 (the plain graph)
    sizes: Dict[int, float] = field(default_factory=dict)               # M -> bytes per item on disk
    projection_dim: int = 0    # the compact store: the graph over this many directions (0: plain) ...
    projection: Optional[np.ndarray] = field(default=None, repr=False, compare=False)  # ... its (d, dim) matrix (not in reports)
    rerank: int = 0            # ... and this many candidates re-ranked with the int8 table
    compact_curves: Dict[str, Dict[int, float]] = field(default_factory=dict)  # "24-d, re-rank 80" -> ef -> recall@10
    compact_sizes: Dict[str, float] = field(default_factory=dict)              # "24-d" -> bytes per item on disk
    similar_recall: Optional[float] = None  # the choice's recall@10 for items' own vectors (similar_items)
    seen_excluded_recall: Optional[float] = None  # the choice's recall@10 with each user's seen items left out
    near_exact: Optional[float] = None  # the recall level, when chosen as a near-exact setting within the byte budget

    @property
    def form(self) -> str:
        """The chosen form in words."""
        if self.projection_dim:
            return f"compact: M {self.M} over {self.projection_dim} query-aware directions, {self.rerank} re-ranked"
        return f"M {self.M}"


def tune_index(vectors: np.ndarray, queries: np.ndarray, target: float = 0.95, margin: float = 0.02,
               space: str = "ip", ef_construction: int = 200, Ms: Sequence[int] = M_GRID,
               efs: Sequence[int] = EF_GRID, k: int = 10, compact_dims: Sequence[int] = COMPACT_DIMS,
               item_queries: int = 500, similar_rerank: int = 4, exclude: Sequence[np.ndarray] = (),
               exclude_queries: int = 500, near_exact: float = 0.995, near_exact_bytes: float = 0.0,
               fit_queries: Optional[np.ndarray] = None) -> IndexChoice:
    """Measure recall@k of every form (see the module docstring) on ``queries`` (the student's) and pick the
    most compact one reaching target + margin (``compact_dims=()``: the plain graph only; inner-product
    spaces only). The choice's recall for ``item_queries`` items' own vectors (similar_items, which re-ranks
    ``similar_rerank`` times as many candidates on a compact store) is measured and recorded too.
    ``exclude``: the rows each query's user has seen (the device leaves them out); the first
    ``exclude_queries`` of them then check the choice, which falls to the next most compact setting
    until one reaches its level (target + margin, or ``near_exact``) with them left out too.
    ``near_exact_bytes`` (0: off): settings reaching ``near_exact`` whose index fits these bytes come first.
    ``fit_queries``: other users' queries the compact store's directions are fitted to (None: the second
    half of ``queries`` fits them and the first half measures every form), as recall measured on the
    queries a projection was fitted to overstates what new users get (by ~0.02 at 1,000 queries)."""
    dims = [d for d in compact_dims if d < vectors.shape[1] and space == "ip"]
    if fit_queries is None and dims:
        half = (len(queries) + 1) // 2
        queries, fit_queries, exclude = queries[:half], queries[half:], exclude[:half]
    if dims and not len(fit_queries):
        dims = []  # no queries to fit directions to: the plain graph only
    truth = exact_topk(queries, vectors, k, space)
    curves, sizes, built = {}, {}, {}
    good = []  # (bytes per item, candidates read, M, ef, projection dim, rerank, recall)
    for M in Ms:
        built[(M, 0)] = index = build_hnsw(vectors, space, M, ef_construction)
        curves[M] = {ef: recall_at(index, queries, truth, ef) for ef in efs}
        sizes[M] = index_file_size(index) / len(vectors)
        good += [(sizes[M], ef, M, ef, 0, 0, r) for ef, r in curves[M].items() if r >= target + margin]
    compact_curves, compact_sizes, projections = {}, {}, {}
    for dim in dims:
        projections[dim] = projection = query_aware_projection(vectors, fit_queries, dim)
        built[(COMPACT_M, dim)] = index = build_hnsw(vectors @ projection, space, COMPACT_M, ef_construction)
        size = (index_file_size(index) + projection.nbytes + 128) / len(vectors)  # + the .npy header
        compact_sizes[f"{dim}-d"] = size
        for rerank in (r for r in RERANK_GRID if r < len(vectors)):
            curve = {ef: reranked_recall(index, projection, vectors, queries, truth, rerank, ef) for ef in efs if ef >= rerank}
            compact_curves[f"{dim}-d, re-rank {rerank}"] = curve
            good += [(size, ef, COMPACT_M, ef, dim, rerank, r) for ef, r in curve.items() if r >= target + margin]
    seen_recall, near = None, None
    if good:
        def near_ok(g) -> bool:
            return g[6] >= near_exact and g[0] * len(vectors) <= near_exact_bytes

        def level(g) -> float:
            return near_exact if near_ok(g) else target + margin
        def store_bytes(g) -> float:  # the index, and the int8 table's coordinates (one byte each) it leaves there
            return g[0] + vectors.shape[1] - g[4]
        ranked = sorted(good, key=lambda g: (0, g[1], g[2], g[5]) if near_ok(g) else (1, round(store_bytes(g), 1), g[1], g[5]))
        pick = ranked[0]
        if len(exclude):
            checked = []
            for g in ranked:
                r = excluded_recall(built[(g[2], g[4])], queries[:exclude_queries], vectors, exclude[:exclude_queries],
                                    ef=g[3], k=k, projection=projections.get(g[4]),
                                    rerank=g[5])
                checked.append((r, g))
                if r >= level(g):
                    break
            # the one that held is the last checked (all before it fell short); if none held, the closest
            seen_recall, pick = checked[-1] if checked[-1][0] >= level(checked[-1][1]) else max(checked, key=lambda c: c[0])
        size, _, M, ef, dim, rerank, recall = pick
        near = near_exact if near_ok(pick) else None
    elif not Ms:
        raise ConverterError(f"no compact store of {', '.join(map(str, compact_dims))} dimensions reached recall@{k} "
                             f"{target + margin:.2f}, and no plain graph was to be tried")
    else:  # nothing reached the margin: the best measured plain setting
        M, ef = max(((m, e) for m in Ms for e in efs), key=lambda me: (curves[me[0]][me[1]], -me[0], -me[1]))
        size, dim, rerank, recall = sizes[M], 0, 0, curves[M][ef]
    similar = None
    if item_queries:
        items = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), min(item_queries, len(vectors)), replace=False))]
        items_truth = exact_topk(items, vectors, k, space)
        index = built[(M, dim)]
        similar = (reranked_recall(index, projections[dim], vectors, items, items_truth,
                                   min(similar_rerank * rerank, len(vectors) - 1), ef) if dim
                   else recall_at(index, items, items_truth, ef))
    return IndexChoice(space, M, ef_construction, ef, recall, target, size, curves, sizes, dim, projections.get(dim), rerank,
                       compact_curves, compact_sizes, similar, seen_recall, near)
