"""Delta sync cost on a 100k-item catalog: bytes on the wire (delta vs snapshot) and time to apply.

The catalog is the real bundle grown to 100k items (benchmarks/synthetic.py: real vectors + covariance-
shaped noise, rescaled to the base item's norm). The change touches 1% of items: half re-embedded
(vectors moved by noise of the same kind), 30% new, 20% deleted. Apply time is the device's
apply_delta (rebuild the item table, grow the index, write, hash-check) alone, median of several runs,
and a whole sync over loopback HTTP (download, verify, apply, golden check, switch).

    python benchmarks/delta_sync.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key
"""
from __future__ import annotations

import argparse
import json
import shutil
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
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, help="private key; its .pub verifies")
    p.add_argument("--data", help="MovieLens-1M folder (real histories to tune the grown index)")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--changed", type=float, default=0.01, help="fraction of the catalog a delta changes")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    from runtime_latency import real_histories
    from synthetic import grow_bundle

    from converter.provenance import machine_record
    key = Path(args.key)
    out = Path(args.out)
    result = {"machine": machine_record(args.bundle), "items": args.items, "changed_fraction": args.changed}
    with tempfile.TemporaryDirectory() as tmp:
        grow_bundle(args.bundle, Path(tmp) / "grown", key, args.items, real_histories(args.data, 300)[0])
        result.update(delta_cost(Path(tmp) / "grown", key, args.changed, args.runs, Path(tmp)))
    status = result["sync_status"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "delta_sync.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "delta_sync.png")
    print(f"delta {result['delta_bytes']:,} B = {100 * result['ratio']:.2f}% of the snapshot ({result['snapshot_bytes']:,} B); "
          f"apply median {result['apply_s']['median']:.3f} s; whole sync {result['sync_s']:.2f} s ({status})")
    return 0


def published(grown: Path, key: Path, channel: Path, out: Path):
    """Publish ``grown`` as version 1 of ``channel`` and unpack it into ``out`` as a device installs it (the
    publisher re-signs it in the current format); returns the channel manifest."""
    from converter.publish import publish_bundle
    from edge_rec.snapshot import unpack_snapshot
    first = publish_bundle(channel, grown, key, name="bench")
    out.mkdir()
    unpack_snapshot(channel / first.snapshot.file, out)
    return first


def timed_apply(base_dir: Path, pub: Path, delta_file: Path, runs: int, stage: Path) -> list:
    """Seconds of each of ``runs`` apply_delta calls on the device's copy at ``base_dir``; the last run's
    version stays in ``stage``."""
    from edge_rec.bundle import Bundle
    from edge_rec.delta import apply_delta, read_delta
    from edge_rec.manifest import Manifest
    base, target = Bundle.open(base_dir, pub), Manifest.from_bytes(read_delta(delta_file).manifest)
    times = []
    for _ in range(runs):
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        t = time.perf_counter()
        apply_delta(base, read_delta(delta_file), stage, target)
        times.append(time.perf_counter() - t)
    return times


def delta_cost(grown: Path, key: Path, fraction: float, runs: int, tmp: Path) -> dict:
    """Publish ``grown`` to a channel in ``tmp``, then a change set touching ``fraction`` of its catalog: the
    delta's bytes against the snapshot's, the device's apply_delta time (median of ``runs``) and a whole
    sync over loopback HTTP."""
    from synthetic import catalog_change

    from converter.publish import publish_changes
    from edge_rec.recommender import EdgeRecommender
    from edge_rec.serve import serve_in_thread
    from edge_rec.state import DeviceState
    from edge_rec.sync import SyncClient
    pub = key.with_suffix(".pub")
    channel = tmp / "channel"
    device_copy = tmp / "published"  # version 1 as a device installs it
    published(grown, key, channel, device_copy)
    grown = device_copy
    with EdgeRecommender.open(grown, pub) as rec:
        changes = catalog_change(rec, fraction)
    t = time.perf_counter()
    m = publish_changes(channel, changes, key)
    result = {"publish_s": time.perf_counter() - t}
    delta = m.deltas[-1]
    result.update(delta_bytes=delta.size, snapshot_bytes=m.snapshot.size, ratio=delta.size / m.snapshot.size,
                  upserted=len(changes.upsert_ids), deleted=len(changes.delete_ids))
    times = timed_apply(grown, pub, channel / delta.file, runs, tmp / "stage")
    shutil.rmtree(tmp / "stage")
    result["apply_s"] = {"median": float(np.median(times)), "runs": times}
    device = tmp / "device"
    DeviceState(device).provision(grown)
    server, url = serve_in_thread(channel)
    t = time.perf_counter()
    status = SyncClient(device, url, pub).sync_once()
    result["sync_s"] = time.perf_counter() - t
    server.shutdown()
    result["sync_status"] = status.line()
    return result


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    sizes = [r["snapshot_bytes"] / 1e6, r["delta_bytes"] / 1e6]
    a.bar(["snapshot", "delta"], sizes, color=["gray", "tab:blue"])
    for i, v in enumerate(sizes):
        a.annotate(f"{v:.3g} MB", (i, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    a.axhline(0.02 * r["snapshot_bytes"] / 1e6, color="red", ls="--", lw=1, label="2% of the snapshot")
    a.set_yscale("log")  # the delta is a fraction of a percent: invisible on a linear axis
    a.set_ylim(min(sizes) / 3, max(sizes) * 4)
    a.set_ylabel("MB on the wire (log scale)")
    a.set_title(f"{r['items']:,} items, {100 * r['changed_fraction']:.0f}% changed")
    a.legend()
    times = [r["apply_s"]["median"], r["sync_s"]]
    b.bar(["apply_delta\n(median)", "whole sync\n(loopback)"], times, color=["tab:blue", "tab:orange"])
    for i, v in enumerate(times):
        b.annotate(f"{v:.2f} s", (i, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    b.set_ylim(0, max(times + [1.0]) * 1.2)
    b.axhline(1.0, color="red", ls="--", lw=1, label="1 s target (apply)")
    b.set_ylabel("seconds")
    b.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
