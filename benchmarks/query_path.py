"""Where recommend() spends its time at 100k items, against its floor measured in the same run.

The floor is what no runtime can avoid: the student's invoke on the history's item vectors plus one
raw hnswlib query (k=10) at the bundle's ef_search (with the compact store: the query's projection, a
raw query for its re-rank candidates and their exact re-score, the store's own minimum). recommend() adds reading the history from SQLite,
mapping ids to rows, dequantizing, excluding seen items, re-scoring and metadata. Each user's first
request (history read from SQLite) is timed, then the steady state: the user taps an item (recorded,
untimed) and the list refreshes, three taps per user; floor and recommend() run interleaved so noise hits them alike, and a
cProfile pass splits recommend() into stages. Writes results/query_path.json (and, with --compare FILE
from an earlier run, a before/after plot).

    python benchmarks/query_path.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
TAPS = 3  # steady-state requests per user (each after one more tap): 3 x 300 users keep the p50 steady

# stage -> (file part, function name or "*"); file "~" is a built-in, matched by a part of its name
STAGES = {
    "history (SQLite)": [("history.py", "*"), ("~", "sqlite3")],
    "student invoke": [("~", "Invoke"), ("interpreter.py", "invoke")],
    "hnswlib query": [("~", "knn_query")],
    "metadata (JSON lines)": [("items.py", "metadata"), ("items.py", "metadata_rows"), ("items.py", "_read"),
                              ("~", "posix.pread"), ("~", "'decode' of 'bytes'"), ("~", "scanner"), ("json", "*"),
                              ("decoder.py", "*")],
}


def stage_of(file: str, name: str) -> str:
    for stage, patterns in STAGES.items():
        for part, fn in patterns:
            if (part == "~" and file == "~" and fn in name) or \
               (part != "~" and part in file and (fn == "*" or name == fn)):
                return stage
    return "python glue (ids, arrays, exclusion, results)"


def profile_stages(run, n: int) -> Dict[str, float]:
    """Milliseconds per call in each stage (own time of the functions, cProfile)."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        run(i)
    prof.disable()
    out: Dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        stage = stage_of(file, name)
        out[stage] = out.get(stage, 0.0) + 1e3 * tottime / n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def measure(bundle: Path, pub: Path, histories: List[List[str]]) -> dict:
    """Interleaved timings of recommend() (history from SQLite) and of its floor, plus the stage profile."""
    from runtime_latency import history_stores

    from edge_rec.recommender import EdgeRecommender
    with tempfile.TemporaryDirectory() as tmp, EdgeRecommender.open(bundle, pub, num_threads=1) as rec:
        stores = history_stores(Path(tmp), histories)
        vectors = [rec.items.dequantized(rec.items.rows(h, strict=False)[-rec.history_len:]) for h in histories]
        raw, ef = rec.index._index, rec.index.spec.ef_search
        projection, fetch = rec.index.projection, max(10, rec.index.spec.rerank)

        def floor(i: int) -> None:  # the model and the store: with the compact store, its projection and re-rank too
            q = rec.model.query(vectors[i])
            raw.set_ef(max(ef, fetch))
            labels, dist = raw.knn_query((q if projection is None else q @ projection).reshape(1, -1), k=fetch)
            if projection is not None:  # the exact re-rank (a residual store's graph part is the search's products)
                rec.items.vectors.scores(labels[0].astype(np.int64), q, 1.0 - dist[0])

        def full(i: int) -> None:
            rec.history = stores[i]
            rec.recommend(k=10)

        def timed(call, i: int) -> float:
            t = time.perf_counter()
            call(i)
            return time.perf_counter() - t
        t_cold, t_floor, t_full = [], [], []
        for i in range(len(stores)):  # each user's first request: the history is read from SQLite
            t_cold.append(timed(full, i))
            floor(i)
        for tap in range(TAPS):  # then the steady state: each user taps an item, the list refreshes
            for i in range(len(stores)):
                stores[i].record(histories[i][tap % len(histories[i])], ts=1e9 + tap)
                t_floor.append(timed(floor, i))
                t_full.append(timed(full, i))
        for i in range(len(stores)):
            stores[i].record(histories[i][TAPS % len(histories[i])], ts=2e9)
        stages = profile_stages(full, len(stores))
        for store in stores:
            store.close()
    f, r = 1e3 * np.median(t_floor), 1e3 * np.median(t_full)
    return {"floor_p50_ms": float(f), "recommend_p50_ms": float(r), "ratio": float(r / f),
            "first_request_p50_ms": float(1e3 * np.median(t_cold)),
            "recommend_p99_ms": float(1e3 * np.percentile(t_full, 99)), "floor_p99_ms": float(1e3 * np.percentile(t_floor, 99)),
            "queries": len(t_full), "ef_search": int(ef), "stages_ms_profiled": stages}


def plot(now: dict, before: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [("before", before), ("after", now)] if before else [("this run", now)]
    stages = sorted({s for _, r in runs for s in r["stages_ms_profiled"]})
    fig, ax = plt.subplots(figsize=(9, 3.2 + 0.4 * len(runs)))
    colors = plt.get_cmap("tab10").colors
    for y, (label, r) in enumerate(runs):
        left = 0.0
        for j, s in enumerate(stages):
            w = r["stages_ms_profiled"].get(s, 0.0)
            ax.barh(y, w, left=left, color=colors[j % 10], label=s if y == 0 else None)
            left += w
        ax.annotate(f"recommend p50 {r['recommend_p50_ms']:.3f} ms = {r['ratio']:.2f} x floor ({r['floor_p50_ms']:.3f} ms)",
                    (left, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([label for label, _ in runs])
    ax.set_xlabel("ms per recommend() under cProfile (own time per stage; profiling inflates Python calls)")
    ax.set_xlim(0, 1.9 * max(sum(r["stages_ms_profiled"].values()) for _, r in runs))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3)
    ax.set_title("where recommend() spends its time at the grown catalog (one thread)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    from synthetic import add_grown_bundle_args, grown_bundle
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grown_bundle_args(p)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--compare", help="an earlier query_path.json: plotted as 'before'")
    p.add_argument("--out", default=str(HERE / "results" / "query_path.json"))
    args = p.parse_args()
    from runtime_latency import TUNING_USERS, real_histories

    from converter.provenance import machine_record
    key = Path(args.key)
    timed, tuning, _ = real_histories(args.data, args.queries, TUNING_USERS)
    with tempfile.TemporaryDirectory() as tmp:
        grown = grown_bundle(args, tmp, tuning)
        result = {"machine": machine_record(grown), "items": args.items, **measure(grown, key.with_suffix(".pub"), timed)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    plot(result, before, out.with_suffix(".png"))
    print(f"recommend p50 {result['recommend_p50_ms']:.3f} ms, floor {result['floor_p50_ms']:.3f} ms, "
          f"ratio {result['ratio']:.2f}; stages (profiled): "
          + ", ".join(f"{k} {v:.3f}" for k, v in result["stages_ms_profiled"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
