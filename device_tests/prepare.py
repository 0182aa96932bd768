"""Workstation side of the device suite: write a *kit* the device tests read.

    python device_tests/prepare.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key --out kit/
    python device_tests/prepare.py --out kit/          # no bundle: convert a small one from a ML-1M slice

The kit holds the bundle, its public key, a channel (version 1 = the bundle, version 2 = a 1% catalog
delta) and reference.json: the query vectors and top-10 lists this machine computed for real user
histories, which the device must reproduce.
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
sys.path.insert(0, str(ROOT))


def small_bundle(out: Path, users: int = 400) -> "tuple[Path, Path]":
    """A bundle converted from the first ``users`` ML-1M users (a few minutes on 2 cores)."""
    from converter.convert import ConvertConfig, convert
    from converter.data import build_dataset, leave_one_out, load_movielens_1m
    from converter.student import StudentConfig
    from converter.teacher import SASRecConfig, train_sasrec
    from edge_rec.signing import generate_keypair
    full = load_movielens_1m()
    events = [(full.user_ids[u], full.items[i].id, float(t)) for u in range(users) for t, i in enumerate(full.sequences[u])]
    data = build_dataset("ml-1m-slice", events, {it.id: it for it in full.items})
    split = leave_one_out(data)
    teacher, _ = train_sasrec(split, [it.id for it in data.items], None,
                              SASRecConfig(max_len=50, dim=32, max_epochs=6, eval_every=3, use_text=False))
    key, _ = generate_keypair(out / "keys")
    convert(data, split, teacher, out / "bundle", key,
            ConvertConfig(architectures=("pool-recent",), student=StudentConfig(epochs=4, history_len=20, hidden=64),
                          representative_cases=100, parity_cases=100, latency_queries=30, golden_cases=8))
    return out / "bundle", key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle directory (default: convert a small one from a ML-1M slice)")
    p.add_argument("--key", help="the bundle's private key (its .pub is shipped in the kit)")
    p.add_argument("--out", required=True)
    p.add_argument("--histories", type=int, default=40, help="reference histories beyond the golden cases")
    args = p.parse_args()
    from converter.publish import changes_from_vectors, publish_bundle, publish_changes
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
        meta = {k: {"title": f"kit item {k}", "genres": ["Drama"]} for k in ups}
        publish_changes(out / "channel", changes_from_vectors(ups, meta, [rec.items.ids[r] for r in rows[n // 2:]]), key)
    histories = [g.history for g in rec.bundle.manifest.golden if g.history]
    for _ in range(args.histories):
        histories.append(list(rng.choice(rec.items.ids, int(rng.integers(3, 60)), replace=False)))
    cases = []
    for h in histories:
        rows = rec.items.rows(h, strict=False)
        top, scores = rec.recommend_rows(rows, 10)
        cases.append({"history": list(h), "query": rec.query_vector(rows[-rec.history_len:]).tolist(),
                      "top": [rec.items.ids[r] for r in top], "scores": scores.tolist()})
    reference = {"machine": platform.machine(), "python": platform.python_version(), "backend": rec.model.backend,
                 "cases": cases}
    (out / "reference.json").write_text(json.dumps(reference))
    print(f"device kit written to {out}: bundle v{rec.bundle.manifest.bundle_version} ({len(rec.items)} items), "
          f"channel v1 -> v2, {len(cases)} reference cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
