"""`edge-rec convert`: teacher -> distilled students -> int8 TFLite -> tuned HNSW index -> signed bundle,
with every stage measured on the same test split (the conversion report)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edge_rec.model import StudentModel
from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender

from .bundle import SearchPart, write_bundle
from .data import Dataset, EvalSet, Split
from .distill import StudentScorer, distill, exclude_seen_topk, topk_overlap
from .evaluate import PopularityScorer, evaluate, evaluate_lists
from .index import tune_index
from .progress import say
from .provenance import machine_record
from .quantize import quantize_student
from .search.build import SearchBuild, SearchConfig, build_search
from .search.evaluate import choose_blend, choose_title_weight, device_search
from .search.model import SearchModel
from .student import StudentConfig
from .teacher import Teacher


@dataclass
class ConvertConfig:
    architectures: Tuple[str, ...] = ("pool-mlp", "pool-recent", "attention")
    student: StudentConfig = field(default_factory=StudentConfig)
    recall_target: float = 0.95
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


def _median_seconds(fn: Callable[[np.ndarray], Any], histories: Sequence[np.ndarray]) -> float:
    fn(histories[0])  # warm-up (tracing, allocation)
    times = []
    for h in histories:
        t = time.perf_counter()
        fn(h)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def paired_median_seconds(a: Callable[[np.ndarray], Any], b: Callable[[np.ndarray], Any],
                          histories: Sequence[np.ndarray]) -> Tuple[float, float]:
    """Median seconds of ``a`` and of ``b`` on the same histories, in one run: all of ``a``, then all of ``b``.
    (Not interleaved: TensorFlow's thread pool keeps spinning after a call and would slow whatever runs
    next, which a device without TensorFlow never sees.)"""
    return _median_seconds(a, histories), _median_seconds(b, histories)


def _subset(eval_set: EvalSet, n: int) -> List[np.ndarray]:
    return eval_set.histories[:n]


def train_candidates(teacher: Teacher, split: Split, table: np.ndarray, config: ConvertConfig,
                     log: Callable[[str], None]) -> List[Dict[str, Any]]:
    """Distil and convert every candidate architecture; measure each on the validation split."""
    rep = split.valid.histories[-config.representative_cases:]
    parity = _subset(split.valid, config.parity_cases)
    n_items = table.shape[0]
    candidates = []
    for arch in config.architectures:
        cfg = replace(config.student, architecture=arch)
        log(f"  student {arch}: distilling ({cfg.epochs} epochs)")
        student, dlog = distill(teacher, split, table, cfg, log=log)
        int8 = quantize_student(student, cfg, table, rep, parity)
        runner = StudentModel(int8.tflite, int8.spec)
        int8_valid = evaluate(Int8Scorer(runner, table), split.valid, n_items, ks=(10,))
        hist = _subset(split.valid, config.latency_queries)
        candidates.append({
            "architecture": arch, "config": asdict(cfg), "student": student, "int8": int8,
            "valid_fp32": dlog.best_valid, "valid_int8": int8_valid, "parity": int8.parity,
            "tflite_bytes": len(int8.tflite), "distill_minutes": dlog.seconds / 60, "distill_epochs": dlog.epochs,
            "latency_ms": 1e3 * _median_seconds(lambda h: runner.query(table[h]), hist),
            "float_ops": int8.spec.float_ops, "edgetpu_blockers": int8.report.edgetpu_blockers})
        log(f"  student {arch}: valid NDCG@10 fp32 {dlog.best_valid['NDCG@10']:.4f}, int8 {int8_valid['NDCG@10']:.4f}, "
            f"{len(int8.tflite) / 1024:.1f} KiB, {candidates[-1]['latency_ms']:.3f} ms, parity cos "
            f"{int8.parity['cosine_mean']:.4f}")
    return candidates


def choose(candidates: List[Dict[str, Any]]) -> Tuple[Dict[str, Any], str]:
    """Best int8 validation NDCG@10; within 1% of the best, prefer Edge TPU compatible, then faster."""
    best = max(c["valid_int8"]["NDCG@10"] for c in candidates)
    close = [c for c in candidates if c["valid_int8"]["NDCG@10"] >= 0.99 * best]
    pick = min(close, key=lambda c: (bool(c["edgetpu_blockers"]), c["latency_ms"], c["tflite_bytes"]))
    why = (f"{pick['architecture']}: int8 validation NDCG@10 {pick['valid_int8']['NDCG@10']:.4f} "
           f"(best of all candidates {best:.4f}; within 1% the rule prefers Edge TPU compatible, then faster, then smaller); "
           f"{pick['tflite_bytes'] / 1024:.1f} KiB, {pick['latency_ms']:.3f} ms per query")
    return pick, why


def convert(dataset: Dataset, split: Split, teacher: Teacher, out: Union[str, Path], private_key: Union[str, Path],
            config: Optional[ConvertConfig] = None, log: Callable[[str], None] = say, text_encoder=None,
            search_model_out: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """Build the bundle at ``out`` and return the conversion report (metrics, sizes, latencies, curves).
    With ``config.search``, the bundle gets on-device search (``text_encoder``: the language model) and
    the publisher's search model is saved at ``search_model_out``."""
    c = config or ConvertConfig()
    t0 = time.time()
    n_items = dataset.n_items
    steps = 6 if c.search else 5
    log(f"[1/{steps}] item table: teacher item vectors -> int8 rows")
    q, scales = quantize_rows(teacher.item_vectors())
    table = dequantize_rows(q, scales)

    log(f"[2/{steps}] students: {', '.join(c.architectures)}")
    candidates = train_candidates(teacher, split, table, c, log)
    pick, why = choose(candidates)
    log(f"  chosen: {why}")

    log(f"[3/{steps}] HNSW index: recall@10 against exact search over M x ef")
    runner = StudentModel(pick["int8"].tflite, pick["int8"].spec)
    queries = Int8Scorer(runner, table).queries(_subset(split.valid, 2000))
    index = tune_index(table, queries, target=c.recall_target)
    log(f"  M={index.M}, ef_search={index.ef_search}: recall@10 {index.recall:.4f}, {index.bytes_per_item:.0f} B/item on disk")

    search, search_part, blend_report = None, None, {}
    if c.search is not None:
        log(f"[4/{steps}] on-device search: tokenizer, query encoder distilled from the language model, search index")
        if text_encoder is None:
            from .text import TextEncoder
            text_encoder = TextEncoder()
        search = build_search(dataset, text_encoder, c.search, log)
        search_part = _search_part(search, c.recall_target)
        log(f"  search index: M={search_part.index.M}, ef_search={search_part.index.ef_search}, recall@10 "
            f"{search_part.index.recall:.4f}")
        if search_model_out is not None:
            SearchModel(search.space).save(search_model_out)

    def tune_search(rec: EdgeRecommender, manifest) -> None:
        """Choose the title-matching weight, then the personalisation blend, through the runtime."""
        if manifest.search is None or search is None:
            return
        rows = {it.id: r for r, it in enumerate(dataset.items)}
        pick = np.sort(np.random.default_rng(c.search.seed).choice(
            len(search.valid_queries), min(len(search.valid_queries), c.search.tuning_queries), replace=False))

        def top(text: str, weight: float) -> List[int]:
            manifest.search.title_weight = weight
            return [rows[r.item_id] for r in rec.search(text, k=10, personalize=False)]
        manifest.search.title_weight, blend_report["title_weight"] = choose_title_weight(
            top, [search.valid_queries[i] for i in pick], dataset.items, search.valid_anchor_top[pick])
        log(f"  search: title weight {manifest.search.title_weight} (validation: "
            + ", ".join(f"{k} {v:.3f}" for k, v in blend_report["title_weight"]["by_weight"][
                str(manifest.search.title_weight)].items() if v is not None) + ")")
        histories = [[dataset.items[i].id for i in h] for h in split.valid.histories[:2000] if len(h)]
        weight, blend_report["choice"] = choose_blend(
            lambda text, hist, w: [r.item_id for r in rec.search(text, k=5, history=hist or [], personalize=w)],
            search.valid_queries[:300], histories)
        manifest.search.blend = weight

    log(f"[{steps - 1}/{steps}] bundle: files, golden cases, signature")
    counts = np.bincount(np.concatenate(split.train), minlength=n_items)
    popularity = np.argsort(-counts, kind="stable")[:c.popularity_list]
    metadata = [{"title": it.title, "year": it.year, "genres": list(it.genres), **dict(it.extra)} for it in dataset.items]
    golden = [np.asarray(h[-200:], dtype=np.int64) for h in split.test.histories[:c.golden_cases - 1]] + [np.zeros(0, np.int64)]
    info = {"dataset": dataset.name, "student": pick["architecture"], "choice": why}
    if search is not None:
        info["search"] = {"query_format": search.report["query_format"], "heldout": c.search.heldout,
                          "validation": c.search.validation, "seed": c.search.seed, "chosen": search.report["chosen"]}
    manifest = write_bundle(out, pick["int8"], [it.id for it in dataset.items], teacher.item_vectors(), metadata,
                            popularity, index, golden, private_key, info=info, search=search_part,
                            before_signing=tune_search)
    log(f"[{steps}/{steps}] evaluation on the test split (teacher, fp32 student, int8 student through the index)")
    rec = EdgeRecommender.open(out, _public_key_of(private_key))
    golden_check = rec.check_golden()
    test = split.test
    fp32 = StudentScorer(pick["student"], table, pick["config"]["history_len"])
    results = {
        "popularity": evaluate(PopularityScorer(split.train, n_items), test, n_items),
        "teacher": evaluate(teacher, test, n_items, desc="teacher"),
        "student fp32": evaluate(fp32, test, n_items, desc="fp32 student"),
        "student int8 + HNSW (bundle)": evaluate_lists(lambda h: rec.recommend_rows(np.asarray(h, np.int64), 20)[0],
                                                       test, n_items, desc="bundle"),
    }
    teacher_top = exclude_seen_topk(teacher.scores(test.histories), test.histories, 10)
    bundle_top = np.stack([rec.recommend_rows(np.asarray(h, np.int64), 10)[0] for h in test.histories])
    fp32_top = exclude_seen_topk(fp32(test.histories), test.histories, 10)
    overlap = {"student fp32": topk_overlap(fp32_top, teacher_top), "student int8 + HNSW (bundle)": topk_overlap(bundle_top, teacher_top)}

    hist = _subset(test, c.latency_queries)
    item_vectors = teacher.item_vectors()  # a server precomputes these: not part of the per-query cost
    teacher_ms, student_ms = (1e3 * t for t in paired_median_seconds(
        lambda h: np.argpartition(-(item_vectors @ teacher.user_vectors([h])[0]), 10)[:10],
        lambda h: rec.recommend_rows(np.asarray(h, np.int64), 10), hist))
    report = {
        "dataset": dataset.summary(), "bundle": str(out), "bundle_version": manifest.bundle_version,
        "test": results, "top10_overlap_with_teacher": overlap,
        "ndcg_ratio_bundle_vs_teacher": results["student int8 + HNSW (bundle)"]["NDCG@10"] / results["teacher"]["NDCG@10"],
        "latency_ms": {"teacher (compiled user vector + exact scoring)": teacher_ms, "student (TFLite + HNSW top-10)": student_ms,
                       "speedup": teacher_ms / student_ms},
        "sizes": {"tflite_bytes": len(pick["int8"].tflite), "files": {k: v.size for k, v in manifest.files.items()},
                  "index_bytes_per_item": manifest.files[manifest.index.file].size / n_items,
                  "item_table_bytes_per_item": (manifest.files[manifest.items.vectors].size + manifest.files[manifest.items.scales].size) / n_items},
        "index": asdict(index), "golden": asdict(golden_check) | {"passed": golden_check.passed},
        "students": [{k: v for k, v in cand.items() if k not in ("student", "int8")} for cand in candidates],
        "chosen": why, "ops": manifest.model.ops, "float_ops": manifest.model.float_ops,
        "edgetpu_compatible": manifest.model.edgetpu_compatible, "edgetpu_blockers": pick["edgetpu_blockers"],
    }
    if search is not None:
        report["search"] = measure_search(rec, search, dataset, split, c, blend_report)
    report["minutes"] = (time.time() - t0) / 60
    report["machine"] = machine_record(out)
    rec.close()
    return report


