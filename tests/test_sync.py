"""Delta sync against a real HTTP server on loopback and a fault-injecting one.

Each test asserts the device state afterwards; "unchanged" means byte for byte (every file under the
state directory, hashed)."""
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from converter.publish import changes_from_vectors, publish_bundle, publish_changes
from edge_rec.bundle import Bundle
from edge_rec.channel import CHANNEL_NAME, ChannelManifest
from edge_rec.delta import DeltaError, apply_delta, read_delta
from edge_rec.errors import IncompatibleBundleError
from edge_rec.index import check_index_file
from edge_rec.live import LiveRecommender
from edge_rec.manifest import Manifest
from edge_rec.pack import PackError, intact_prefix, read_pack, write_pack
from edge_rec.recommender import EdgeRecommender
from edge_rec.serve import serve_in_thread
from edge_rec.signing import generate_keypair, load_private_key, sign
from edge_rec.sync import Limits, SyncClient

FAST = Limits(connect_timeout=2.0, min_rate=1e6, grace=2.0, attempts=1)


def tree_digest(root: Path) -> dict:
    """Every file of a state directory, hashed; the sync's own status record and lock file aside."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("last_sync.json", ".sync.lock")}


INSERT_WIDTH = 48  # narrower than the converted graph's: devices must insert the delta's items as the publisher did


@pytest.fixture(scope="module")
def base(converted, tmp_path_factory):
    """A channel at version 1 (the converted bundle) and at version 2 (a catalog delta), kept pristine."""
    root = tmp_path_factory.mktemp("sync")
    ch1 = root / "ch1"
    publish_bundle(ch1, converted["bundle"], converted["key"], name="test")
    ch2 = root / "ch2"
    shutil.copytree(ch1, ch2)
    rec = EdgeRecommender.open(converted["bundle"], converted["pub"])
    vectors = rec.items.dequantized(np.arange(len(rec.items)))
    searchable = rec.search_retriever.vectors(np.arange(len(rec.items)))  # each item's search vector
    rng = np.random.default_rng(0)
    drawn = {f"new-{i}": int(rng.integers(0, len(vectors))) for i in range(20)}
    drawn.update({rec.items.ids[i]: i for i in range(5, 10)})
    ups = {k: vectors[r] * (1.05 if k.startswith("new-") else 0.9) for k, r in drawn.items()}
    deleted = [rec.items.ids[i] for i in range(20, 25)]
    changes = changes_from_vectors(ups, {k: {"title": k, "genres": ["Comedy"]} for k in ups}, deleted,
                                   {k: searchable[r] for k, r in drawn.items()})
    publish_changes(ch2, changes, converted["key"], insert_width=INSERT_WIDTH)
    return {"ch1": ch1, "ch2": ch2, "deleted": deleted, "new": [k for k in ups if k.startswith("new-")],
            "key": converted["key"], "pub": converted["pub"], "root": root}


@pytest.fixture
def channel(base, tmp_path):
    """A writable copy of the version-1 channel served on loopback; ``advance()`` publishes version 2."""
    ch = tmp_path / "channel"
    shutil.copytree(base["ch1"], ch)
    server, url = serve_in_thread(ch)

    def advance():
        shutil.rmtree(ch)
        shutil.copytree(base["ch2"], ch)
    yield {"dir": ch, "url": url, "advance": advance, "device": tmp_path / "device", **base}
    server.shutdown()


def client(channel, **kw):
    return SyncClient(channel["device"], channel["url"], channel["pub"], **kw)


def test_snapshot_then_delta_then_noop_and_live_switch(channel):
    c = client(channel)
    s = c.sync_once()
    assert (s.state, s.version) == ("updated", 1), s.line()
    live = LiveRecommender(channel["device"], channel["pub"])
    assert live.version == 1
    history = [channel["deleted"][0]]
    before = live.recommend(k=10, history=history)
    channel["advance"]()
    s = c.sync_once()
    assert (s.state, s.version) == ("updated", 2), s.line()
    after = live.recommend(k=50, history=history)  # picked up without a restart
    assert live.version == 2 and before
    ids = {r.item_id for r in after}
    assert not ids & set(channel["deleted"])
    similar = live.similar_items(channel["new"][0], k=5)
    assert len(similar) == 5
    frozen = tree_digest(channel["device"])
    assert client(channel).sync_once().state == "current"  # replay / equal version: a no-op
    assert tree_digest(channel["device"]) == frozen
    # the delta path was taken, not the snapshot: the device grew its own index
    m = Manifest.from_bytes((channel["device"] / "versions" / "2" / "manifest.json").read_bytes())
    assert m.index.built_on_device and (channel["device"] / "versions" / "2" / "local.json").is_file()
    grown = check_index_file(channel["device"] / "versions" / "2" / m.index.file, m.index)
    assert m.index.ef_construction == INSERT_WIDTH == grown.header["ef_construction"]  # the width it inserted at
    assert EdgeRecommender(Bundle.open(channel["device"] / "versions" / "2", channel["pub"])).check_golden().passed


def _resign_channel(ch: Path, keys, mutate=lambda d: None):
    raw = json.loads((ch / CHANNEL_NAME).read_bytes())
    mutate(raw)
    m = ChannelManifest.from_bytes(json.dumps(raw).encode())
    raw["signatures"] = [s.__dict__ for s in (sign(m.canonical_bytes(), k) for k in keys)]
    (ch / CHANNEL_NAME).write_text(json.dumps(raw))


def test_wrong_key_flipped_byte_and_duplicate_signatures_are_rejected(channel, tmp_path):
    c = client(channel)
    assert c.sync_once().state == "updated"
    channel["advance"]()
    frozen = tree_digest(channel["device"])
    other, _ = generate_keypair(tmp_path / "other")
    _resign_channel(channel["dir"], [load_private_key(other)])
    s = client(channel).sync_once()
    assert s.state == "rejected" and "signature" in s.message and tree_digest(channel["device"]) == frozen
    channel["advance"]()
    raw = (channel["dir"] / CHANNEL_NAME).read_bytes()
    i = raw.index(b'"version"') + len(b'"version": ')
    (channel["dir"] / CHANNEL_NAME).write_bytes(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:])
    s = client(channel).sync_once()
    assert s.state == "rejected" and tree_digest(channel["device"]) == frozen
    channel["advance"]()
    key = load_private_key(channel["key"])
    _resign_channel(channel["dir"], [key, key])  # one key signing twice must not satisfy threshold 2
    _, pub2 = generate_keypair(tmp_path / "second")
    s = SyncClient(channel["device"], channel["url"], [channel["pub"], pub2], threshold=2).sync_once()
    assert s.state == "rejected" and "2 required" in s.message and tree_digest(channel["device"]) == frozen


def test_older_version_is_rejected_also_after_restart(channel):
    old = (channel["dir"] / CHANNEL_NAME).read_bytes()
    channel["advance"]()
    assert client(channel).sync_once().version == 2
    frozen = tree_digest(channel["device"])
    (channel["dir"] / CHANNEL_NAME).write_bytes(old)  # validly signed, version 1
    for _ in range(2):  # a new client = a restarted device
        s = client(channel).sync_once()
        assert s.state == "rejected" and "older" in s.message
        assert tree_digest(channel["device"]) == frozen


@pytest.mark.parametrize("clock, state", [(lambda: 0.0, "updated"), (lambda: time.time() + 10 * 365 * 86400, "stale")])
def test_expiry_uses_the_trusted_time(channel, clock, state):
    s = client(channel, clock=clock).sync_once()
    assert s.state == state, s.line()
    if state == "stale":
        assert "expired" in s.message and not list((channel["device"] / "versions").iterdir())


def test_delta_on_the_wrong_base_and_mixed_index_are_rejected(channel, tmp_path):
    assert client(channel).sync_once().version == 1
    delta_file = next((channel["ch2"] / "deltas").glob("*.pack"))
    delta = read_delta(delta_file)
    base = Bundle.open(channel["device"] / "versions" / "1", channel["pub"])
    target = Manifest.from_bytes(delta.manifest)
    wrong = delta
    wrong.base_manifest_sha256 = "0" * 64
    with pytest.raises(DeltaError, match="applies to version"):
        apply_delta(base, wrong, tmp_path, target)
    delta = read_delta(delta_file)
    target.index.M += 4
    with pytest.raises(IncompatibleBundleError, match="cannot grow"):
        apply_delta(base, delta, tmp_path, target)
    assert not list(tmp_path.glob("*.hnsw"))  # nothing was loaded or written


class Faulty(BaseHTTPRequestHandler):
    """Serves a channel directory with one fault: see ``mode``."""
    protocol_version = "HTTP/1.1"
    mode = "ok"
    root: Path = Path(".")
    calls = 0

    def log_message(self, *a):
        pass

    def do_GET(self):
        file = self.root / self.path.lstrip("/")
        if not file.is_file():  # e.g. the next root, which this channel does not have
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and self.mode != "ignore-range":
            start = int(rng.split("=")[1].split("-")[0])
        type(self).calls += 1
        body = data[start:]
        sent = type(self).sent  # (path, range start, bytes written) of every response
        sent.append([self.path, int(rng.split("=")[1].split("-")[0]) if rng else None, 0])  # the start asked for
        if self.mode == "change-length" and rng:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data)}/{len(data) + 1}")
        else:
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if self.mode == "longer" and self.path.endswith(".pack"):  # announces more than the signed length
            self.send_header("Content-Length", str(len(body) + (1 << 20)))
            self.end_headers()
            self.wfile.write(body + b"x" * (1 << 20))
            return
        if self.mode == "endless" and self.path.endswith(".pack"):  # no length, never ends
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "trickle" and self.path.endswith(".pack"):
            for b in body[:20]:
                time.sleep(0.3)
                try:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                except OSError:
                    return
            return
        if self.mode == "drop" and self.path.endswith(".pack") and type(self).calls % 2 == 0:
            cut = random.Random(type(self).calls).randrange(1, max(2, len(body)))  # a random offset
            self.wfile.write(body[:cut])
            self.wfile.flush()
            sent[-1][2] = cut
            self.connection.shutdown(2)
            return
        if self.mode.startswith("corrupt") and self.path.endswith(".pack") \
                and not any(path.endswith(".pack") for path, _, _ in sent[:-1]):  # the first pack response only
            at = 20 if self.mode == "corrupt-header" else len(body) - 10  # the header, or the last section
            body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
        self.wfile.write(body)
        sent[-1][2] = len(body)


@pytest.fixture
def faulty(channel):
    handler = type("H", (Faulty,), {"root": channel["dir"], "mode": "ok", "calls": 0, "sent": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {**channel, "url": f"http://127.0.0.1:{server.server_address[1]}", "handler": handler}
    server.shutdown()


@pytest.mark.parametrize("mode", ["longer", "endless"])
def test_body_over_the_signed_length_is_cut_at_the_cap(faulty, mode):
    faulty["handler"].mode = mode
    s = client(faulty, limits=FAST).sync_once()
    assert s.state == "failed" and ("longer" in s.message or "announces" in s.message), s.line()
    parts = list((faulty["device"] / "downloads").iterdir())
    snapshot = ChannelManifest.from_bytes((faulty["dir"] / CHANNEL_NAME).read_bytes()).snapshot
    assert sum(p.stat().st_size for p in parts) <= snapshot.size  # disk use bounded by the signed size
    assert not list((faulty["device"] / "versions").iterdir())


def test_trickling_server_is_abandoned_then_sync_succeeds(faulty):
    faulty["handler"].mode = "trickle"
    t = time.monotonic()
    s = client(faulty, limits=FAST).sync_once()
    assert s.state == "failed" and "too slow" in s.message and time.monotonic() - t < 10, s.line()
    faulty["handler"].mode = "ok"
    assert client(faulty, limits=FAST).sync_once().state == "updated"


@pytest.mark.parametrize("mode", ["drop", "ignore-range", "change-length"])
def test_dropped_connections_resume_or_restart_cleanly(faulty, mode):
    faulty["handler"].mode = "drop"
    s = client(faulty, limits=Limits(connect_timeout=2.0, attempts=1)).sync_once()
    assert s.state == "failed", s.line()  # the first snapshot request was cut short
    partial = sum(f.stat().st_size for f in (faulty["device"] / "downloads").iterdir())
    assert partial > 0, "the bytes received before the drop are kept for resuming"
    if mode != "drop":
        faulty["handler"].mode = mode
    for _ in range(4):
        s = client(faulty, limits=Limits(connect_timeout=2.0, attempts=3)).sync_once()
        if s.state == "updated":
            break
    assert s.state == "updated", s.line()
    assert not list((faulty["device"] / "downloads").iterdir())
    size = ChannelManifest.from_bytes((faulty["dir"] / CHANNEL_NAME).read_bytes()).snapshot.size
    packs = [(start, n) for path, start, n in faulty["handler"].sent if path.endswith(".pack")]
    if mode == "drop":  # every retry resumed where the last stopped: no byte was fetched twice
        assert any(start for start, _ in packs) and packs[1][0] == partial, packs
        assert sum(n for _, n in packs) == size, (packs, size)
    else:  # the client asked to resume; the server ignored or broke Range, so it started over and finished
        assert packs[1][0] == partial and sum(n for _, n in packs[1:]) >= size, (packs, size)


@pytest.mark.parametrize("mode", ["corrupt", "corrupt-header"])
def test_a_corrupted_body_is_refetched_from_its_first_damaged_section(faulty, mode):
    faulty["handler"].mode = mode
    s = client(faulty, limits=Limits(connect_timeout=2.0, attempts=3)).sync_once()
    assert s.state == "updated", s.line()
    snapshot = ChannelManifest.from_bytes((faulty["dir"] / CHANNEL_NAME).read_bytes()).snapshot
    pack = read_pack(faulty["dir"] / snapshot.file, "snapshot")
    packs = [(start, n) for path, start, n in faulty["handler"].sent if path.endswith(".pack")]
    assert len(packs) == 2 and packs[0] == (None, snapshot.size), packs
    if mode == "corrupt":  # only the damaged (last) section came again, by Range
        last = max(pack.sections.values(), key=lambda sec: sec.offset)
        assert packs[1] == (last.offset, snapshot.size - last.offset), (packs, last)
    else:  # a damaged header vouches for nothing: the whole file again
        assert packs[1] == (None, snapshot.size), packs


def test_intact_prefix_keeps_the_sections_before_the_first_damaged_one(tmp_path):
    path = tmp_path / "x.pack"
    write_pack(path, "snapshot", {}, {"a": b"a" * 100, "b": b"b" * 100, "c": b"c" * 100})
    pack, good = read_pack(path, "snapshot"), path.read_bytes()
    assert intact_prefix(path, "snapshot") == 0  # nothing damaged: the signed hash failing means the header lies
    for name in "abc":
        damaged = bytearray(good)
        damaged[pack.sections[name].offset + 50] ^= 1
        path.write_bytes(bytes(damaged))
        assert intact_prefix(path, "snapshot") == pack.sections[name].offset
    path.write_bytes(good[:-1])  # short: the header no longer adds up
    assert intact_prefix(path, "snapshot") == 0
    assert intact_prefix(tmp_path / "missing.pack", "snapshot") == 0


class _FullFile:
    """A file opened for writing on a full disk: every write fails."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device (injected write failure)")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def failing_writes(monkeypatch, fail_now):
    """Files opened for writing (``open`` / ``os.fdopen``) fail their writes whenever ``fail_now()``."""
    import builtins
    real_open, real_fdopen = builtins.open, os.fdopen

    def wrap(f, mode):
        return _FullFile(f) if any(c in mode for c in "wax+") and fail_now() else f
    monkeypatch.setattr(builtins, "open", lambda file, mode="r", *a, **k: wrap(real_open(file, mode, *a, **k), mode))
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: wrap(real_fdopen(fd, mode, *a, **k), mode))


