"""The steps the CLI and the demo chain together: load data, embed item text, train or reuse a teacher,
evaluate. Each step is a plain function so scripts and tests can call them directly."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import numpy as np

from edge_rec.atomic import atomic_write_json

from .data import Dataset, Split, load_interactions, load_movielens_1m
from .evaluate import PopularityScorer, evaluate
from .progress import say

PathLike = Union[str, Path]
DEFAULT_ARTIFACTS = Path(os.environ.get("EDGE_REC_ARTIFACTS", "artifacts"))


def load_dataset(data: Optional[PathLike] = None, interactions: Optional[PathLike] = None,
                 items: Optional[PathLike] = None, delimiter: Optional[str] = None) -> Dataset:
    """ML-1M (from ``data`` or the default places) unless a generic interactions + items pair is given."""
    if interactions or items:
        if not (interactions and items):
            raise ValueError("the generic format needs both --interactions and --items")
        return load_interactions(interactions, items, delimiter)
    return load_movielens_1m(data)


def text_vectors(dataset: Dataset, cache_dir: PathLike, text_encoder=None) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of every catalog item's text (cached under ``cache_dir``; ``text_encoder``:
    another one, e.g. on a Ray cluster)."""
    from .text import TextEncoder
    encoder = text_encoder or TextEncoder(cache_dir=cache_dir)
    return encoder.encode([item.text() for item in dataset.items])


def train_or_load_teacher(dataset: Dataset, split: Split, out: PathLike, cache_dir: PathLike,
                          config=None, force: bool = False, log: Callable[[str], None] = say, text_encoder=None):
    """Reuse the teacher saved at ``out`` if it was trained on this data set with this config. ``config``:
    a ``SASRecConfig``, or a list of them for an ensemble (trained in turn within the first one's
    ``max_minutes``)."""
    from .teacher import EnsembleTeacher, SASRecConfig, load_teacher, teacher_configs, train_teacher
    config = config or SASRecConfig()
    configs = teacher_configs(config)
    out = Path(out)
    if not force and (out / "config.json").is_file():
        teacher = load_teacher(out)
        same_data = teacher.info.get("dataset_fingerprint") == dataset.fingerprint()
        saved = teacher.configs if isinstance(teacher, EnsembleTeacher) else [teacher.config]
        if same_data and saved == configs:
            log(f"reusing the teacher saved at {out} (trained {teacher.info.get('train_seconds', '?')} s)")
            return teacher
        log(f"the teacher at {out} was trained on other data or settings: training a new one")
    vectors = text_vectors(dataset, cache_dir, text_encoder) if any(c.use_text for c in configs) else None
    teacher = train_teacher(split, [item.id for item in dataset.items], vectors, config, log=log)
    for t in getattr(teacher, "members", []) + [teacher]:
        t.info["dataset_fingerprint"] = dataset.fingerprint()
        t.info["dataset"] = dataset.name
    teacher.save(out)
    log(f"teacher saved to {out}")
    return teacher


def evaluate_models(models: Dict[str, Callable], dataset: Dataset, split: Split, stage: str = "test",
                    out: Optional[PathLike] = None) -> Dict[str, Dict[str, float]]:
    """Full-ranking metrics of each named scorer (and the popularity baseline) on one split."""
    eval_set = split.stage(stage)
    results = {"popularity": evaluate(PopularityScorer(split.train, dataset.n_items), eval_set,
                                      dataset.n_items, desc="popularity")}
    for name, scorer in models.items():
        results[name] = evaluate(scorer, eval_set, dataset.n_items, desc=name)
    if out is not None:
        atomic_write_json(out, {"dataset": dataset.name, "split": stage, "protocol":
                                "leave-one-out, full ranking over all items, " + ("seen items excluded" if eval_set.exclude_seen
                                                                                 else "seen items ranked too (repeats)"),
                                "seen_items": split.seen_items, "repeat_share": split.repeat_share,
                                "results": results})
    return results


def format_table(results: Dict[str, Dict[str, float]]) -> str:
    """A Markdown table of metrics, one row per model."""
    cols = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "coverage@10"]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, m in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines)
