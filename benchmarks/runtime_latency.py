"""Benchmark the device runtime: import + open time, recommend() and search() latency end to end (history
read from SQLite, int8 models, HNSW retrieval, re-scoring, filters, metadata), one thread, on a real
bundle and on the same bundle grown to 100k items. Writes results/runtime_latency.json and .png.

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


TUNING_USERS = 4000  # histories that tune a grown index: half measure its recall, half fit its projection


def real_histories(data, n: int, tuning: int = 0) -> "tuple[list, list, object]":
    """Item-id histories (oldest first, at most MAX_EVENTS) of ``n`` ML-1M users spread over the user list,
    up to ``tuning`` other users' histories (to tune a grown bundle's index), and the data set."""
    from converter.data import leave_one_out, load_movielens_1m
    dataset = load_movielens_1m(data)
    split = leave_one_out(dataset)
    ids = [item.id for item in dataset.items]
    users = np.linspace(0, len(split.test.histories) - 1, n).astype(int)
    others = np.setdiff1d(np.arange(len(split.test.histories)), users)
    others = others[np.linspace(0, len(others) - 1, min(tuning, len(others))).astype(int)]

    def history(u: int) -> list:
        return [ids[i] for i in split.test.histories[u][-MAX_EVENTS:]]
    return [history(u) for u in users], [history(u) for u in others], dataset


def search_queries(dataset, bundle: Path, n: int) -> list:
    """Generated queries of the bundle's held-out items (as `edge-rec eval` makes them), a seeded sample."""
    from converter.search.build import SearchConfig, heldout_queries
    from edge_rec.bundle import read_manifest
    info = read_manifest(bundle).info.get("search") or {}
    config = SearchConfig(**{k: info[k] for k in ("heldout", "validation", "seed") if k in info})
    queries = [q.text for q in heldout_queries(dataset, config)]
    return [queries[i] for i in np.random.default_rng(0).choice(len(queries), min(n, len(queries)), replace=False)]


def history_stores(directory: Path, histories) -> list:
    """One SQLite HistoryStore per user in ``directory``, holding that user's history (oldest first)."""
    from edge_rec.history import HistoryStore
    stores = []
    for u, hist in enumerate(histories):
        store = HistoryStore(Path(directory) / f"u{u}.db")
        for t, item in enumerate(hist):
            store.record(item, ts=float(t))
        stores.append(store)
    return stores


def latency(bundle: Path, pub: Path, histories, call) -> dict:
    """Per-call latency of ``call(rec, i)``, the device history of user ``i`` in a SQLite store."""
    from edge_rec.recommender import EdgeRecommender
    times = []
    with tempfile.TemporaryDirectory() as tmp, EdgeRecommender.open(bundle, pub, num_threads=1) as rec:
        stores = history_stores(Path(tmp), histories)
        for i, store in enumerate(stores[:20]):  # warm-up
            rec.history = store
            call(rec, i)
        for i, store in enumerate(stores):
            rec.history = store
            t = time.perf_counter()
            out = call(rec, i)
            times.append(time.perf_counter() - t)
            assert out is not None
        for store in stores:
            store.close()
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "queries": len(ms), "samples_ms": ms.round(4).tolist()}


