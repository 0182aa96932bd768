"""Full-ranking evaluation: every catalog item is ranked for every user.

One protocol for the teacher, the student, popularity and the on-device bundle: anything that turns a
batch of histories into scores over the catalog (a ``Scorer``) is evaluated by :func:`evaluate`, with
seen items excluded or not as the split's repeat-consumption protocol says (``EvalSet.exclude_seen``).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .data import EvalSet
from .progress import progress

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]  # histories -> (batch, n_items) float scores
DEFAULT_KS = (10, 20)


def metrics_from_ranks(ranks: np.ndarray, top: np.ndarray, n_items: int,
                       ks: Iterable[int] = DEFAULT_KS) -> Dict[str, float]:
    """HR@k, NDCG@k, coverage@k and MRR from 0-based target ranks and each user's top-k list.

    ``ranks`` may hold ``inf`` for a target that is not ranked at all. Coverage@k is the share of the
    catalog that appears in at least one user's top-k.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no users to evaluate")
    out: Dict[str, float] = {"users": int(ranks.size)}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0).mean())
        listed = np.unique(top[:, :k])
        out[f"coverage@{k}"] = float((listed >= 0).sum() / n_items)  # -1 pads short lists
    out["MRR"] = float(np.where(np.isfinite(ranks), 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def mask_seen(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """Set each row's history items to -inf in place (they are not recommended again); returns ``scores``."""
    for r, hist in enumerate(histories):
        scores[r, hist] = -np.inf
    return scores


def rank_targets(scores: np.ndarray, histories: Sequence[np.ndarray], targets: np.ndarray,
                 k: int, exclude_seen: bool = True):
    """Ranks of ``targets`` in ``scores`` (B, n_items) and the top-``k`` items per row.

    With ``exclude_seen`` every item of the history is left out, the target too if the user had seen it
    (its rank is then ``inf``: a device that excludes seen items can never show it). Ties are broken by
    item index, so a rank and a top-k list always agree.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    rows = np.arange(len(targets))
    if scores.ndim != 2 or scores.shape[0] != len(targets):
        raise ValueError(f"scorer returned shape {scores.shape}, expected ({len(targets)}, n_items)")
    nan = np.isnan(scores)
    if nan.any():
        raise ValueError(f"scorer returned NaN scores for {int(nan.any(axis=1).sum())} users")
    if exclude_seen:
        mask_seen(scores, histories)
    index = np.arange(scores.shape[1])[None, :]
    t = scores[rows, targets][:, None]
    ranks = ((scores > t) | ((scores == t) & (index < targets[:, None]))).sum(axis=1).astype(np.float64)
    ranks[np.isneginf(t[:, 0])] = np.inf  # an excluded (seen) target is not ranked
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ranks, top


def evaluate(scorer: Scorer, eval_set: EvalSet, n_items: int, ks: Iterable[int] = DEFAULT_KS,
             batch_size: int = 512, exclude_seen: Optional[bool] = None, desc: Optional[str] = None) -> Dict[str, float]:
    """Evaluate ``scorer`` on ``eval_set`` with full ranking over all ``n_items`` items (seen items
    excluded or not: ``exclude_seen``, by default the eval set's protocol)."""
    return evaluate_with_lists(scorer, eval_set, n_items, ks, batch_size, exclude_seen, desc)[0]


def evaluate_with_lists(scorer: Scorer, eval_set: EvalSet, n_items: int, ks: Iterable[int] = DEFAULT_KS,
                        batch_size: int = 512, exclude_seen: Optional[bool] = None, desc: Optional[str] = None
                        ) -> Tuple[Dict[str, float], np.ndarray]:
    """:func:`evaluate`, plus each user's top-max(ks) list it ranked (seen items left out as the protocol
    says), for a top-k overlap without scoring the users again."""
    ks = tuple(ks)
    exclude_seen = eval_set.exclude_seen if exclude_seen is None else exclude_seen
    all_ranks: List[np.ndarray] = []
    all_top: List[np.ndarray] = []
    n = len(eval_set)
    for start in progress(range(0, n, batch_size), desc=desc, total=math.ceil(n / batch_size)):
        hist = eval_set.histories[start:start + batch_size]
        targets = eval_set.targets[start:start + batch_size]
        ranks, top = rank_targets(scorer(hist), hist, targets, max(ks), exclude_seen)
        all_ranks.append(ranks)
        all_top.append(top)
    top = np.concatenate(all_top)
    return metrics_from_ranks(np.concatenate(all_ranks), top, n_items, ks), top


def evaluate_lists(recommend: Callable[[np.ndarray], np.ndarray], eval_set: EvalSet, n_items: int,
                   ks: Iterable[int] = DEFAULT_KS, desc: Optional[str] = None) -> Dict[str, float]:
    """Evaluate a retriever that returns each history's top items (seen ones already excluded), e.g. the
    on-device path through the ANN index. Targets outside the top-max(ks) list count as misses, so MRR
    here is MRR@max(ks)."""
    k = max(ks)
    ranks = np.full(len(eval_set), np.inf)
    top = np.full((len(eval_set), k), -1, dtype=np.int64)
    for i in progress(range(len(eval_set)), desc=desc, total=len(eval_set)):
        items = np.asarray(recommend(eval_set.histories[i]))[:k]
        top[i, :len(items)] = items
        hit = np.flatnonzero(items == eval_set.targets[i])
        if hit.size:
            ranks[i] = hit[0]
    return metrics_from_ranks(ranks, top, n_items, ks)


def topk_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of items two sets of top-k lists (rows) have in common."""
    k = a.shape[1]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]))


def exclude_seen_topk(scores: np.ndarray, histories: Sequence[np.ndarray], k: int, exclude_seen: bool = True) -> np.ndarray:
    """Each row's top-``k`` items, its history's items left out (unless ``exclude_seen`` is False)."""
    masked = np.array(scores, dtype=np.float32, copy=True)
    if exclude_seen:
        mask_seen(masked, histories)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


class PopularityScorer:
    """Baseline: every user gets the items ranked by their number of training interactions."""

    def __init__(self, train: Sequence[np.ndarray], n_items: int) -> None:
        counts = np.bincount(np.concatenate(list(train)), minlength=n_items) if len(train) else np.zeros(n_items)
        self.counts = counts.astype(np.float32)

    def __call__(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), self.counts.size))
