"""Workstation side of the device suite: write a *kit* the device tests read.

    python device_tests/prepare.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key --out kit/
    python device_tests/prepare.py --out kit/          # no bundle: convert a small one from a ML-1M slice

The kit holds the bundle, its public key, a channel (version 1 = the bundle, version 2 = a 1% catalog
delta that adds titled items, searchable at once) and reference.json: the query vectors and top-10
lists this machine computed for real user histories and for search queries, which the device must
reproduce.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NEW_TITLE = "Robots of the Red Planet"  # the delta's new items are titled this (plus a number): searchable at once
sys.path.insert(0, str(ROOT))


SEARCHES = ["toy story", "a 90s comedy", "scary movies from the 80s", "star wars", "romantic drama", "godfather",
            "movies like the matrix", "a kids cartoon", "western", "jurasic park"]


def small_bundle(out: Path, users: int = 400) -> "tuple[Path, Path]":
    """A bundle with search converted from the first ``users`` ML-1M users (a few minutes on 2 cores)."""
    from converter.convert import ConvertConfig, convert
    from converter.data import build_dataset, leave_one_out, load_movielens_1m
    from converter.search.build import SearchConfig
    from converter.search.encoder import EncoderConfig
    from converter.student import StudentConfig
    from converter.teacher import SASRecConfig, train_sasrec
    from converter.text import TextEncoder
    from edge_rec.signing import generate_keypair
    full = load_movielens_1m()
    events = [(full.user_ids[u], full.items[i].id, float(t)) for u in range(users) for t, i in enumerate(full.sequences[u])]
    data = build_dataset("ml-1m-slice", events, {it.id: it for it in full.items})
    split = leave_one_out(data)
    lm = TextEncoder(cache_dir=out / "cache")
    teacher, _ = train_sasrec(split, [it.id for it in data.items], lm.encode([it.text() for it in data.items]),
                              SASRecConfig(max_len=50, dim=64, max_epochs=6, eval_every=3))  # with text, as shipped
    key, _ = generate_keypair(out / "keys")
    # the shipped encoder's shape, small: rare pieces and bigrams in narrow rows (two FULLY_CONNECTED + STRIDED_SLICE)
    search = SearchConfig(encoders=(EncoderConfig("kit", 1500, 1500, 32, 64, head_pieces=500, tail_dim=16),), dims=(32,),
                          general_texts=4000,
                          catalog_texts=4000, epochs=3, queries_per_kind=1, golden_queries=6)
    convert(data, split, teacher, out / "bundle", key,
            # the default student (the teacher's own encoder, int8: attention as MUL + SUM, positions and per-slot
            # projections by CONV_2D), reading the teacher's whole window: a copy, no distillation epochs
            ConvertConfig(architectures=("teacher-encoder",), student=StudentConfig(history_len=50),
                          representative_cases=100, parity_cases=100, latency_queries=30, golden_cases=8, search=search,
                          search_eval_queries=200,
                          # the compact store (a large catalog's form) even on this small slice: the device then
                          # rebuilds its residual table from the delta byte for byte, as the signed manifest checks
                          near_exact_mb=0.0),
            text_encoder=lm, search_model_out=out / "search")
    return out / "bundle", key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle directory (default: convert a small one from a ML-1M slice)")
    p.add_argument("--key", help="the bundle's private key (its .pub is shipped in the kit)")
    p.add_argument("--search-model", help="the bundle's search model (default: beside the bundle, <bundle>/../search)")
    p.add_argument("--out", required=True)
    p.add_argument("--histories", type=int, default=40, help="reference histories beyond the golden cases")
    args = p.parse_args()
    from converter.data import Item
    from converter.publish import changes_from_vectors, publish_bundle, publish_changes
    from converter.search.model import SearchModel
    from converter.text import TextEncoder
    from edge_rec.recommender import EdgeRecommender

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, key = (Path(args.bundle), Path(args.key)) if args.bundle else small_bundle(Path(tmp))
        shutil.copytree(bundle, out / "bundle")
        shutil.copy(key.with_suffix(".pub"), out / "edge-rec.pub")
        rec = EdgeRecommender.open(out / "bundle", out / "edge-rec.pub")
        publish_bundle(out / "channel", out / "bundle", key, name="device-kit")
        vectors = rec.items.dequantized(np.arange(len(rec.items)))
        rng = np.random.default_rng(0)
        n = max(5, len(rec.items) // 100)
        rows = rng.choice(len(rec.items), n, replace=False)
        ups = {rec.items.ids[r]: vectors[r] * 0.95 for r in rows[: n // 2]}
        ups.update({f"kit-new-{i}": vectors[r] * 1.02 for i, r in enumerate(rng.choice(len(rec.items), n // 3))})
        meta = {k: rec.items.metadata(int(rec.items.rows([k])[0])) if k in rec.items else
                {"title": f"{NEW_TITLE} {k[8:]}", "year": 2026, "genres": ["Drama"]} for k in ups}
        search = None
        if rec.has_search:
            model = SearchModel.load(args.search_model or bundle.parent / "search")
            items = [Item(k, m.get("title", ""), m.get("year"), tuple(m.get("genres", ()))) for k, m in meta.items()]
            lm = TextEncoder(cache_dir=bundle.parent / "cache").encode([it.text() for it in items])
            search = dict(zip(meta, model.item_vectors(items, lm)))
        publish_changes(out / "channel", changes_from_vectors(ups, meta, [rec.items.ids[r] for r in rows[n // 2:]], search),
                        key)
    histories = [g.history for g in rec.bundle.manifest.golden if g.history]
    for _ in range(args.histories):
        histories.append(list(rng.choice(list(rec.items.ids), int(rng.integers(3, 60)), replace=False)))
    cases = []
    for h in histories:
        rows = rec.items.rows(h, strict=False)
        top, scores = rec.recommend_rows(rows, 10)
        cases.append({"history": list(h), "query": rec.query_vector(rows[-rec.history_len:]).tolist(),
                      "top": [rec.items.ids[r] for r in top], "scores": scores.tolist()})
    searches = []
    for text in SEARCHES if rec.has_search else []:
        vector = rec.search_vector(text)
        hits = rec.search(text, k=10, personalize=False)
        searches.append({"query": text, "vector": None if vector is None else vector.tolist(),
                         "top": [r.item_id for r in hits], "scores": [r.score for r in hits]})
    reference = {"machine": platform.machine(), "python": platform.python_version(), "backend": rec.model.backend,
                 "cases": cases, "searches": searches, "new_title": NEW_TITLE}
    (out / "reference.json").write_text(json.dumps(reference))
    print(f"device kit written to {out}: bundle v{rec.bundle.manifest.bundle_version} ({len(rec.items)} items), "
          f"channel v1 -> v2, {len(cases)} reference cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
