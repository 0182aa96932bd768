"""EdgeRecommender: history -> user query (int8 TFLite student) -> ANN retrieval -> re-scored top-k."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from .bundle import Bundle
from .index import ItemIndex
from .items import ItemTable
from .model import StudentModel
from .signing import KeyLike


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

    @property
    def passed(self) -> bool:
        return self.top_identical == self.cases and self.min_cosine >= 0.999


class EdgeRecommender:
    """Recommends from a verified bundle, entirely on the device."""

    def __init__(self, bundle: Bundle, num_threads: int = 1, backend: Optional[str] = None) -> None:
        m = bundle.manifest
        self.bundle = bundle
        self.items = ItemTable(bundle.load_array(m.items.vectors), bundle.load_array(m.items.scales),
                               _json_list(bundle.read_bytes(m.items.ids)), bundle.load_array(m.items.popularity),
                               bundle.verify_file(m.items.metadata))
        self.model = StudentModel(bundle.read_bytes(m.model.file), m.model, num_threads, backend)
        self.index = ItemIndex(bundle.verify_file(m.index.file), m.index)

    @classmethod
    def open(cls, bundle_dir: Union[str, Path], public_key: Union[KeyLike, Iterable[KeyLike]], **kw: Any) -> "EdgeRecommender":
        return cls(Bundle.open(bundle_dir, public_key), **kw)

    def query_vector(self, rows: np.ndarray) -> np.ndarray:
        """The student's query for a history given as item-table rows, oldest first."""
        return self.model.query(self.items.dequantized(rows))

    def recommend_rows(self, rows: np.ndarray, k: int = 10, exclude_seen: bool = True) -> "tuple[np.ndarray, np.ndarray]":
        """Top-``k`` (rows, scores) for a history of rows; popularity order for an empty history."""
        exclude = np.unique(rows) if exclude_seen else np.zeros(0, np.int64)
        if len(rows) == 0:
            top = self.items.popularity[:k]
            return top, np.zeros(len(top), np.float32)
        q = self.query_vector(rows)
        cand, _ = self.index.search(q, k, exclude)
        scores = self.items.dequantized(cand) @ q
        order = np.argsort(-scores, kind="stable")
        return cand[order], scores[order].astype(np.float32)

    def recommend(self, history: Sequence[str] = (), k: int = 10, exclude_seen: bool = True) -> List[Recommendation]:
        """Top-``k`` items for a history of item ids (oldest first); unknown ids are ignored."""
        rows, scores = self.recommend_rows(self.items.rows(history, strict=False), k, exclude_seen)
        return [Recommendation(self.items.ids[r], float(s), self.items.metadata(int(r))) for r, s in zip(rows, scores)]

    def check_golden(self) -> GoldenResult:
        """Replay the manifest's golden cases: same top-10 and query cosine >= 0.999 expected."""
        same, cosines = 0, []
        for case in self.bundle.manifest.golden:
            rows = self.items.rows(case.history, strict=False)
            if len(rows):  # an empty history is served by popularity, without the model
                q = self.query_vector(rows)
                expected = np.asarray(case.query, np.float32)
                cosines.append(float(q @ expected / (np.linalg.norm(q) * np.linalg.norm(expected) + 1e-12)))
            top, _ = self.recommend_rows(rows, len(case.top))
            same += [self.items.ids[r] for r in top] == case.top
        return GoldenResult(len(self.bundle.manifest.golden), same, min(cosines) if cosines else 1.0)


def _json_list(data: bytes) -> List[str]:
    import json

    from .errors import ManifestError
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"item ids are not a JSON list: {e}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError("item ids must be a JSON list of strings")
    return value
