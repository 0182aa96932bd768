"""`edge-rec convert`, the pipeline: teacher -> distilled students -> int8 TFLite -> tuned HNSW index ->
on-device search -> signed bundle. What it built is a :class:`Conversion`; measuring it on the test split
is :mod:`converter.measure`'s job."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edge_rec.manifest import Manifest
from edge_rec.model import StudentModel
from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender

from .bundle import SearchPart, write_bundle
from .conversion_report import StudentResult
from .data import Dataset, EvalSet, Split
from .distill import distill
from .errors import ConverterError
from .evaluate import evaluate_with_lists, topk_overlap
from .index import IndexChoice, tune_index
from .progress import say
from .quantize import Int8Model, ParityError, quantize_student
from .search.build import SearchBuild, SearchConfig, build_search
from .search.evaluate import FACET_WEIGHTS, TITLE_WEIGHTS, choose_blend, choose_weight
from .search.model import SearchModel
from .student import StudentConfig, has_encoder, teacher_window
from .teacher import Teacher
from .timing import median_seconds


@dataclass
class ConvertConfig:
    architectures: Tuple[str, ...] = ("pool-mlp", "pool-recent", "attention", "teacher-encoder")
    student: StudentConfig = field(default_factory=StudentConfig)
    overlap_target: float = 0.8   # a student whose int8 top-10 shares this much with the teacher's is preferred
    recall_target: float = 0.95
    near_exact_mb: float = 4.0   # item and search indexes: a near-exact one (recall@10 >= 0.995) fitting this many MB wins
    representative_cases: int = 500
    parity_cases: int = 500
    golden_cases: int = 16
    latency_queries: int = 300
    popularity_list: int = 1000
    search: Optional[SearchConfig] = field(default_factory=SearchConfig)  # None: a bundle without search
    search_eval_queries: int = 5000     # held-out queries run through the bundle's search (a seeded sample)


class Int8Scorer:
    """The int8 TFLite student as a full-ranking ``Scorer`` over the device's item vectors."""

    def __init__(self, runner: StudentModel, table: np.ndarray) -> None:
        self.runner, self.table = runner, table

    def queries(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self.runner.query(self.table[np.asarray(h, dtype=np.int64)]) for h in histories])

    def __call__(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.queries(histories) @ self.table.T


def _subset(eval_set: EvalSet, n: int) -> List[np.ndarray]:
    return eval_set.histories[:n]


@dataclass
class Candidate:
    """A distilled student, its int8 TFLite model, and what validation measured of it."""

    student: Any  # the fp32 Keras student
    config: StudentConfig
    int8: Int8Model
    result: StudentResult


@dataclass
class Conversion:
    """What the pipeline built: the signed bundle, and what measuring it needs."""

    bundle: Path
    manifest: Manifest
    candidates: List[Candidate]
    chosen: Candidate
    choice: str  # why the chosen student won
    index: IndexChoice
    search: Optional[SearchBuild]
    search_tuning: Dict[str, Any]  # title weight and personalisation blend, chosen on validation queries
    minutes: float


def train_candidates(
    teacher: Teacher, split: Split, table: np.ndarray, config: ConvertConfig, log: Callable[[str], None]
) -> Tuple[List[Candidate], float]:
    """Distil and convert every candidate architecture; measure each on the validation split (NDCG@10 and
    top-10 overlap with the teacher). Also returns the teacher's validation NDCG@10."""
    valid, n_items = split.valid, table.shape[0]
    rep = valid.histories[-config.representative_cases:]
    parity = _subset(valid, config.parity_cases)
    teacher_valid, teacher_top = evaluate_with_lists(teacher, valid, n_items, ks=(10,), desc="teacher, validation")
    candidates = []
    for arch in config.architectures:
        if arch == "teacher-encoder" and not has_encoder(teacher) and len(config.architectures) > 1:
            log(f"  student {arch}: skipped ({type(teacher).__name__} has no SASRec encoder to copy)")
            continue
        cfg = config.student.for_architecture(arch, teacher_window(teacher))
        log(f"  student {arch}: distilling ({cfg.epochs} epochs at learning rate {cfg.learning_rate:g})")
        student, dlog = distill(teacher, split, table, cfg, log=log)
        try:
            int8 = quantize_student(student, cfg, table, rep, parity)
        except ParityError as e:
            if len(config.architectures) == 1:
                raise
            log(f"  student {arch}: dropped, its int8 model fails the parity gate ({e})")
            continue
        runner = StudentModel(int8.tflite, int8.spec)
        valid_int8, top = evaluate_with_lists(Int8Scorer(runner, table), valid, n_items, ks=(10,))
        result = StudentResult(
            architecture=arch,
            config=asdict(cfg),
            valid_fp32=dlog.best_valid,
            valid_int8=valid_int8,
            parity=int8.parity,
            tflite_bytes=len(int8.tflite),
            distill_minutes=dlog.seconds / 60,
            distill_epochs=dlog.epochs,
            latency_ms=1e3 * median_seconds(lambda h: runner.query(table[h]), _subset(valid, config.latency_queries)),
            float_ops=int8.spec.float_ops,
            edgetpu_blockers=int8.report.edgetpu_blockers,
            valid_overlap=topk_overlap(top, teacher_top),
        )
        candidates.append(Candidate(student, cfg, int8, result))
        log(
            f"  student {arch}: valid NDCG@10 fp32 {result.valid_fp32['NDCG@10']:.4f}, int8 "
            f"{result.valid_int8['NDCG@10']:.4f}, top-10 overlap with the teacher {result.valid_overlap:.3f}, "
            f"{result.tflite_bytes / 1024:.1f} KiB, {result.latency_ms:.3f} ms, parity cos {int8.parity['cosine_mean']:.4f}"
        )
    if not candidates:
        raise ConverterError(f"no student architecture of {', '.join(config.architectures)} converted: see the log above")
    return candidates, teacher_valid["NDCG@10"]


def choose(candidates: List[Candidate], teacher_ndcg: float, overlap_target: float) -> Tuple[Candidate, str]:
    """The student that keeps the teacher's quality and its lists: among candidates with int8 validation
    NDCG@10 >= 0.99 x the teacher's and top-10 overlap >= ``overlap_target`` (all of them if none does),
    the best NDCG@10; within 1% of it, one that keeps ``overlap_target`` of the teacher's top-10 first, then
    Edge TPU compatible, then faster, then smaller."""
    faithful = [c for c in candidates
                if c.result.valid_int8["NDCG@10"] >= 0.99 * teacher_ndcg and c.result.valid_overlap >= overlap_target]
    pool = faithful or candidates
    best = max(c.result.valid_int8["NDCG@10"] for c in pool)
    close = [c for c in pool if c.result.valid_int8["NDCG@10"] >= 0.99 * best]
    pick = min(close, key=lambda c: (c.result.valid_overlap < overlap_target, bool(c.result.edgetpu_blockers),
                                     c.result.latency_ms, c.result.tflite_bytes))
    r = pick.result
    kept = (f"{len(faithful)} of {len(candidates)} candidates keep >= 0.99 x the teacher's NDCG@10 "
            f"({teacher_ndcg:.4f}) and >= {overlap_target:g} of its top-10" if faithful else
            f"no candidate keeps both >= 0.99 x the teacher's NDCG@10 ({teacher_ndcg:.4f}) and >= {overlap_target:g} "
            "of its top-10: all compared")
    why = (
        f"{r.architecture}: int8 validation NDCG@10 {r.valid_int8['NDCG@10']:.4f}, top-10 overlap with the teacher "
        f"{r.valid_overlap:.3f} ({kept}; within 1% of the best of those the rule prefers one keeping the teacher's "
        f"top-10, then Edge TPU compatible, then faster, then smaller); {r.tflite_bytes / 1024:.1f} KiB, "
        f"{r.latency_ms:.3f} ms per query"
    )
    return pick, why


def convert(
    dataset: Dataset,
    split: Split,
    teacher: Teacher,
    out: Union[str, Path],
    private_key: Union[str, Path],
    config: Optional[ConvertConfig] = None,
    log: Callable[[str], None] = say,
    text_encoder=None,
    search_model_out: Optional[Union[str, Path]] = None,
) -> Conversion:
    """Build the signed bundle at ``out`` (students chosen and the index tuned on the validation split).
    With ``config.search``, the bundle gets on-device search (``text_encoder``: the language model) and
    the publisher's search model is saved at ``search_model_out``."""
    c = config or ConvertConfig()
    t0 = time.time()
    n_items = dataset.n_items
    steps = 5 if c.search else 4
    log(f"[1/{steps}] item table: teacher item vectors -> int8 rows")
    q, scales = quantize_rows(teacher.item_vectors())
    table = dequantize_rows(q, scales)

    log(f"[2/{steps}] students: {', '.join(c.architectures)}")
    candidates, teacher_ndcg = train_candidates(teacher, split, table, c, log)
    pick, why = choose(candidates, teacher_ndcg, c.overlap_target)
    log(f"  chosen: {why}")

    log(f"[3/{steps}] HNSW index: recall@10 against exact search over M x ef")
    runner = StudentModel(pick.int8.tflite, pick.int8.spec)
    histories, others = split.valid.histories[:2000], split.valid.histories[2000:6000]
    scorer = Int8Scorer(runner, table)
    index = tune_index(table, scorer.queries(histories), target=c.recall_target,
                       exclude=histories if split.valid.exclude_seen else (), near_exact_bytes=c.near_exact_mb * 1e6,
                       fit_queries=scorer.queries(others) if len(others) >= 1000 else None)  # few others: half the measured fit
    seen = "" if index.seen_excluded_recall is None else f" ({index.seen_excluded_recall:.4f} with seen items left out)"
    log(f"  {index.form}, ef_search={index.ef_search}: recall@10 {index.recall:.4f}{seen}"
        f"{' (near-exact, within the small-catalog budget)' if index.near_exact else ''}, "
        f"{index.bytes_per_item:.0f} B/item on disk")

    search, search_part, tuning = None, None, {}
    if c.search is not None:
        log(f"[4/{steps}] on-device search: tokenizer, query encoder distilled from the language model, search index")
        if text_encoder is None:
            from .text import TextEncoder
            text_encoder = TextEncoder()
        search = build_search(dataset, text_encoder, c.search, log)
        search_part = _search_part(search, c.recall_target, c.near_exact_mb * 1e6)
        log(f"  search index: M={search_part.index.M}, ef_search={search_part.index.ef_search}, recall@10 "
            f"{search_part.index.recall:.4f}")
        if search_model_out is not None:
            SearchModel(search.space).save(search_model_out)

    def tune_search(rec: EdgeRecommender, manifest) -> None:
        """Choose the title-matching weight, then the facet weight, then the personalisation blend, through the runtime."""
        if manifest.search is None or search is None:
            return
        rows = {it.id: r for r, it in enumerate(dataset.items)}
        sample = np.sort(
            np.random.default_rng(c.search.seed).choice(
                len(search.valid_queries), min(len(search.valid_queries), c.search.tuning_queries), replace=False
            )
        )
        for name, grid in (("title_weight", TITLE_WEIGHTS), ("facet_weight", FACET_WEIGHTS)):

            def top(text: str, weight: float, name: str = name) -> List[int]:
                setattr(manifest.search, name, weight)
                return [rows[r.item_id] for r in rec.search(text, k=10, personalize=False)]

            chosen, tuning[name] = choose_weight(
                top, [search.valid_queries[i] for i in sample], dataset.items, search.valid_anchor_top[sample], grid
            )
            setattr(manifest.search, name, chosen)
            log(f"  search: {name.replace('_', ' ')} {chosen} (validation: " + ", ".join(
                f"{k} {v:.3f}" for k, v in tuning[name]["by_weight"][str(chosen)].items() if v is not None) + ")")
        histories = [[dataset.items[i].id for i in h] for h in split.valid.histories[:2000] if len(h)]
        weight, tuning["blend"] = choose_blend(
            lambda text, hist, w: [r.item_id for r in rec.search(text, k=5, history=hist or [], personalize=w)],
            search.valid_queries[:300], histories)
        manifest.search.blend = weight

    log(f"[{steps}/{steps}] bundle: files, golden cases, signature")
    counts = np.bincount(np.concatenate(split.train), minlength=n_items)
    popularity = np.argsort(-counts, kind="stable")[:c.popularity_list]
    metadata = [{"title": it.title, "year": it.year, "genres": list(it.genres), **dict(it.extra)} for it in dataset.items]
    golden = [np.asarray(h[-200:], dtype=np.int64) for h in split.test.histories[: c.golden_cases - 1]] + [np.zeros(0, np.int64)]
    info = {"dataset": dataset.name, "student": pick.result.architecture, "choice": why}
    if search is not None:
        info["search"] = {
            "query_format": search.report["query_format"],
            "heldout": c.search.heldout,
            "validation": c.search.validation,
            "seed": c.search.seed,
            "chosen": search.report["chosen"],
        }
    manifest = write_bundle(
        out,
        pick.int8,
        [it.id for it in dataset.items],
        teacher.item_vectors(),
        metadata,
        popularity,
        index,
        golden,
        private_key,
        info=info,
        search=search_part,
        seen_items=split.seen_items,
        before_signing=tune_search,
    )
    return Conversion(Path(out), manifest, candidates, pick, why, index, search, tuning, (time.time() - t0) / 60)


def _search_part(search: SearchBuild, recall_target: float, near_exact_bytes: float) -> SearchPart:
    """The bundle's search files, with the search index tuned by recall on validation queries (near-exact,
    like the item index, when that fits ``near_exact_bytes``: a small catalog's search then ranks as the
    encoder does)."""
    q, scales = quantize_rows(search.item_vectors)
    index = tune_index(dequantize_rows(q, scales), search.valid_vectors, target=recall_target, compact_dims=(), item_queries=0,
                       near_exact_bytes=near_exact_bytes)
    return SearchPart(
        search.tokenizer,
        search.encoder.tflite,
        search.encoder.spec,
        search.features,
        search.item_vectors,
        index,
        0.0,
        search.golden_queries,
        search.golden_searches,
    )