def test_failing_io_leaves_no_temp_files_and_old_state_loads(channel, monkeypatch):
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    frozen_versions = tree_digest(channel["device"] / "versions")
    for name in ("replace", "fsync", "write"):
        with monkeypatch.context() as m:
            if name == "write":
                failing_writes(m, lambda: True)
            else:
                def boom(*a, **k):
                    raise OSError(errno.ENOSPC, "No space left on device")
                m.setattr(os, name, boom)
            s = client(channel).sync_once()
        assert s.state == "failed" and "No space left" in s.message, s.line()
        assert not [p for p in channel["device"].rglob("*") if p.name.endswith(".tmp") or ".staging" in p.name]
        assert tree_digest(channel["device"] / "versions") == frozen_versions
        assert LiveRecommender(channel["device"], channel["pub"]).version == 1
    s = client(channel).sync_once()
    assert s.version == 2 and not [p for p in channel["device"].rglob("*") if ".tmp" in p.name or ".staging" in p.name]


def test_kth_io_failure_then_clean_rerun_equals_clean_run(channel, monkeypatch, tmp_path):
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    clean = tmp_path / "clean"
    shutil.copytree(channel["device"], clean)
    assert SyncClient(clean, channel["url"], channel["pub"]).sync_once().version == 2
    expected = {k: v for k, v in tree_digest(clean).items() if k != "state.json"}
    pristine = tmp_path / "pristine"
    shutil.copytree(channel["device"], pristine)
    k, failed_at = 1, []
    while True:
        shutil.rmtree(channel["device"])
        shutil.copytree(pristine, channel["device"])
        count = {"n": 0}
        reals = {n: getattr(os, n) for n in ("replace", "fsync", "write")}

        def nth_write_fails():
            count["n"] += 1
            return count["n"] == k

        def counted(name):
            def f(*a, **kw):
                count["n"] += 1
                if count["n"] == k:
                    raise OSError(errno.ENOSPC, f"injected failure of os.{name}")
                return reals[name](*a, **kw)
            return f
        with monkeypatch.context() as m:
            for n in reals:
                m.setattr(os, n, counted(n))
            failing_writes(m, nth_write_fails)  # opening a file for writing counts as one operation too
            if client(channel).sync_once().state == "failed":
                failed_at.append(k)
        if count["n"] < k:
            break
        s = client(channel).sync_once()
        assert s.version == 2, (k, s.line())
        got = {p: v for p, v in tree_digest(channel["device"]).items() if p != "state.json"}
        assert got == expected, k
        k += 1
    assert failed_at, "no I/O operation was intercepted"


