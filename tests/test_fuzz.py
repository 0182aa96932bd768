"""Mutation fuzzing of every parser a device feeds untrusted or damaged bytes to: the bundle manifest,
snapshot packs, delta application, the hnswlib header check and the history database. Each takes
10,000 mutated inputs (slow); bad input must give the runtime's own error, never another exception, a
crash or a hang. The channel manifest and delta parsers are fuzzed in test_sync.py."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_rec.bundle import Bundle
from edge_rec.errors import EdgeRecError
from edge_rec.history import HistoryStore
from edge_rec.index import check_index_file
from edge_rec.manifest import MANIFEST_NAME, Manifest

N = int(os.environ.get("EDGE_REC_FUZZ_CASES", 10_000))  # fewer only to try the tests out
pytestmark = pytest.mark.slow


def mutate(data: bytes, rng: np.random.Generator, hot: int = 0) -> bytes:
    """One random mutation: flipped bytes (within the first ``hot`` bytes when given, mostly), a cut, a
    duplicated or removed span, or random bytes spliced in."""
    b = bytearray(data)
    kind = rng.integers(5)
    if kind == 0 or not b:
        for _ in range(int(rng.integers(1, 8))):
            span = hot if hot and rng.random() < 0.8 else len(b)
            if span:
                b[int(rng.integers(span))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del b[int(rng.integers(len(b))):]
    elif kind == 2:
        i, n = int(rng.integers(len(b))), int(rng.integers(1, 64))
        b[i:i] = b[i:i + n]
    elif kind == 3:
        i = int(rng.integers(len(b)))
        del b[i:i + int(rng.integers(1, 64))]
    else:
        i = int(rng.integers(len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    return bytes(b)


def mutate_json(obj, rng: np.random.Generator):
    """Replace one value somewhere in a JSON document with a value of another type (or drop a key)."""
    obj = json.loads(json.dumps(obj))
    node = obj
    for _ in range(int(rng.integers(1, 6))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = keys[int(rng.integers(len(keys)))]
        if not isinstance(node[key], (dict, list)) or rng.random() < 0.3:
            choice = int(rng.integers(7))
            if choice == 0 and isinstance(node, dict):
                del node[key]
            else:
                node[key] = [None, -1, 2 ** 70, "x", [], {}, 1.5e308][choice]
            return obj
        node = node[key]
    return obj


def test_bundle_manifest(converted):
    data = (converted["bundle"] / MANIFEST_NAME).read_bytes()
    raw = json.loads(data)
    rng = np.random.default_rng(1)
    parsed = 0
    for i in range(N):
        case = mutate(data, rng) if i % 2 else json.dumps(mutate_json(raw, rng)).encode()
        try:
            Manifest.from_bytes(case)
            parsed += 1
        except EdgeRecError:
            pass
    assert parsed < N  # most mutations are refused; the ones that parse were type-checked field by field


def test_snapshot_packs(converted, tmp_path):
    from converter.publish import publish_bundle
    from edge_rec.pack import read_pack
    from edge_rec.snapshot import unpack_snapshot
    channel = publish_bundle(tmp_path / "ch", converted["bundle"], converted["key"], name="fuzz")
    original = (tmp_path / "ch" / channel.snapshot.file).read_bytes()
    header = len(original) - sum(read_pack(tmp_path / "ch" / channel.snapshot.file, "snapshot").sections[n].size
                                 for n in read_pack(tmp_path / "ch" / channel.snapshot.file, "snapshot").sections)
    work, out = tmp_path / "case.pack", tmp_path / "out"
    rng = np.random.default_rng(2)
    unpacked = 0
    for _ in range(N):
        work.write_bytes(mutate(original, rng, hot=header))
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            unpack_snapshot(work, out)  # what a device does with a downloaded snapshot
            unpacked += 1
        except EdgeRecError:
            pass
        assert not [p for p in out.iterdir() if p.name.startswith(".") or p.is_dir()]
    assert unpacked < N


def test_delta_application(converted, tmp_path):
    """Damaged deltas go down the sync client's path: parse, verify the target manifest, apply, check."""
    from converter.publish import changes_from_vectors, publish_bundle, publish_changes
    from edge_rec.delta import apply_delta, read_delta
    from edge_rec.recommender import EdgeRecommender
    from edge_rec.signing import verify
    publish_bundle(tmp_path / "ch", converted["bundle"], converted["key"], name="fuzz")
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        rows = np.arange(6)
        vectors, search = rec.items.dequantized(rows), rec.search_retriever.vectors(rows)
        ids = [rec.items.ids[r] for r in rows]
    changes = changes_from_vectors({f"n{i}": vectors[i] for i in range(3)} | {ids[3]: vectors[3] * 0.9},
                                   {f"n{i}": {"title": f"n{i}"} for i in range(3)} | {ids[3]: {"title": "changed"}},
                                   [ids[5]], {f"n{i}": search[i] for i in range(3)} | {ids[3]: search[3]})
    m = publish_changes(tmp_path / "ch", changes, converted["key"])
    original = (tmp_path / "ch" / m.deltas[-1].file).read_bytes()
    base = Bundle.open(converted["bundle"], converted["pub"])
    work, rng, applied = tmp_path / "case.pack", np.random.default_rng(3), 0
    for i in range(N):
        work.write_bytes(mutate(original, rng, hot=4096))
        stage = tmp_path / f"stage{i % 2}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            delta = read_delta(work)
            target = Manifest.from_bytes(delta.manifest)
            verify(target.signed_payload, target.signatures, [converted["pub"]])
            apply_delta(base, delta, stage, target)
            applied += 1
        except EdgeRecError:
            pass
    assert applied < N


