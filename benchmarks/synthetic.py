"""Grow a real bundle's catalog to N items with synthetic items drawn from the real item-vector distribution.

Each synthetic item is a random real item's vector plus Gaussian noise whose covariance is
``noise**2`` times the empirical covariance of all real item vectors, rescaled to the base item's norm
(noise alone would inflate norms and let synthetic items win every inner product): the synthetic
catalog keeps the real one's clusters, norm distribution and anisotropy. Metadata is copied from the
base item, titles marked as synthetic. A bundle with search gets synthetic search vectors drawn the same
way around the same base items (then L2-normalised, as search vectors are).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from converter.bundle import SearchPart, write_bundle
from converter.index import IndexChoice, tune_index
from converter.quantize import Int8Model
from edge_rec.bundle import Bundle
from edge_rec.quant import dequantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key


def synthetic_vectors(real: np.ndarray, n: int, noise: float = 0.5, seed: int = 0,
                      base: "np.ndarray | None" = None) -> "tuple[np.ndarray, np.ndarray]":
    """(n, d) vectors and the index of the real item each one was drawn around (``base``, or drawn)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(real), n) if base is None else base
    chol = np.linalg.cholesky(np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1]))
    drawn = real[base] + noise * rng.standard_normal((n, real.shape[1])) @ chol.T
    drawn *= (np.linalg.norm(real[base], axis=1) / np.linalg.norm(drawn, axis=1))[:, None]
    return drawn.astype(np.float32), base


def grow_bundle(src: Union[str, Path], out: Union[str, Path], private_key: Union[str, Path], n_items: int,
                histories: Sequence[Sequence[str]], recall_target: float = 0.95, search_texts: Sequence[str] = (),
                with_search: bool = True, tune: Optional[Dict[str, Any]] = None) -> IndexChoice:
    """Write a bundle at ``out`` with ``src``'s model and items plus synthetic ones up to ``n_items``;
    the index is tuned on queries from ``histories`` (item ids of real users, oldest first), the search
    index (if ``src`` has search and ``with_search``) on popular items' titles and ``search_texts`` as queries;
    ``tune``: tune_index arguments (default: the converter's, trying M and 2M plain graphs and every compact form)."""
    bundle = Bundle.open(src, load_private_key(private_key).public_key())
    rec = EdgeRecommender(bundle)
    m = bundle.manifest
    real = rec.items.dequantized(np.arange(len(rec.items)))
    extra, base = synthetic_vectors(real, n_items - len(real))
    vectors = np.concatenate([real, extra])
    ids = list(rec.items.ids) + [f"syn-{i}" for i in range(len(extra))]
    meta = [rec.items.metadata(r) for r in range(len(real))]
    meta += [dict(meta[b], title=f"{meta[b].get('title', '')} (synthetic {i})") for i, b in enumerate(base)]
    rows = [rec.items.rows(h, strict=False)[-rec.history_len:] for h in histories]
    queries = np.stack([rec.model.query(vectors[r]) for r in rows if len(r)])
    choice = tune_index(vectors, queries, **{"target": recall_target, "Ms": (m.index.M, 2 * m.index.M), **(tune or {})})
    model = Int8Model(bundle.read_bytes(m.model.file), m.model, rec.model.op_report())
    golden = [r for r in rows if len(r)][:8] + [np.zeros(0, np.int64)]
    search = None
    if m.search is not None and with_search:  # synthetic items' search vectors are drawn around the same base items
        s = m.search
        real_search = dequantize_rows(bundle.load_array(s.vectors), bundle.load_array(s.scales))
        drawn, _ = synthetic_vectors(real_search, len(extra), base=base)
        search_vectors = np.concatenate([real_search, drawn / np.linalg.norm(drawn, axis=1, keepdims=True)])
        texts = [str(meta[r].get("title", "")) for r in rec.items.popularity[:2000]] + list(search_texts)
        search_queries = np.stack([v for v in (rec.search_vector(t) for t in texts) if v is not None])
        index = tune_index(search_vectors, search_queries, target=recall_target, Ms=(s.index.M, 2 * s.index.M),
                           compact_dims=(), item_queries=0)
        search = SearchPart(bundle.read_bytes(s.tokenizer), bundle.read_bytes(s.encoder.file), s.encoder, s.features,
                            search_vectors, index, s.blend, [g.query for g in s.golden])
    write_bundle(out, model, ids, vectors, meta, rec.items.popularity, choice, golden, private_key,
                 bundle_version=1, info={"synthetic": f"{len(real)} real + {len(extra)} synthetic items"}, search=search)
    rec.close()
    return choice


