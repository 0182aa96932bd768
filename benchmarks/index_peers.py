"""Side by side: edge-rec's item store against other on-device ANN libraries, on the same vectors and queries.

The catalog is a real bundle's items grown to N synthetic items (benchmarks/synthetic.py); the vectors
are the shipped ones (the bundle's int8 table, dequantized); the queries are the student's query
vectors for real MovieLens-1M histories; the truth is exact inner-product top-10 over those vectors.
Each store answers one query at a time on one thread, at several search widths, and is measured for
recall@10, median query time and bytes per item on disk (what a device would ship and map):

- edge-rec (shipped): the grown bundle's own item store as the converter chose it and the runtime searches
  it (edge_rec.ItemIndex and the Retriever's exact re-scoring): since bundle format 6 usually the compact
  store (hnswlib M 8 over a projection onto a few query-aware directions, its candidates
  re-ranked with the int8 table, the only full-width copy); its files on disk;
- edge-rec plain graph (bundle format 5 and older): hnswlib M 8 over float32 vectors, plus the int8 table;
- hnswlib with its defaults (M 16, ef_construction 200), float32 vectors only;
- USearch with int8 vectors (connectivity 16; its int8 distance is a cosine, so inner product goes through
  the usual reduction to cosine with one extra coordinate); FAISS IndexHNSWSQ, 8-bit scalar quantizer, M 16.

USearch and FAISS are benchmark-only dependencies (`pip install -e ".[bench]"`), never in the runtime.
Writes results/index_peers.json and .png.

    python benchmarks/index_peers.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

K = 10
TABLE_BYTES_PER_ITEM_EXTRA = 4  # the int8 table's float32 scale per row


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f)) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def sweep(name: str, bytes_per_item: float, widths: Sequence[int], query: Callable[[np.ndarray, int], np.ndarray],
          queries: np.ndarray, truth: np.ndarray, note: str) -> Dict:
    """Recall@10 and median single-query time of ``query(q, width)`` at each search width."""
    points = []
    for width in widths:
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            found.append(query(q, width))
            times.append(time.perf_counter() - t)
        points.append({"width": int(width), "recall@10": recall(found, truth), "query_ms_p50": 1e3 * float(np.median(times)),
                       "query_ms_p99": 1e3 * float(np.percentile(times, 99))})
        print(f"  {name:28s} width {width:4d}: recall@10 {points[-1]['recall@10']:.4f}, "
              f"{points[-1]['query_ms_p50']:.3f} ms, {bytes_per_item:.0f} B/item", flush=True)
    return {"store": name, "bytes_per_item": bytes_per_item, "note": note, "points": points}


def file_bytes(save: Callable[[str], None]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        save(path)
        return os.path.getsize(path)


def hnswlib_index(vectors: np.ndarray, M: int, ef_construction: int = 200):
    import hnswlib
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(len(vectors), ef_construction=ef_construction, M=M)
    index.add_items(vectors, np.arange(len(vectors)))
    return index


def hnswlib_query(index, k: int) -> Callable[[np.ndarray, int], np.ndarray]:
    def query(q: np.ndarray, ef: int) -> np.ndarray:
        index.set_ef(max(ef, k))
        return index.knn_query(q[None, :], k=k, num_threads=1)[0][0]
    return query


def shipped_store(rec, bundle: Path) -> "tuple[float, Callable[[np.ndarray, int], np.ndarray], str]":
    """The bundle's item store: bytes per item of its files, a query at a width (the runtime's own path:
    ItemIndex.search for max(k, rerank) candidates at ef = width, re-scored by the Retriever with the
    search's inner products, as Retriever.top does), a note."""
    m = rec.bundle.manifest
    names = [m.index.file, m.items.vectors, m.items.scales] + ([m.index.projection] if m.index.projection else [])
    size = sum((bundle / name).stat().st_size for name in names) / len(rec.items)
    fetch = max(K, m.index.rerank)

    def query(q: np.ndarray, width: int) -> np.ndarray:
        cand, dist = rec.index.search(q, fetch, ef=width)
        return rec.retriever.scored(cand, q, 1.0 - dist)[0][:K] if m.index.rerank else cand
    form = (f"compact: hnswlib M {m.index.M} over {m.index.dim} query-aware directions, {m.index.rerank} candidates "
            "re-ranked exactly" + (" (each vector stored once: graph coordinates + int8 residual)" if m.index.residual
                                   else " with the int8 table")
            if m.index.projection else f"hnswlib M {m.index.M} + the int8 table")
    return size, query, form