LOAD_ALL = """
import sys, hnswlib
from pathlib import Path
from edge_rec.manifest import IndexSpec
spec = IndexSpec(*sys.argv[2:9])
for path in sorted(Path(sys.argv[1]).glob("*.hnsw")):
    index = hnswlib.Index(space=spec.space, dim=int(spec.dim))
    try:
        index.load_index(str(path), max_elements=int(spec.count))
        index.knn_query([[0.1] * int(spec.dim)], k=1)
    except RuntimeError:
        pass
print("survived")
"""


def test_hnswlib_header_check(converted, tmp_path):
    """check_index_file stands between a file and hnswlib, which crashes on damaged headers: whatever it lets
    through (besides the original) must then load without crashing, checked in a separate process."""
    m = Manifest.from_bytes((converted["bundle"] / MANIFEST_NAME).read_bytes())
    original = (converted["bundle"] / m.index.file).read_bytes()
    work, rng = tmp_path / "case.hnsw", np.random.default_rng(4)
    passed = tmp_path / "passed"
    passed.mkdir()
    for i in range(N):
        case = mutate(original[:256], rng, hot=96) + original[256:]
        work.write_bytes(case)
        try:
            check_index_file(work, m.index)
        except EdgeRecError:
            continue
        if case != original:
            shutil.copy(work, passed / f"{i}.hnsw")
    spec = m.index
    args = [spec.file, spec.space, spec.dim, spec.count, spec.M, spec.ef_construction, spec.ef_search]
    r = subprocess.run([sys.executable, "-c", LOAD_ALL, str(passed), *map(str, args)], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0 and "survived" in r.stdout, (len(list(passed.iterdir())), r.returncode, r.stderr[-2000:])


FUZZ_HISTORY = """
import sys
import numpy as np
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_fuzz import mutate
from edge_rec.errors import HistoryError
from edge_rec.history import HistoryStore
original = Path(sys.argv[1]).read_bytes()
work = Path(sys.argv[2])
rng = np.random.default_rng(5)
opened = 0
for i in range({n}):
    for suffix in ("-wal", "-shm"):
        Path(str(work) + suffix).unlink(missing_ok=True)
    work.write_bytes(mutate(original, rng, hot=100))
    try:
        store = HistoryStore(work)
        store.last(5)
        store.record("fuzz-item")
        store.export()
        store.close()
        opened += 1
    except HistoryError:
        pass
print("cases", {n}, "opened", opened)
"""


def test_history_database(tmp_path):
    """Damaged SQLite files (in a separate process, so a crash would show): HistoryError or a working store."""
    db = tmp_path / "h.db"
    store = HistoryStore(db)
    for t in range(200):
        store.record(f"item-{t % 37}", "view" if t % 3 else "buy", ts=float(t))
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    code = textwrap.dedent(FUZZ_HISTORY.format(tests=str(Path(__file__).parent), n=N))
    r = subprocess.run([sys.executable, "-c", code, str(db), str(tmp_path / "case.db")], capture_output=True, text=True,
                       timeout=1800, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert r.returncode == 0 and f"cases {N}" in r.stdout, r.stderr[-3000:]
