"""Measure a conversion on the test split: teacher, fp32 student and the bundle through the runtime, each
by the same evaluation code, plus speed, sizes and search (the conversion report)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np

from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender

from .conversion_report import ConversionReport, Latency, Quality, SearchReport, Sizes, TestResults
from .convert import Conversion, ConvertConfig
from .data import Dataset, Split
from .distill import StudentScorer, exclude_seen_topk, topk_overlap
from .evaluate import PopularityScorer, evaluate, evaluate_lists
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
        teacher_top = exclude_seen_topk(teacher.scores(test.histories), test.histories, 10)
        bundle_top = np.stack([rec.recommend_rows(np.asarray(h, np.int64), 10)[0] for h in test.histories])
        results = TestResults(
            popularity=Quality(evaluate(PopularityScorer(split.train, n_items), test, n_items)),
            teacher=Quality(evaluate(teacher, test, n_items, desc="teacher")),
            student_fp32=Quality(
                evaluate(fp32, test, n_items, desc="fp32 student"),
                topk_overlap(exclude_seen_topk(fp32(test.histories), test.histories, 10), teacher_top),
            ),
            bundle=Quality(
                evaluate_lists(lambda h: rec.recommend_rows(np.asarray(h, np.int64), 20)[0], test, n_items, desc="bundle"),
                topk_overlap(bundle_top, teacher_top),
            ),
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
            index_bytes_per_item=m.files[m.index.file].size / n_items,
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
        tokenizer_and_encoder_bytes=files[m.search.tokenizer] + files[m.search.encoder.file],
        index={"M": m.search.index.M, "ef_search": m.search.index.ef_search, "dim": m.search.dim},
    )


def _public_key_of(private_key: Union[str, Path]):
    from edge_rec.signing import load_private_key

    return load_private_key(private_key).public_key()