CRASH = """
import os, signal, sys
from edge_rec import failpoints
from edge_rec.sync import SyncClient
target = sys.argv[4]
def hook(name):
    if name == target:
        os.kill(os.getpid(), signal.SIGKILL)
failpoints.hook = hook
SyncClient(sys.argv[1], sys.argv[2], sys.argv[3]).sync_once()
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["download", "verify", "stage-model", "stage-index", "write-manifest", "switch",
                                   "cleanup"])
def test_sigkill_at_every_checkpoint_leaves_a_whole_version(channel, point):
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    args = [str(channel["device"]), channel["url"], str(channel["pub"])]
    r = subprocess.run([sys.executable, "-c", CRASH, *args, point], capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    leftovers = [e.name for e in (channel["device"] / "versions").iterdir() if e.name.startswith(".")]
    r = subprocess.run([sys.executable, "-c", CRASH, *args, "cleanup-removed"], capture_output=True, timeout=120)
    if leftovers:  # killed again during the recovery, after it removed a half-built version
        assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
        left = [e.name for e in (channel["device"] / "versions").iterdir() if e.name.startswith(".")]
        assert len(left) < len(leftovers), (leftovers, left)
    else:
        assert point in ("download", "verify", "switch", "cleanup"), f"{point} should leave a staging directory"
    live = LiveRecommender(channel["device"], channel["pub"])
    assert live.version in (1, 2) and live.refresh().check_golden().passed
    s = client(channel).sync_once()
    assert s.version == 2 and s.state in ("updated", "current"), s.line()


def test_bad_new_version_is_rejected_or_rolled_back(channel, tmp_path):
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    # a delta whose signed golden cases the result cannot reproduce: rejected before the switch
    m = ChannelManifest.from_bytes((channel["dir"] / CHANNEL_NAME).read_bytes())
    pack_file = channel["dir"] / m.deltas[-1].file
    delta = read_delta(pack_file)
    target = Manifest.from_bytes(delta.manifest)
    for case in target.golden:
        case.query = [-x for x in case.query]
    target.signatures = [sign(target.canonical_bytes(), load_private_key(channel["key"]))]
    delta.manifest = target.to_json()
    from edge_rec.delta import write_delta
    write_delta(pack_file, delta)
    _resign_channel(channel["dir"], [load_private_key(channel["key"])],
                    lambda d: d["deltas"][-1].update(sha256=hashlib.sha256(pack_file.read_bytes()).hexdigest(),
                                                     size=pack_file.stat().st_size))
    frozen = tree_digest(channel["device"] / "versions")
    s = client(channel).sync_once()
    assert s.state == "rejected" and "golden" in s.message and s.version == 1
    assert tree_digest(channel["device"] / "versions") == frozen
    assert client(channel).sync_once().state == "failed"  # remembered as bad: not retried


def _tamper_snapshot(channel, swap):
    """Rewrite the channel's snapshot with ``swap(sections)`` applied, and re-sign channel.json for it
    (what a compromised or buggy publisher with the signing key could ship)."""
    from edge_rec.pack import read_pack, write_pack
    m = ChannelManifest.from_bytes((channel["dir"] / CHANNEL_NAME).read_bytes())
    file = channel["dir"] / m.snapshot.file
    pack = read_pack(file, "snapshot")
    sections = {name: pack.read(name) for name in pack.sections}
    swap(sections)
    write_pack(file, "snapshot", pack.meta, sections)
    _resign_channel(channel["dir"], [load_private_key(channel["key"])],
                    lambda d: d["snapshot"].update(sha256=hashlib.sha256(file.read_bytes()).hexdigest(),
                                                   size=file.stat().st_size))


def test_mixed_versions_and_wrong_dimension_are_rejected_before_loading(channel, monkeypatch):
    from edge_rec.pack import read_pack
    v1 = read_pack(next((channel["ch1"] / "snapshots").glob("*.pack")), "snapshot")
    channel["advance"]()

    def v1_index(sections):  # version 2's manifest and model, version 1's index
        sections["items.hnsw"] = v1.read("items.hnsw")
    _tamper_snapshot(channel, v1_index)
    loads = []
    import hnswlib
    real_load, real_restore = hnswlib.Index.load_index, hnswlib.Index.__setstate__  # the two ways a graph is loaded
    monkeypatch.setattr(hnswlib.Index, "load_index", lambda self, *a, **k: loads.append(a) or real_load(self, *a, **k))
    monkeypatch.setattr(hnswlib.Index, "__setstate__", lambda self, *a: loads.append(a) or real_restore(self, *a))
    s = client(channel).sync_once()
    assert s.state == "rejected" and "items.hnsw" in s.message and not loads, s.line()
    assert not list((channel["device"] / "versions").iterdir())

    channel["advance"]()

    def other_dimension(sections):  # a validly signed manifest over an index of another dimension
        m = Manifest.from_bytes(sections["manifest.json"])
        index = hnswlib.Index(space=m.index.space, dim=m.index.dim + 1)
        index.init_index(m.index.count, M=m.index.M)
        index.add_items(np.random.default_rng(0).normal(size=(m.index.count, m.index.dim + 1)).astype(np.float32))
        path = channel["root"] / "odd.hnsw"
        index.save_index(str(path))
        sections["items.hnsw"] = path.read_bytes()
        m.files["items.hnsw"] = type(m.files["items.hnsw"])(hashlib.sha256(sections["items.hnsw"]).hexdigest(),
                                                            len(sections["items.hnsw"]))
        m.signatures = [sign(m.canonical_bytes(), load_private_key(channel["key"]))]
        sections["manifest.json"] = m.to_json()
    _tamper_snapshot(channel, other_dimension)
    s = SyncClient(channel["device"].with_name("device2"), channel["url"], channel["pub"]).sync_once()  # v2 is
    # already marked bad on the first device
    assert s.state == "rejected" and "dimension" in s.message and not loads, s.line()


def test_a_model_giving_nan_is_rejected(channel, monkeypatch):
    from edge_rec.model import StudentModel
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    frozen = tree_digest(channel["device"] / "versions")
    # an int8 model cannot output NaN; a float one can: simulate it at the model boundary
    monkeypatch.setattr(StudentModel, "query", lambda self, v: np.full(self.spec.dim, np.nan, np.float32))
    s = client(channel).sync_once()
    assert s.state == "rejected" and "golden" in s.message and s.version == 1, s.line()
    assert tree_digest(channel["device"] / "versions") == frozen


def test_version_failing_after_the_switch_is_rolled_back(channel):
    assert client(channel).sync_once().version == 1
    channel["advance"]()
    assert client(channel).sync_once().version == 2
    with open(channel["device"] / "versions" / "2" / "items.hnsw", "r+b") as f:  # damaged on disk later
        f.seek(200)
        f.write(b"\xff" * 8)
    live = LiveRecommender(channel["device"], channel["pub"])
    assert live.version == 1 and "version 2" in live.rolled_back[0]
    assert live.recommend(k=5, history=[])
    assert 2 in json.loads((channel["device"] / "state.json").read_text())["bad_versions"]
    assert client(channel).sync_once().state == "failed"  # a bad version is not installed again


def test_channel_and_delta_parsers_fuzzed_quick(tmp_path, base):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    delta_bytes = next((base["ch2"] / "deltas").glob("*.pack")).read_bytes()
    channel_bytes = (base["ch2"] / CHANNEL_NAME).read_bytes()
    fuzz_parsers(tmp_path, delta_bytes, channel_bytes, given, settings, st, HealthCheck, examples=300)


@pytest.mark.slow
def test_channel_and_delta_parsers_fuzzed_10k(tmp_path, base):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    delta_bytes = next((base["ch2"] / "deltas").glob("*.pack")).read_bytes()
    channel_bytes = (base["ch2"] / CHANNEL_NAME).read_bytes()
    fuzz_parsers(tmp_path, delta_bytes, channel_bytes, given, settings, st, HealthCheck, examples=10000)


def fuzz_parsers(tmp_path, delta_bytes, channel_bytes, given, settings, st, HealthCheck, examples):
    from edge_rec.errors import ManifestError
    file = tmp_path / "fuzz.pack"
    edits = st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=8)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(edits, st.booleans(), st.integers(0, 10 ** 6))
    def run(changes, is_delta, cut):
        data = bytearray(delta_bytes if is_delta else channel_bytes)
        for pos, value in changes:
            data[pos % len(data)] = value
        data = bytes(data[:max(0, len(data) - cut % 64)] if cut % 3 == 0 else data)
        if is_delta:
            file.write_bytes(data)
            try:
                read_delta(file)
            except (DeltaError, PackError):
                pass
        else:
            try:
                ChannelManifest.from_bytes(data)
            except ManifestError:
                pass
    run()


def test_flipped_delta_byte_is_caught(tmp_path, base):
    data = bytearray(next((base["ch2"] / "deltas").glob("*.pack")).read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "d.pack").write_bytes(bytes(data))
    with pytest.raises((DeltaError, PackError)):
        read_delta(tmp_path / "d.pack")



def test_channel_chain_and_paths():
    from edge_rec.channel import Artifact
    from edge_rec.errors import ManifestError
    snap = Artifact("snapshots/v4.pack", "a" * 64, 10, 4)
    deltas = [Artifact(f"deltas/v{i}-v{i + 1}.pack", "b" * 64, 5, i + 1, i) for i in (1, 3)]
    m = ChannelManifest("c", 4, 0, 10, snap, deltas)
    assert m.chain(3) == deltas[1:] and m.chain(4) == [] and m.chain(1) is None  # 2 -> 3 is missing
    m.signatures = []
    for bad in ("../etc/passwd", "/abs", "a//b", "deltas/./x"):
        raw = json.loads(m.to_json())
        raw["snapshot"]["file"] = bad
        with pytest.raises(ManifestError, match="relative path"):
            ChannelManifest.from_bytes(json.dumps(raw).encode())
