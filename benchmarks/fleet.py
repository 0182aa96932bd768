"""A simulated fleet: devices with their own state directories sync from a channel on S3 (moto's server on
loopback) through a fault proxy that drops, stalls and corrupts requests. Writes results/fleet.json and
fleet.png: share of devices on the latest version over time, corrupt installs, bytes and requests per
device, the slowest device.

    python benchmarks/fleet.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.key

The channel: v1 (the bundle), v2 (a 1% catalog change), v3 (the bundle again: a new model restarts the
delta chain), v4-v6 (1% changes). Devices start fresh, expired (on v1: its deltas are gone from the
channel, so a snapshot), many behind (v3: three deltas) or one behind (v5: one delta).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
BUCKET, PREFIX = "fleet", "bench"
GROUPS = ("fresh", "expired", "many behind", "one behind")


class FaultProxy(ThreadingHTTPServer):
    """Forwards ``GET /d<device>/<file>`` to the bucket; drops, stalls or corrupts a share of requests and
    counts requests and body bytes per device."""

    daemon_threads = True

    def __init__(self, origin: str, drop: float, stall: float, corrupt: float, stall_s: float, seed: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.origin, self.drop, self.stall, self.corrupt, self.stall_s = origin, drop, stall, corrupt, stall_s
        self.rng, self.lock = random.Random(seed), threading.Lock()
        self.requests, self.bytes = defaultdict(int), defaultdict(int)
        self.faults = defaultdict(int)

    def decide(self) -> str:
        with self.lock:
            r = self.rng.random()
        if r < self.drop:
            return "drop"
        if r < self.drop + self.stall:
            return "stall"
        if r < self.drop + self.stall + self.corrupt:
            return "corrupt"
        return "ok"


class ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:
        device, _, rest = self.path.lstrip("/").partition("/")
        s = self.server
        fault = s.decide()
        with s.lock:
            s.requests[device] += 1
            s.faults[fault] += 1
        if fault == "stall":
            time.sleep(s.stall_s)  # longer than the device's read timeout
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() == "range"}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{s.origin}/{rest}", headers=headers), timeout=30) as r:
                status, body, reply = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, body, reply = e.code, e.read(), e.headers
        if fault == "drop":  # half the body, then the connection goes away
            body = body[:len(body) // 2]
        elif fault == "corrupt" and body and status < 300:
            i = s.rng.randrange(len(body))
            body = body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1:]
        self.send_response(status)
        for k in ("Content-Type", "Content-Range", "Accept-Ranges", "ETag"):
            if reply.get(k):
                self.send_header(k, reply[k])
        self.send_header("Content-Length", str(len(body) if fault != "drop" else 2 * len(body) + 1))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass
        with s.lock:
            s.bytes[device] += len(body)
        if fault == "drop":
            self.close_connection = True


def publish_versions(store, bundle: Path, key: Path, pub: Path, changed: float) -> list:
    """v1..v6 as the module docstring says; returns the channel manifests."""
    from synthetic import catalog_change

    from converter.publish import publish_bundle, publish_changes
    from edge_rec import EdgeRecommender
    with EdgeRecommender.open(bundle, pub) as rec:
        changes = [catalog_change(rec, changed, seed=10 * v, tag=f"v{v}-new") for v in (2, 4, 5, 6)]
    out = [publish_bundle(store, bundle, key, name="fleet")]
    out.append(publish_changes(store, changes[0], key))
    out.append(publish_bundle(store, bundle, key))
    for c in changes[1:]:
        out.append(publish_changes(store, c, key))
    return out


def verify_device(root: Path, pub: Path, latest: int, latest_ids: set) -> str:
    """'ok', or what is wrong with the device's installed state."""
    from edge_rec.golden import check_version
    from edge_rec.state import DeviceState
    device = DeviceState(root)
    if device.state.current != latest:
        return f"on version {device.state.current}"
    leftovers = [p.name for p in device.versions.iterdir() if p.name.startswith(".")]
    if leftovers:
        return f"half-applied leftovers {leftovers}"
    try:
        with check_version(device.current_dir(), pub, 1) as rec:
            if set(rec.items.ids) != latest_ids:
                return "catalog differs from the publisher's latest version"
    except Exception as e:  # noqa: BLE001 - anything here is a corrupt install
        return f"corrupt: {type(e).__name__}: {e}"
    return "ok"


