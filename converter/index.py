"""The compact HNSW item index: build with hnswlib, and choose M / ef by measured recall@10.

Recall is measured against exact search over the same (int8-dequantized) vectors, with real student
query vectors. The smallest M (fewest bytes per item) that reaches the target with a margin wins; its
ef_search is the smallest ef that does.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np

EF_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)
M_GRID = (8, 12, 16, 24, 32)


def build_hnsw(vectors: np.ndarray, space: str = "ip", M: int = 16, ef_construction: int = 200, seed: int = 0):
    import hnswlib
    index = hnswlib.Index(space=space, dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=M, ef_construction=ef_construction, random_seed=seed)
    index.set_num_threads(1)  # deterministic graph
    index.add_items(vectors.astype(np.float32), np.arange(len(vectors)))
    return index


def exact_topk(queries: np.ndarray, vectors: np.ndarray, k: int, space: str = "ip") -> np.ndarray:
    if space == "l2":
        scores = -((queries[:, None, :] - vectors[None]) ** 2).sum(-1)
    elif space == "cosine":
        scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    else:
        scores = queries @ vectors.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


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


@dataclass
class IndexChoice:
    space: str
    M: int
    ef_construction: int
    ef_search: int
    recall: float
    target: float
    bytes_per_item: float
    curves: Dict[int, Dict[int, float]] = field(default_factory=dict)   # M -> ef -> recall@10
    sizes: Dict[int, float] = field(default_factory=dict)               # M -> bytes per item on disk


def tune_index(vectors: np.ndarray, queries: np.ndarray, target: float = 0.95, margin: float = 0.02,
               space: str = "ip", ef_construction: int = 200, Ms: Sequence[int] = M_GRID,
               efs: Sequence[int] = EF_GRID, k: int = 10) -> IndexChoice:
    """Measure recall@k over the (M, ef) grid and pick the most compact setting reaching target + margin."""
    truth = exact_topk(queries, vectors, k, space)
    curves, sizes, choice = {}, {}, None
    for M in Ms:
        index = build_hnsw(vectors, space, M, ef_construction)
        curves[M] = {ef: recall_at(index, queries, truth, ef) for ef in efs}
        sizes[M] = index_file_size(index) / len(vectors)
        good = [ef for ef in efs if curves[M][ef] >= target + margin]
        if choice is None and good:
            choice = (M, good[0])
    if choice is None:  # nothing reached the margin: take the best measured setting
        M, ef = max(((m, e) for m in Ms for e in efs), key=lambda me: (curves[me[0]][me[1]], -me[0], -me[1]))
        choice = (M, ef)
    M, ef = choice
    return IndexChoice(space, M, ef_construction, ef, curves[M][ef], target, sizes[M], curves, sizes)
