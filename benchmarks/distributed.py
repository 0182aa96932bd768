"""Item-text embedding and item-vector export on a Ray cluster against the local single-process path, on
the same catalog slice (ML-1M's items and variants of them, 20k by default). Writes results/distributed.json
and .png: texts per second for the local path and for Ray with 1 and 2 workers, and each worker's own
rate (texts per second of busy time), with the largest difference from the local path's vectors.

The cluster is local (a head node and worker nodes on this machine, :func:`converter.distributed.local_cluster`),
so it shows the job's overhead and per-worker rate, not scaling: on this 2-core machine the local path
already uses both cores. On a real cluster the rate grows with the workers (README: the distributed path).

    python benchmarks/distributed.py [--items 20000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--out", default=str(HERE / "results" / "distributed.json"))
    args = p.parse_args()
    from results_file import write_results
    from synthetic import catalog_texts

    from converter.distributed import RayTextEncoder, local_cluster
    from converter.provenance import machine_record
    from converter.teacher import TextHead
    from converter.text import TextEncoder
    from converter.workflow import load_dataset
    dataset = load_dataset(args.data)
    ids, texts = catalog_texts(dataset, args.items)
    rng = np.random.default_rng(0)
    head = TextHead(rng.normal(0, 0.05, (384, 64)).astype(np.float32), ids[:dataset.n_items],
                    rng.normal(0, 0.1, (dataset.n_items, 64)).astype(np.float32))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        local_text, local_items = TextEncoder(cache_dir=Path(tmp) / "local").place(ids, texts, head)
        runs.append({"path": "local (one process)", "workers": 1, "seconds": time.perf_counter() - t,
                     "texts_per_second": args.items / (time.perf_counter() - t), "per_worker": {}})
        for workers in (1, 2):
            with local_cluster(workers=workers) as address:
                enc = RayTextEncoder(address, workers=workers, cache_dir=Path(tmp) / f"ray{workers}")
                text, items = enc.place(ids, texts, head)
                s = enc.jobs[-1]
                runs.append({"path": f"Ray, {workers} worker{'s' if workers > 1 else ''}", "workers": workers,
                             "seconds": s.seconds, "texts_per_second": s.texts_per_second, "per_worker": s.per_worker(),
                             "max_abs_difference": {"text": float(np.abs(text - local_text).max()),
                                                    "item": float(np.abs(items - local_items).max())}})
            print(f"{runs[-1]['path']}: {s.texts_per_second:.0f} texts/s; per worker "
                  + ", ".join(f"{v:.0f}" for v in s.per_worker().values()))
    result = {"machine": machine_record(None), "what": __doc__.splitlines()[0], "items": args.items, "runs": runs}
    write_results(result, args.out, plot)
    return 0


def plot(result, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    y = np.arange(len(runs))
    ax.barh(y, [r["texts_per_second"] for r in runs], color="#4c72b0", label="whole job")
    for i, r in enumerate(runs):
        rates = list(r["per_worker"].values())
        ax.plot(rates, [i] * len(rates), "o", color="#dd8452", ms=7, label="one worker (busy time)" if i == 1 else None)
        ax.text(8, i, f"{r['texts_per_second']:.0f} texts/s", va="center", color="white", fontsize=9, fontweight="bold")
    ax.set_yticks(y, [r["path"] for r in runs])
    ax.invert_yaxis()
    ax.set_xlabel("item texts embedded and placed per second")
    ax.set_xlim(0, 1.1 * max(r["texts_per_second"] for r in runs))
    ax.set_title(f"{result['items']:,} item texts, {result['machine']['cores']} cores", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