def catalog_change(rec: EdgeRecommender, fraction: float, seed: int = 0, tag: str = "bench-new"):
    """A change set touching ``fraction`` of ``rec``'s catalog: 35% of it updated (vectors moved), 35%
    deleted, 30% new items, each drawn as above (search vectors too when the bundle has search)."""
    from converter.publish import changes_from_vectors
    n = max(3, int(len(rec.items) * fraction))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(rec.items), int(0.7 * n), replace=False)
    updated, deleted = rows[:len(rows) // 2], rows[len(rows) // 2:]
    vectors = rec.items.dequantized(np.arange(len(rec.items)))
    moved, _ = synthetic_vectors(vectors[updated], len(updated), noise=0.3, seed=seed + 1)
    fresh, _ = synthetic_vectors(vectors, n - len(rows), seed=seed + 2)
    ups = {rec.items.ids[r]: moved[i] for i, r in enumerate(updated)}
    ups.update({f"{tag}-{i}": v for i, v in enumerate(fresh)})
    meta = {k: {"title": f"item {k}", "genres": ["Drama"]} for k in ups}
    search = None
    if rec.has_search:
        table = rec.search_retriever.vectors(np.arange(len(rec.items)))
        s_moved, _ = synthetic_vectors(table[updated], len(updated), noise=0.3, seed=seed + 1,
                                       base=np.arange(len(updated)))
        s_fresh, _ = synthetic_vectors(table, n - len(rows), seed=seed + 2)
        search = dict(zip(ups, np.concatenate([s_moved, s_fresh])))
    return changes_from_vectors(ups, meta, [rec.items.ids[r] for r in deleted], search)


def catalog_texts(dataset, n: int) -> "tuple[list, list]":
    """``n`` item ids and texts for a text-side catalog of any size: the data set's items, then variants of
    them ("edition k" in the title), as a large catalog's texts would look."""
    ids, texts = [], []
    for i in range(n):
        it = dataset.items[i % dataset.n_items]
        variant = i // dataset.n_items
        ids.append(it.id if variant == 0 else f"{it.id}-v{variant}")
        texts.append(it.text() if variant == 0 else it.text().replace(" (", f" (edition {variant}) (", 1))
    return ids, texts


def add_grown_bundle_args(p: argparse.ArgumentParser) -> None:
    """The arguments of a benchmark that runs on a real bundle grown to a synthetic catalog."""
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, help="private key (to sign the grown bundle); its .pub verifies it")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--grown", help="reuse (or keep) the grown bundle in this directory")
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--no-search", action="store_true",
                   help="grow without the search part (its float32 search graph is not a compact store)")


def grown_bundle(args: argparse.Namespace, tmp: Union[str, Path], tuning: Sequence[Sequence[str]],
                 tune: Optional[Dict[str, Any]] = None) -> Path:
    """The grown bundle at ``--grown`` if one is there, else ``--bundle`` grown to ``--items`` (index tuned on
    ``tuning`` histories, ``tune``: see :func:`grow_bundle`) and kept at ``--grown`` or in ``tmp``."""
    grown = Path(args.grown) if args.grown else Path(tmp) / "grown"
    if not (grown / "manifest.json").is_file():
        grow_bundle(args.bundle, grown, args.key, args.items, tuning, with_search=not args.no_search, tune=tune)
    return grown
