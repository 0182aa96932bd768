"""Golden cases: computed by the converter (or publisher) with the runtime's own code, replayed by every
device, and the health check a version must pass to become (or stay) current.

The rule is closeness, not bit-identity: every query vector within cosine MIN_COSINE of the converter's and
every top-10 sharing MIN_OVERLAP of its items. TFLite's optimized int8 kernels requantize fully connected and
convolution outputs with different rounding on x86_64 and aarch64 (a step in about 1 of 3,000 outputs), and
a student with attention stacks that: the ML-1M teacher-encoder student's query vectors for 200 test
histories, x86_64 against emulated aarch64 (ai-edge-litert 2.3.0), came as close as cosine 0.9963 and top-10
overlap 0.8 (mean 0.95); TFLite's reference kernels are no way out (identical on both machines, but far
from the optimized ones and from tflite-runtime's). An index a device grew itself rounds its floats its own
way too. A broken model, table or interpreter misses the cosine by far. How many cases a device reproduced
exactly is reported beside the rule."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np

from .bundle import Bundle
from .errors import HealthCheckError
from .manifest import GoldenCase, SearchGoldenCase
from .signing import KeyLike

if TYPE_CHECKING:
    from .recommender import EdgeRecommender

MIN_OVERLAP = 0.7  # every golden top-10 shares at least this much with the converter's
MIN_COSINE = 0.99  # query vectors must reproduce the converter's this closely
SEARCH_MARGIN = 1e-4    # least score gap between consecutive results of a golden search query


@dataclass
class GoldenResult:
    """How the runtime reproduced the converter's golden cases (recommendation and search)."""

    cases: int
    top_identical: int
    min_cosine: float
    min_overlap: float = 1.0  # smallest top-k overlap with the expected list
    search_cases: int = 0     # of ``cases``, how many are search queries

    @property
    def passed(self) -> bool:
        return self.min_overlap >= MIN_OVERLAP and self.min_cosine >= MIN_COSINE


def compute(rec: "EdgeRecommender", histories: Sequence[np.ndarray], queries: Sequence[str] = (), k: int = 10,
            max_searches: Optional[int] = None) -> Tuple[List[GoldenCase], List[SearchGoldenCase]]:
    """Golden cases for histories (item rows) and search queries, as this runtime answers them. A query
    becomes a case only if its first k + 1 scores are at least SEARCH_MARGIN apart (every device must
    reproduce the order exactly); at most ``max_searches`` of them."""
    cases = []
    for rows in histories:
        rows = np.asarray(rows, dtype=np.int64)
        top, _ = rec.recommend_rows(rows, k)
        query = rec.query_vector(rows) if len(rows) else np.zeros(rec.items.dim, np.float32)
        cases.append(GoldenCase(history=[rec.items.ids[r] for r in rows], query=[float(x) for x in query],
                                top=[rec.items.ids[r] for r in top]))
    searches: List[SearchGoldenCase] = []
    for text in queries:
        vector = rec.search_vector(text)
        if vector is None or (max_searches is not None and len(searches) >= max_searches):
            continue
        top = rec.search(text, k=k, personalize=False)
        deeper = rec.search(text, k=k + 1, personalize=False)
        scores = [r.score for r in deeper]
        if [r.item_id for r in deeper[:k]] != [r.item_id for r in top] or \
                any(a - b < SEARCH_MARGIN for a, b in zip(scores, scores[1:])):
            continue  # a near-tie: float rounding on another device could order it differently
        searches.append(SearchGoldenCase(query=text, vector=[float(x) for x in vector], top=[r.item_id for r in top]))
    return cases, searches


def _cosine(a: Any, expected: np.ndarray) -> float:
    if a is None:
        return -1.0
    cos = float(a @ expected / (np.linalg.norm(a) * np.linalg.norm(expected) + 1e-12))
    return cos if np.isfinite(cos) else -1.0  # a NaN query fails the check


def replay(rec: "EdgeRecommender") -> GoldenResult:
    """Replay a bundle's golden cases: query cosines, top-10 overlaps and exact matches with the converter's."""
    m = rec.bundle.manifest
    same, cosines, overlaps = 0, [], [1.0]

    def compare(got: List[str], expected: List[str]) -> None:
        nonlocal same
        same += got == expected
        overlaps.append(len(set(got) & set(expected)) / max(1, len(expected)))

    for case in m.golden:
        rows = rec.items.rows(case.history, strict=False)
        if len(rows):  # an empty history is served by popularity, without the model
            cosines.append(_cosine(rec.query_vector(rows[-rec.history_len:]), np.asarray(case.query, np.float32)))
        top, _ = rec.recommend_rows(rows, len(case.top))
        compare([rec.items.ids[r] for r in top], case.top)
    searches = m.search.golden if m.search else []
    for sc in searches:
        cosines.append(_cosine(rec.search_vector(sc.query), np.asarray(sc.vector, np.float32)))
        compare([r.item_id for r in rec.search(sc.query, k=len(sc.top), personalize=False)], sc.top)
    return GoldenResult(len(m.golden) + len(searches), same, min(cosines) if cosines else 1.0, min(overlaps), len(searches))


def check_version(path: Path, keys: Sequence[KeyLike], threshold: int, **kw: Any) -> "EdgeRecommender":
    """The health check a version must pass to be (or stay) current: verified bundle, a model that gives
    finite answers, and every golden case reproduced (see the module's rule). Returns the checked recommender (``kw`` as for
    :class:`EdgeRecommender`), so a caller that serves the version need not load it again; the caller
    closes it. On failure it is closed here."""
    from .recommender import EdgeRecommender
    rec = EdgeRecommender(Bundle.open(path, keys, threshold), **kw)
    try:
        m = rec.bundle.manifest
        result = replay(rec)
        if not result.passed:
            raise HealthCheckError(f"version {m.bundle_version} fails its golden cases ({result.top_identical}/"
                                   f"{result.cases} identical, min top-10 overlap {result.min_overlap:.2f}, "
                                   f"min query cosine {result.min_cosine:.4f})")
        return rec
    except BaseException:
        rec.close()
        raise