def stores(rec, bundle: Path, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
           widths: Sequence[int]) -> List[Dict]:
    n, d = vectors.shape
    table_bytes = d + TABLE_BYTES_PER_ITEM_EXTRA
    size, query, form = shipped_store(rec, bundle)
    rerank = rec.bundle.manifest.index.rerank
    out = [sweep("edge-rec (shipped)", size, [w for w in widths if w >= rerank] or [rerank], query, queries, truth,
                 f"{form}; the bundle's files")]

    plain = hnswlib_index(vectors, 8)
    out.append(sweep("edge-rec plain graph (format 5)", file_bytes(plain.save_index) / n + table_bytes, widths,
                     hnswlib_query(plain, K), queries, truth, "hnswlib M 8, float32 vectors in the index + the int8 table"))

    default = hnswlib_index(vectors, 16)
    out.append(sweep("hnswlib defaults", file_bytes(default.save_index) / n, widths, hnswlib_query(default, K),
                     queries, truth, "M 16, ef_construction 200, float32 vectors"))

    from usearch.index import Index
    # USearch's int8 vectors are compared by cosine (measured: "ip" ranks like cosine, recall@10 0.49 here), so
    # inner product goes through the standard reduction: every item gets an extra coordinate
    # sqrt(R^2 - |v|^2) and unit norm, the query a 0 there; cosine then ranks exactly as the inner product.
    norms = np.linalg.norm(vectors, axis=1)
    R = float(norms.max())
    augmented = np.hstack([vectors, np.sqrt(np.maximum(R * R - norms * norms, 0.0))[:, None]]) / R
    u = Index(ndim=d + 1, metric="cos", dtype="i8", connectivity=16)
    u.add(np.arange(n), augmented.astype(np.float32))

    def usearch_query(q: np.ndarray, width: int) -> np.ndarray:
        u.expansion_search = max(width, K)
        return u.search(np.append(q, np.float32(0.0)), K, threads=1).keys
    out.append(sweep("USearch int8", file_bytes(lambda p: u.save(p)) / n, widths, usearch_query, queries, truth,
                     "connectivity 16, int8 vectors; inner product by the cosine reduction (one extra coordinate)"))

    import faiss
    faiss.omp_set_num_threads(2)
    f = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
    f.train(vectors)
    f.add(vectors)
    faiss.omp_set_num_threads(1)

    def faiss_query(q: np.ndarray, width: int) -> np.ndarray:
        f.hnsw.efSearch = max(width, K)
        return f.search(q[None, :], K)[1][0]
    out.append(sweep("FAISS HNSW+SQ8", file_bytes(lambda p: faiss.write_index(f, p)) / n, widths, faiss_query,
                     queries, truth, "IndexHNSWSQ, M 16, 8-bit scalar quantizer, inner product"))
    return out


def plot(result: Dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, s in enumerate(result["stores"]):
        color = plt.get_cmap("tab10").colors[i]
        r = [p["recall@10"] for p in s["points"]]
        a.plot([s["bytes_per_item"]] * len(r), r, "o-", color=color, label=s["store"])
        b.plot([p["query_ms_p50"] for p in s["points"]], r, "o-", color=color, label=s["store"])
    for ax in (a, b):
        ax.axhline(0.95, color="grey", ls="--", lw=1)
        ax.set_ylabel("recall@10 against exact search")
        ax.grid(alpha=0.3)
    a.axvline(260, color="red", ls="--", lw=1, label="260 B/item (floor)")
    a.set_xlabel("bytes per item on disk (index + what it needs beside it)")
    b.set_xlabel("median ms per query, one thread (points: search widths)")
    a.legend(fontsize=8, loc="center")
    fig.suptitle(f"{result['items']:,} items, {result['dim']}-d, {result['queries']} real ML-1M histories' queries",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    from synthetic import add_grown_bundle_args, grown_bundle
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grown_bundle_args(p)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--widths", default="16,32,48,64,96,128,192,256,384,512,768", help="search widths (ef) to sweep")
    p.add_argument("--out", default=str(HERE / "results" / "index_peers.json"))
    args = p.parse_args()
    from results_file import write_results
    from runtime_latency import TUNING_USERS, real_histories

    from converter.index import exact_topk
    from converter.provenance import machine_record
    from edge_rec.recommender import EdgeRecommender
    timed, tuning, _ = real_histories(args.data, args.queries, TUNING_USERS)
    with tempfile.TemporaryDirectory() as tmp:
        grown = grown_bundle(args, tmp, tuning)
        with EdgeRecommender.open(grown, Path(args.key).with_suffix(".pub")) as rec:
            vectors = rec.items.dequantized(np.arange(len(rec.items)))
            rows = [rec.items.rows(h, strict=False)[-rec.history_len:] for h in timed]
            queries = np.stack([rec.query_vector(r) for r in rows if len(r)])
            truth = exact_topk(queries, vectors, K, "ip")
            result = {"machine": machine_record(grown), "items": len(vectors), "dim": int(vectors.shape[1]),
                      "queries": len(queries), "k": K,
                      "stores": stores(rec, Path(grown), vectors, queries, truth, [int(w) for w in args.widths.split(",")])}
    write_results(result, args.out, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
