"""Benchmark the device runtime: import + open time and recommend() latency end to end (history read from
SQLite, int8 model, HNSW retrieval, re-scoring, metadata), one thread, on a real bundle and on the same
bundle grown to 100k items. Writes results/runtime_latency.json and .png.

    python benchmarks/runtime_latency.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

OPEN_SNIPPET = """
import time, sys
t0 = time.perf_counter()
from edge_rec.recommender import EdgeRecommender
t1 = time.perf_counter()
rec = EdgeRecommender.open(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def import_and_open(bundle: Path, pub: Path, runs: int) -> dict:
    """Median seconds to import edge_rec and open (verify + load) the bundle, in fresh processes."""
    imports, opens = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", OPEN_SNIPPET, str(bundle), str(pub)], capture_output=True,
                             text=True, check=True).stdout.split()
        imports.append(float(out[-2]))
        opens.append(float(out[-1]))
    total = np.array(imports) + np.array(opens)
    return {"import_s": float(np.median(imports)), "open_s": float(np.median(opens)), "import_open_s": float(np.median(total)),
            "runs": runs}


MAX_EVENTS = 200


def real_histories(data, n: int) -> list:
    """Item-id histories (oldest first, at most MAX_EVENTS) of ``n`` ML-1M users spread over the user list."""
    from converter.data import leave_one_out, load_movielens_1m
    dataset = load_movielens_1m(data)
    split = leave_one_out(dataset)
    ids = [item.id for item in dataset.items]
    users = np.linspace(0, len(split.test.histories) - 1, n).astype(int)
    return [[ids[i] for i in split.test.histories[u][-MAX_EVENTS:]] for u in users]


def recommend_latency(bundle: Path, pub: Path, histories, queries: int, filt=None) -> dict:
    """Per-call latency of recommend(k=10) reading each user's history from a SQLite store."""
    from edge_rec.history import HistoryStore
    from edge_rec.recommender import EdgeRecommender
    rec = EdgeRecommender.open(bundle, pub, num_threads=1)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = []
        for u, hist in enumerate(histories[:queries]):
            store = HistoryStore(Path(tmp) / f"u{u}.db")
            for t, item in enumerate(hist):
                store.record(item, ts=float(t))
            stores.append(store)
        for store in stores[:20]:  # warm-up
            rec.history = store
            rec.recommend(k=10, filter=filt)
        for store in stores:
            rec.history = store
            t = time.perf_counter()
            out = rec.recommend(k=10, filter=filt)
            times.append(time.perf_counter() - t)
            assert out and out[0].metadata is not None
        for store in stores:
            store.close()
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "queries": len(ms), "samples_ms": ms.round(4).tolist()}


def runtime_env_size(workdir: Path) -> dict:
    """Install the project without extras into a fresh venv and measure it."""
    venv = workdir / "runtime-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, HNSWLIB_NO_NATIVE="1")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(HERE.parent)], check=True, env=env)
    site = next((venv / "lib").glob("python3*/site-packages"))

    def mb(p: Path) -> float:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
    packages = {d.name: round(mb(d), 2) for d in site.iterdir() if d.is_dir() and not d.name.endswith("-info")}
    return {"venv_mb": round(mb(venv), 1), "site_packages_mb": round(mb(site), 1),
            "edge_rec_package_mb": packages.get("edge_rec"), "largest": dict(sorted(packages.items(), key=lambda kv: -kv[1])[:6])}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cases = [(b, c) for b in results["bundles"] for c in ("no filter", "genre filter")]
    fig, ax = plt.subplots(figsize=(8, 4))
    data = [results["bundles"][b][c]["samples_ms"] for b, c in cases]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(cases) + 1), [f"{b}\n{c}" for b, c in cases], fontsize=8)
    ax.axhline(0.5, color="red", ls="--", lw=1, label="target p50 0.5 ms")
    for i, (b, c) in enumerate(cases, 1):
        ax.text(i, results["bundles"][b][c]["p50_ms"], f" p50 {results['bundles'][b][c]['p50_ms']:.3f}", fontsize=8)
    ax.set_ylabel("recommend(k=10) ms, 1 thread")
    ax.set_title("edge-rec runtime: end-to-end recommend() latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, help="private key (to sign the grown bundle); its .pub is used to verify")
    p.add_argument("--items", type=int, default=100_000, help="catalog size of the grown bundle")
    p.add_argument("--data", help="MovieLens-1M folder for real user histories (default: the usual places)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--open-runs", type=int, default=7)
    p.add_argument("--skip-venv", action="store_true", help="do not measure a fresh runtime-only venv")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    from synthetic import grow_bundle

    from edge_rec.bundle import read_manifest
    bundle, key = Path(args.bundle), Path(args.key)
    pub = key.with_suffix(".pub")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    histories = real_histories(args.data, 2 * args.queries)
    tuning, timed = histories[:args.queries], histories[args.queries:]
    results = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}, "bundles": {},
               "histories": f"{len(timed)} real ML-1M users' test-time histories (up to {MAX_EVENTS} recent events each), "
                            f"{len(tuning)} other users' histories to tune the grown index"}
    with tempfile.TemporaryDirectory() as tmp:
        grown = Path(tmp) / "grown"
        t = time.time()
        choice = grow_bundle(bundle, grown, key, args.items, tuning)
        results["grown_bundle"] = {"items": args.items, "index_M": choice.M, "ef_search": choice.ef_search,
                                   "recall@10": choice.recall, "build_s": time.time() - t,
                                   "how": "real item vectors + Gaussian noise with 0.25x the real covariance, rescaled to "
                                          "the base item's norm (benchmarks/synthetic.py)"}
        for name, path in ((f"{read_manifest(bundle).items.count} items (real)", bundle), (f"{args.items} items (grown)", grown)):
            r = {"files_mb": sum(f.stat().st_size for f in path.iterdir()) / 1e6}
            r["import+open"] = import_and_open(path, pub, args.open_runs)
            r["no filter"] = recommend_latency(path, pub, timed, args.queries)
            r["genre filter"] = recommend_latency(path, pub, timed, args.queries, {"genres": "Comedy"})
            results["bundles"][name] = r
            print(f"{name}: import+open {r['import+open']['import_open_s']:.3f} s, recommend p50 "
                  f"{r['no filter']['p50_ms']:.3f} ms (p99 {r['no filter']['p99_ms']:.3f}), with genre filter p50 "
                  f"{r['genre filter']['p50_ms']:.3f} ms", flush=True)
        if not args.skip_venv:
            results["runtime_env"] = runtime_env_size(Path(tmp))
            print(f"runtime-only environment: {results['runtime_env']}")
    (out / "runtime_latency.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "runtime_latency.png")
    print(f"written: {out / 'runtime_latency.json'}, {out / 'runtime_latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
