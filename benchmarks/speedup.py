"""Teacher vs on-device student, per query, timed alternately on the same test histories (one run).

teacher: Keras call for the user vector + exact scoring of the catalog + top-10 (item vectors precomputed,
as a server would); student: the bundle's path on the runtime (int8 TFLite + HNSW top-10 + re-scoring).

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
    from converter.convert import paired_median_seconds
    from converter.data import leave_one_out, load_movielens_1m
    from converter.teacher import SASRecTeacher
    from edge_rec import EdgeRecommender

    split = leave_one_out(load_movielens_1m(args.data))
    teacher = SASRecTeacher.load(args.teacher)
    rec = EdgeRecommender.open(args.bundle, args.key)
    items = teacher.item_vectors()
    hist = [np.asarray(h, np.int64) for h in split.test.histories[:args.queries]]
    t, s = paired_median_seconds(lambda h: np.argpartition(-(items @ teacher.user_vectors([h])[0]), 10)[:10],
                                 lambda h: rec.recommend_rows(h, 10), hist)
    result = {"teacher_ms": t * 1e3, "student_ms": s * 1e3, "speedup": t / s, "queries": len(hist),
              "what": __doc__.splitlines()[2:4]}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"teacher {t * 1e3:.3f} ms, student {s * 1e3:.3f} ms per query (medians, {len(hist)} queries): "
          f"{t / s:.1f}x; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