CASES = {  # name -> call(rec, i, query)
    "recommend": lambda rec, i, q: rec.recommend(k=10),
    "recommend, genre filter": lambda rec, i, q: rec.recommend(k=10, filter={"genres": "Comedy"}),
    "search": lambda rec, i, q: rec.search(q, k=10, personalize=False),
    "search, personalised": lambda rec, i, q: rec.search(q, k=10),
    "search, personalised, genre filter": lambda rec, i, q: rec.search(q, k=10, filter={"genres": "Comedy"}),
}


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
    import matplotlib.ticker
    bundles = list(results["bundles"])
    fig, axes = plt.subplots(1, len(bundles), figsize=(6.5 * len(bundles), 4.6), sharey=True)
    top = 0.0
    for ax, b in zip(np.atleast_1d(axes), bundles):
        cases = [c for c in CASES if c in results["bundles"][b]]
        box = ax.boxplot([results["bundles"][b][c]["samples_ms"] for c in cases], showfliers=False, widths=0.45)
        top = max([top] + [float(max(w.get_ydata())) for w in box["whiskers"]])
        ax.set_xticks(range(1, len(cases) + 1), [c.replace(", ", ",\n") for c in cases], fontsize=8)
        for i, c in enumerate(cases, 1):  # beside the box, not over it
            ax.annotate(f"p50 {results['bundles'][b][c]['p50_ms']:.2f}", (i + 0.26, results["bundles"][b][c]["p50_ms"]),
                        fontsize=8, va="center", ha="left")
        ax.axhline(0.5, color="#c44e52", ls="--", lw=1, label="recommend p50 target 0.5 ms")
        ax.axhline(1.5, color="#4c72b0", ls=":", lw=1, label="search p50 target 1.5 ms")
        ax.set_title(b, fontsize=10)
        ax.set_xlim(0.5, len(cases) + 0.9)
    first = np.atleast_1d(axes)[0]
    first.set_yscale("log")  # sub-millisecond boxes and a filtered tail of tens of ms on one readable axis
    first.set_ylim(0.1, 1.3 * top)  # shared: the tallest whisker of either panel fits
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if t <= 1.3 * top]
    first.set_yticks(ticks, [f"{t:g}" for t in ticks])
    first.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    np.atleast_1d(axes)[0].set_ylabel("ms per call (k=10), 1 thread, log scale")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("edge-rec runtime: end-to-end latency (history from SQLite, metadata included)", fontsize=11)
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

    from converter.provenance import machine_record
    from edge_rec.bundle import read_manifest
    bundle, key = Path(args.bundle), Path(args.key)
    pub = key.with_suffix(".pub")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timed, tuning, dataset = real_histories(args.data, args.queries, TUNING_USERS)
    queries = search_queries(dataset, bundle, args.queries) if read_manifest(bundle).search else []
    results = {"machine": machine_record(bundle), "bundles": {},
               "histories": f"{len(timed)} real ML-1M users' test-time histories (up to {MAX_EVENTS} recent events each), "
                            f"{len(tuning)} other users' histories to tune the grown index",
               "search_queries": f"{len(queries)} generated queries of the bundle's held-out items (converter.search.queries)"}
    with tempfile.TemporaryDirectory() as tmp:
        grown = Path(tmp) / "grown"
        t = time.time()
        choice = grow_bundle(bundle, grown, key, args.items, tuning, search_texts=queries)
        grown_manifest = read_manifest(grown)
        results["grown_bundle"] = {"items": args.items, "index_M": choice.M, "index_form": choice.form,
                                   "ef_search": choice.ef_search,
                                   "recall@10": choice.recall, "build_s": time.time() - t,
                                   "search_index": None if grown_manifest.search is None else {
                                       "M": grown_manifest.search.index.M, "ef_search": grown_manifest.search.index.ef_search},
                                   "how": "real item vectors + Gaussian noise with 0.25x the real covariance, rescaled to "
                                          "the base item's norm (benchmarks/synthetic.py)"}
        for name, path in ((f"{read_manifest(bundle).items.count} items (real)", bundle), (f"{args.items} items (grown)", grown)):
            r = {"files_mb": sum(f.stat().st_size for f in path.iterdir()) / 1e6}
            r["import+open"] = import_and_open(path, pub, args.open_runs)
            for case, call in CASES.items():
                if case.startswith("search") and not queries:
                    continue
                r[case] = latency(path, pub, timed[:args.queries], lambda rec, i: call(rec, i, queries[i % len(queries)]
                                                                                       if queries else None))
                print(f"{name}: {case} p50 {r[case]['p50_ms']:.3f} ms (p99 {r[case]['p99_ms']:.3f})", flush=True)
            results["bundles"][name] = r
            print(f"{name}: import+open {r['import+open']['import_open_s']:.3f} s", flush=True)
        if not args.skip_venv:
            results["runtime_env"] = runtime_env_size(Path(tmp))
            print(f"runtime-only environment: {results['runtime_env']}")
    (out / "runtime_latency.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "runtime_latency.png")
    print(f"written: {out / 'runtime_latency.json'}, {out / 'runtime_latency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
