"""Measure a conversion on the test split: teacher, fp32 student and the bundle through the runtime, each
by the same evaluation code, plus speed, sizes and search (the conversion report)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np

from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender

from .conversion_report import ConversionReport, Latency, Quality, SearchReport, Sizes, TestResults
from .convert import Conversion, ConvertConfig
from .data import Dataset, EvalSet, Split
from .distill import StudentScorer
from .evaluate import DEFAULT_KS, PopularityScorer, evaluate, evaluate_lists, evaluate_with_lists, topk_overlap
from .progress import say
from .provenance import machine_record
from .search.evaluate import device_search
from .teacher import Teacher
from .timing import paired_median_seconds


def measure(
    conversion: Conversion,
    dataset: Dataset,
    split: Split,
    teacher: Teacher,
    private_key: Union[str, Path],
    config: ConvertConfig,
    log: Callable[[str], None] = say,
) -> ConversionReport:
    """Open the bundle as a device does (verified with the public half of ``private_key``) and measure it."""
    log("evaluation on the test split (teacher, fp32 student, int8 student through the index)")
    n_items, test, m = dataset.n_items, split.test, conversion.manifest
    chosen = conversion.chosen
    with EdgeRecommender.open(conversion.bundle, _public_key_of(private_key)) as rec:
        golden = rec.check_golden()
        table = dequantize_rows(*quantize_rows(teacher.item_vectors()))  # the item table the student was distilled on
        fp32 = StudentScorer(chosen.student, table, chosen.config.history_len)
        # top lists under the split's protocol, which the bundle records (manifest.seen_items)
        teacher_metrics, teacher_top = evaluate_with_lists(teacher, test, n_items, desc="teacher")
        fp32_metrics, fp32_top = evaluate_with_lists(fp32, test, n_items, desc="fp32 student")
        teacher_top = teacher_top[:, :10]
        bundle_quality, bundle_top = device_quality(rec, test, n_items)
        results = TestResults(
            popularity=Quality(evaluate(PopularityScorer(split.train, n_items), test, n_items)),
            teacher=Quality(teacher_metrics),
            student_fp32=Quality(fp32_metrics, topk_overlap(fp32_top[:, :10], teacher_top)),
            bundle=Quality(bundle_quality, topk_overlap(bundle_top, teacher_top)),
            seen_items=split.seen_items,
            repeat_share=split.repeat_share,
        )
        hist = test.histories[: config.latency_queries]
        item_vectors = teacher.item_vectors()  # a server precomputes these: not part of the per-query cost
        teacher_s, device_s = paired_median_seconds(
            lambda h: np.argpartition(-(item_vectors @ teacher.user_vectors([h])[0]), 10)[:10],
            lambda h: rec.recommend_rows(np.asarray(h, np.int64), 10),
            hist,
        )
        search = None
        if conversion.search is not None:
            search = _measure_search(rec, conversion, dataset, split, config)
    return ConversionReport(
        dataset=dataset.summary(),
        bundle=str(conversion.bundle),
        bundle_version=m.bundle_version,
        test=results,
        latency=Latency(1e3 * teacher_s, 1e3 * device_s, len(hist)),
        sizes=Sizes(
            tflite_bytes=len(chosen.int8.tflite),
            files={k: v.size for k, v in m.files.items()},
            index_bytes_per_item=(m.files[m.index.file].size
                                  + (m.files[m.index.projection].size if m.index.projection else 0)) / n_items,
            item_table_bytes_per_item=(m.files[m.items.vectors].size + m.files[m.items.scales].size) / n_items,
        ),
        index=conversion.index,
        golden=golden,
        students=[c.result for c in conversion.candidates],
        chosen=conversion.choice,
        ops=m.model.ops,
        float_ops=m.model.float_ops,
        edgetpu_compatible=m.model.edgetpu_compatible,
        edgetpu_blockers=chosen.result.edgetpu_blockers,
        search=search,
        minutes=conversion.minutes,
        machine=machine_record(conversion.bundle),
    )


def device_quality(rec: EdgeRecommender, test: EvalSet, n_items: int, ks: Sequence[int] = DEFAULT_KS
                   ) -> Tuple[Dict[str, float], np.ndarray]:
    """The bundle's metrics as a device gets them: for each k, ``recommend(k, history)`` through the public
    API and its metrics @k from that list (a device asking for 10 gets the index's k = 10 search, not the
    first 10 of a wider one); MRR is the widest list's. Also returns the (users, 10) top-10 rows."""
    ids = list(rec.items.ids)  # decoded once: every history is mapped back to ids
    row = {item_id: r for r, item_id in enumerate(ids)}
    lists: Dict[int, List[np.ndarray]] = {k: [] for k in ks}
    out: Dict[str, float] = {}
    for k in sorted(ks):
        def ask(h: np.ndarray, k: int = k) -> np.ndarray:
            got = np.asarray([row[r.item_id] for r in rec.recommend(k, [ids[i] for i in h], test.exclude_seen)], np.int64)
            lists[k].append(got)
            return got
        out.update(evaluate_lists(ask, test, n_items, ks=(k,), desc=f"bundle, k = {k}"))
    top10 = np.full((len(test.histories), 10), -1, np.int64)
    for i, got in enumerate(lists.get(10, [])):
        top10[i, :len(got)] = got[:10]
    return out, top10


def _measure_search(
    rec: EdgeRecommender, conversion: Conversion, dataset: Dataset, split: Split, c: ConvertConfig
) -> SearchReport:
    """The bundle's search, through the runtime, on held-out items' queries (a seeded sample of at most
    ``c.search_eval_queries``), plus the training-time measurements and the files' sizes."""
    search = conversion.search
    n = len(search.eval_queries)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, c.search_eval_queries), replace=False))
    histories = [[dataset.items[i].id for i in h] for h in split.test.histories if len(h)]
    measured = device_search(rec, [search.eval_queries[i] for i in sample], search.anchor_top[sample], dataset.items, histories)
    measured["personalisation"]["choice"] = conversion.search_tuning.get("blend")
    m = rec.bundle.manifest
    files = {
        name: m.files[name].size
        for name in (m.search.tokenizer, m.search.encoder.file, m.search.vectors, m.search.scales, m.search.index.file)
    }
    return SearchReport(
        **search.report,
        **measured,
        files=files,
        title_matching={**(conversion.search_tuning.get("title_weight") or {}), "weight": m.search.title_weight},
        facet_matching={**(conversion.search_tuning.get("facet_weight") or {}), "weight": m.search.facet_weight},
        tokenizer_and_encoder_bytes=files[m.search.tokenizer] + files[m.search.encoder.file],
        index={"M": m.search.index.M, "ef_search": m.search.index.ef_search, "dim": m.search.dim},
    )


def _public_key_of(private_key: Union[str, Path]):
    from edge_rec.signing import load_private_key

    return load_private_key(private_key).public_key()