def run_device(i: int, group: str, root: Path, url: str, pub: Path, latest: int, jitter: float, max_rounds: int,
               start: float, timeline: list, lock: threading.Lock) -> dict:
    from edge_rec.sync import Limits, SyncClient
    rng = random.Random(i)
    limits = Limits(connect_timeout=2.0, grace=10.0, attempts=2)
    rounds, t_done = 0, None
    for rounds in range(1, max_rounds + 1):
        time.sleep(rng.uniform(0, jitter))
        status = SyncClient(root, f"{url}/d{i}", pub, limits=limits).sync_once()
        with lock:
            timeline.append((time.perf_counter() - start, i, status.version))
        if status.version == latest:
            t_done = time.perf_counter() - start
            break
    return {"device": i, "group": group, "rounds": rounds, "seconds": t_done}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.4))
    for g in GROUPS:
        t = np.array(result["on_latest_over_time"][g]["t"])
        a.plot(t, 100 * np.array(result["on_latest_over_time"][g]["share"]), label=g, lw=1.6)
    a.set_xlabel("seconds since the fleet started syncing")
    a.set_ylabel("devices on the latest version, %")
    a.set_ylim(0, 102)
    a.legend(fontsize=8, loc="lower right")
    a.set_title(f"{result['devices']} devices, faults on {100 * result['fault_share']:.1f}% of requests", fontsize=10)
    per = result["per_group"]
    b.bar(range(len(GROUPS)), [100 * per[g]["bytes_vs_snapshot"]["median"] for g in GROUPS], color="#4c72b0")
    b.errorbar(range(len(GROUPS)), [100 * per[g]["bytes_vs_snapshot"]["median"] for g in GROUPS],
               yerr=[[0] * len(GROUPS), [100 * (per[g]["bytes_vs_snapshot"]["max"] - per[g]["bytes_vs_snapshot"]["median"])
                                        for g in GROUPS]], fmt="none", ecolor="k", capsize=3)
    b.set_xticks(range(len(GROUPS)), GROUPS, fontsize=9)
    b.set_yscale("log")
    b.set_yticks([0.5, 1, 2, 5, 10, 20, 50, 100, 200])
    b.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
    b.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    b.set_ylabel("bytes served per device, share of a snapshot\n(median; bar to the max)")
    b.axhline(2, color="#c44e52", ls="--", lw=1, label="2% (one behind, 1% change)")
    b.legend(fontsize=8)
    counts = [r for g in GROUPS for r in per[g]["requests"]["all"]]
    c.hist([per[g]["requests"]["all"] for g in GROUPS], bins=np.arange(min(counts), max(counts) + 2) - 0.5,
           label=list(GROUPS), stacked=True)
    c.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    c.set_xlabel("requests per device (faulty ones included)")
    c.set_ylabel("devices")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, help="private key; its .pub is what devices pin")
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--changed", type=float, default=0.01, help="share of the catalog each delta changes")
    p.add_argument("--drop", type=float, default=0.04)
    p.add_argument("--stall", type=float, default=0.02)
    p.add_argument("--corrupt", type=float, default=0.015)
    p.add_argument("--jitter", type=float, default=2.0, help="seconds a device waits (uniform) before each sync")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--max-rounds", type=int, default=30)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    from moto_server import moto_s3

    from converter.channel_store import S3Store
    from converter.provenance import machine_record
    from edge_rec.snapshot import unpack_snapshot
    from edge_rec.state import DeviceState
    key, pub, out = Path(args.key), Path(args.key).with_suffix(".pub"), Path(args.out)
    with tempfile.TemporaryDirectory() as tmp, moto_s3(BUCKET, Path(tmp) / "moto.log") as endpoint:
        tmp = Path(tmp)
        store = S3Store(f"s3://{BUCKET}/{PREFIX}", endpoint)
        print("publishing v1..v6 to moto's S3 server ...", flush=True)
        channels = publish_versions(store, Path(args.bundle), key, pub, args.changed)
        latest = channels[-1]
        for channel, name in ((channels[0], "v1"), (channels[2], "v3"), (channels[4], "v5"), (latest, "latest")):
            store.download(channel.snapshot.file, tmp / f"{name}.pack")
            (tmp / name).mkdir()
            unpack_snapshot(tmp / f"{name}.pack", tmp / name)
        from edge_rec import EdgeRecommender
        with EdgeRecommender.open(tmp / "latest", pub) as rec:
            latest_ids = set(rec.items.ids)
        groups = [GROUPS[i % len(GROUPS)] for i in range(args.devices)]
        start_version = {"fresh": None, "expired": "v1", "many behind": "v3", "one behind": "v5"}
        print(f"provisioning {args.devices} devices ...", flush=True)
        for i, g in enumerate(groups):
            if start_version[g]:
                DeviceState(tmp / "devices" / str(i)).provision(tmp / start_version[g])
        proxy = FaultProxy(f"{endpoint}/{BUCKET}/{PREFIX}", args.drop, args.stall, args.corrupt, stall_s=3.0)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        timeline, lock, start = [], threading.Lock(), time.perf_counter()
        print(f"{args.devices} devices syncing through the fault proxy ...", flush=True)
        with ThreadPoolExecutor(args.threads) as pool:
            runs = list(pool.map(lambda i: run_device(i, groups[i], tmp / "devices" / str(i), url, pub, latest.version,
                                                      args.jitter, args.max_rounds, start, timeline, lock),
                                 range(args.devices)))
        wall = time.perf_counter() - start
        proxy.shutdown()
        verdicts = [verify_device(tmp / "devices" / str(i), pub, latest.version, latest_ids) for i in range(args.devices)]
        result = _summarise(args, runs, verdicts, timeline, proxy, latest, wall, groups, machine_record(args.bundle))
        shutil.rmtree(tmp / "devices", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "fleet.png")
    print(json.dumps({k: result[k] for k in ("devices", "on_latest_at_end", "corrupt_installs", "fault_share",
                                            "corrupt_share", "wall_s", "slowest_device")}, indent=1))
    return 0 if result["on_latest_at_end"] == 1.0 and result["corrupt_installs"] == 0 else 1


