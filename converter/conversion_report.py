"""The conversion report as typed data: what `edge-rec convert` measured, written as report.json.

Every field has a stable identifier; display names live with the rendering (:mod:`converter.report`).
Metric dictionaries are keyed by metric name ("NDCG@10", "known_item_success@5", ...).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from edge_rec.golden import GoldenResult

from .errors import ConverterError
from .index import IndexChoice

REPORT_FORMAT = "edge-rec-conversion-report/2"  # /1 (keys were display strings) is refused with a message

Metrics = Dict[str, float]


class ReportError(ConverterError):
    """A report.json this version cannot read."""


@dataclass
class Quality:
    """One model on the test split: full-ranking metrics, and its top-10 overlap with the teacher's."""

    metrics: Metrics
    overlap_with_teacher: Optional[float] = None


@dataclass
class TestResults:
    """The test split, every model measured by the same code under one repeat-consumption protocol."""

    popularity: Quality
    teacher: Quality
    student_fp32: Quality
    bundle: Quality  # the device path: int8 TFLite student, HNSW retrieval, int8 re-scoring
    seen_items: str = "exclude"  # the protocol (manifest.seen_items): "exclude" or "repeat"
    repeat_share: float = 0.0    # share of held-out targets already in their user's history

    def models(self) -> Dict[str, Quality]:
        """Field name -> quality, in table order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.type == "Quality"}


@dataclass
class Latency:
    """Median milliseconds per query, measured in one run on the same histories."""

    teacher_ms: float  # compiled user vector + exact scoring over every item
    device_ms: float  # TFLite student + HNSW top-10 through the runtime
    queries: int

    @property
    def speedup(self) -> float:
        return self.teacher_ms / self.device_ms


@dataclass
class Sizes:
    tflite_bytes: int
    files: Dict[str, int]
    index_bytes_per_item: float
    item_table_bytes_per_item: float


@dataclass
class StudentResult:
    """One candidate student architecture, measured on the validation split."""

    architecture: str
    config: Dict[str, Any]
    valid_fp32: Metrics
    valid_int8: Metrics
    parity: Dict[str, float]
    tflite_bytes: int
    distill_minutes: float
    distill_epochs: int
    latency_ms: float
    float_ops: List[str]
    edgetpu_blockers: List[str]
    valid_overlap: Optional[float] = None  # int8 top-10 overlap with the teacher (None: a report before 0.3)


@dataclass
class SearchReport:
    """On-device search: how it was built (split, encoders tried, the int8 encoder) and what the bundle's
    ``search`` measured through the runtime on held-out items' generated queries."""

    query_format: str
    split: Dict[str, int]
    training_texts: Dict[str, int]
    dim: int
    encoders: List[Dict[str, Any]]  # every encoder size and dimension tried, with its validation metrics
    chosen: str
    encoder_bytes: int
    tokenizer_bytes: int
    ops: List[str]
    float_ops: List[str]
    edgetpu_blockers: List[str]
    parity: Dict[str, float]
    minutes: float
    device_heldout: Dict[str, Any]  # search_metrics: overall and per query kind
    headline: Dict[str, Optional[float]]
    anchor_headline: Dict[str, Optional[float]]
    personalisation: Dict[str, Any]
    latency_ms: Dict[str, float]
    title_matching: Dict[str, Any]
    files: Dict[str, int]
    tokenizer_and_encoder_bytes: int
    index: Dict[str, int]
    facet_matching: Dict[str, Any] = field(default_factory=dict)  # bundle format 5 on (empty in older reports)


@dataclass
class ConversionReport:
    dataset: str
    bundle: str
    bundle_version: int
    test: TestResults
    latency: Latency
    sizes: Sizes
    index: IndexChoice
    golden: GoldenResult
    students: List[StudentResult]
    chosen: str
    ops: List[str]
    float_ops: List[str]
    edgetpu_compatible: bool
    edgetpu_blockers: List[str]
    search: Optional[SearchReport]
    minutes: float
    machine: Dict[str, Any] = field(default_factory=dict)
    cold_start: Optional[Dict[str, Any]] = None  # converter.coldstart.ColdStartRun.to_dict(), when measured

    @property
    def ndcg_ratio(self) -> float:
        """The bundle's test NDCG@10 over the teacher's."""
        return self.test.bundle.metrics["NDCG@10"] / self.test.teacher.metrics["NDCG@10"]

    def to_json(self) -> Dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            **asdict(self, dict_factory=_without_arrays),
            "ndcg_ratio": self.ndcg_ratio,
            "golden_passed": self.golden.passed,
            "speedup": self.latency.speedup,
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ConversionReport":
        """Read report.json (what :meth:`to_json` wrote)."""
        if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
            found = (
                data.get("format", "an unversioned report (written before 0.2)")
                if isinstance(data, dict)
                else type(data).__name__
            )
            raise ReportError(f"a conversion report must be {REPORT_FORMAT}, not {found}: run `edge-rec convert` again")
        try:
            return _typed(cls, data)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ReportError(f"a damaged or incomplete conversion report ({type(e).__name__}: {e})") from None


def _without_arrays(pairs) -> Dict[str, Any]:
    """A dataclass as a dict without its numpy arrays (e.g. the index's projection: bundle data, not report data)."""
    return {k: v for k, v in pairs if not isinstance(v, np.ndarray)}


def _typed(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as type ``tp``: dataclasses built field by field, int dict keys restored."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _typed(hints[f.name], value[f.name]) for f in dataclasses.fields(tp) if f.name in value})
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return None if value is None else _typed(inner[0], value)
    if origin in (list, List):
        return [_typed(args[0], v) for v in value]
    if origin in (dict, Dict):
        key = int if args and args[0] is int else (lambda k: k)
        return {key(k): _typed(args[1], v) for k, v in value.items()}
    return value