def _search_part(search: SearchBuild, recall_target: float) -> SearchPart:
    """The bundle's search files, with the search index tuned by recall on validation queries."""
    q, scales = quantize_rows(search.item_vectors)
    index = tune_index(dequantize_rows(q, scales), search.valid_vectors, target=recall_target)
    return SearchPart(search.tokenizer, search.encoder.tflite, search.encoder.spec, search.features,
                      search.item_vectors, index, 0.0, search.golden_queries, search.golden_searches)


def measure_search(rec: EdgeRecommender, search: SearchBuild, dataset: Dataset, split: Split, c: ConvertConfig,
                   blend: Dict[str, Any]) -> Dict[str, Any]:
    """The bundle's search, through the runtime, on held-out items' queries (a seeded sample of at most
    ``c.search_eval_queries``), plus the training-time measurements and the files' sizes."""
    n = len(search.eval_queries)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, c.search_eval_queries), replace=False))
    histories = [[dataset.items[i].id for i in h] for h in split.test.histories if len(h)]
    measured = device_search(rec, [search.eval_queries[i] for i in sample], search.anchor_top[sample], dataset.items,
                             histories)
    measured["personalisation"]["choice"] = blend.get("choice")
    measured["title_matching"] = {**(blend.get("title_weight") or {}), "weight": rec.bundle.manifest.search.title_weight}
    m = rec.bundle.manifest
    files = {name: m.files[name].size for name in (m.search.tokenizer, m.search.encoder.file, m.search.vectors,
                                                     m.search.scales, m.search.index.file)}
    return {**search.report, **measured, "files": files,
            "tokenizer_and_encoder_bytes": files[m.search.tokenizer] + files[m.search.encoder.file],
            "index": {"M": m.search.index.M, "ef_search": m.search.index.ef_search, "dim": m.search.dim}}


def _public_key_of(private_key: Union[str, Path]):
    from edge_rec.signing import load_private_key
    return load_private_key(private_key).public_key()