def _summarise(args, runs, verdicts, timeline, proxy, latest, wall, groups, machine) -> dict:
    snapshot = latest.snapshot.size
    per_group = {}
    for g in GROUPS:
        members = [r["device"] for r in runs if r["group"] == g]
        by = np.array([proxy.bytes[f"d{i}"] for i in members], float)
        req = [proxy.requests[f"d{i}"] for i in members]
        per_group[g] = {"devices": len(members),
                        "bytes_vs_snapshot": {"median": float(np.median(by) / snapshot), "max": float(by.max() / snapshot)},
                        "bytes": {"median": float(np.median(by)), "max": float(by.max())},
                        "requests": {"median": float(np.median(req)), "max": int(max(req)), "all": req},
                        "rounds": {"median": float(np.median([r["rounds"] for r in runs if r["group"] == g]))}}
    curves = {}
    for g in GROUPS:
        members = {r["device"] for r in runs if r["group"] == g}
        on, t, share = set(), [0.0], [0.0]
        for when, dev, version in sorted(timeline):
            if dev in members and version == latest.version and dev not in on:
                on.add(dev)
                t.append(when)
                share.append(len(on) / len(members))
        curves[g] = {"t": t, "share": share}
    total = sum(proxy.faults.values())
    slow = max((r for r in runs if r["seconds"] is not None), key=lambda r: r["seconds"], default=None)
    return {"machine": machine, "devices": args.devices, "devices_at_a_time": args.threads, "versions": latest.version, "snapshot_bytes": snapshot,
            "delta_bytes": [d.size for d in latest.deltas], "changed_fraction": args.changed,
            "fault_rates": {"drop": args.drop, "stall": args.stall, "corrupt": args.corrupt},
            "faults": dict(proxy.faults), "requests": total,
            "fault_share": (proxy.faults["drop"] + proxy.faults["stall"]) / max(total, 1),
            "corrupt_share": proxy.faults["corrupt"] / max(total, 1),
            "on_latest_at_end": sum(v == "ok" for v in verdicts) / len(verdicts),
            "corrupt_installs": sum(v.startswith(("corrupt", "half-applied", "catalog")) for v in verdicts),
            "problems": sorted({v for v in verdicts if v != "ok"}), "wall_s": wall,
            "slowest_device": slow, "per_group": per_group, "on_latest_over_time": curves}


if __name__ == "__main__":
    sys.exit(main())
