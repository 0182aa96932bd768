"""The device runtime on a real bundle: recommend, filters, similar items, the history store, concurrency,
and bad input. Anything that could crash the process (hnswlib on a bad file) runs in a subprocess."""
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from edge_rec.bundle import Bundle, sha256_file
from edge_rec.errors import HistoryError, IntegrityError, ModelError
from edge_rec.history import HistoryStore
from edge_rec.manifest import MANIFEST_NAME, FileEntry, Manifest
from edge_rec.model import load_backend
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key, sign


@pytest.fixture(scope="module")
def rec(converted):
    return EdgeRecommender.open(converted["bundle"], converted["pub"])


def some_history(converted, n=30):
    split = converted["split"]
    return [converted["data"].items[i].id for i in split.test.histories[0][-n:]]


def run_isolated(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; a segfault shows up as a negative return code."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode >= 0, f"the process died with signal {-r.returncode}: {r.stderr[-2000:]}"
    return r


def resign(bundle, key, changed_file=None):
    """Re-hash one file and re-sign the manifest: what a buggy converter (not an attacker) could ship."""
    m = Manifest.from_bytes((bundle / MANIFEST_NAME).read_bytes())
    if changed_file:
        m.files[changed_file] = FileEntry(*sha256_file(bundle / changed_file))
    m.signatures = [sign(m.canonical_bytes(), load_private_key(key))]
    (bundle / MANIFEST_NAME).write_bytes(m.to_json())


def test_recommend_basics(rec, converted):
    hist = some_history(converted)
    top = rec.recommend(k=10, history=hist)
    assert len(top) == 10 and not set(t.item_id for t in top) & set(hist)
    assert all(a.score >= b.score for a, b in zip(top, top[1:]))
    assert top[0].metadata["title"]
    assert rec.recommend(k=10, history=hist + ["no-such-item"])[0].item_id == top[0].item_id  # unknown ids ignored
    popular = rec.recommend(k=5, history=[])
    assert [p.item_id for p in popular] == [rec.items.ids[r] for r in rec.items.popularity[:5]]
    assert len(rec.recommend(k=10, history=["no-such-item"])) == 10  # only unknown ids = empty history


def test_k_bounds(rec, converted):
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            rec.recommend(k=k, history=some_history(converted))
    everything = rec.recommend(k=len(rec.items) + 50, history=some_history(converted, 5))
    assert len(everything) == len(rec.items) - 5
    assert len({r.item_id for r in everything}) == len(everything)


def test_filters(rec, converted):
    hist = some_history(converted)
    comedies = rec.recommend(k=10, history=hist, filter={"genres": "Comedy"})
    assert len(comedies) == 10 and all("Comedy" in r.metadata["genres"] for r in comedies)
    old = rec.recommend(k=5, history=hist, filter=lambda m: (m.get("year") or 3000) < 1960)
    assert old and all(r.metadata["year"] < 1960 for r in old)
    assert rec.recommend(k=5, history=hist, filter={"genres": "No Such Genre"}) == []
    assert all("Drama" in r.metadata["genres"] for r in rec.recommend(k=5, history=[], filter={"genres": "Drama"}))
    with pytest.raises(TypeError):
        rec.recommend(k=5, history=hist, filter="Comedy")


def test_similar_items(rec, converted):
    item = converted["data"].items[0].id
    sim = rec.similar_items(item, k=5)
    assert len(sim) == 5 and item not in [s.item_id for s in sim]
    with pytest.raises(KeyError, match="unknown item id"):
        rec.similar_items("no-such-item")


def test_batch_and_concurrency_match_sequential(rec, converted):
    histories = [[converted["data"].items[i].id for i in h[-20:]] for h in converted["split"].test.histories[:40]]
    expected = [[r.item_id for r in rec.recommend(k=10, history=h)] for h in histories]
    assert [[r.item_id for r in recs] for recs in rec.recommend_batch(histories, k=10)] == expected
    results = {}

    def worker(t):
        results[t] = [[r.item_id for r in rec.recommend(k=10, history=h)] for h in histories]
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == expected for v in results.values())


def test_history_store(tmp_path):
    store = HistoryStore(tmp_path / "h.db", max_events=5)
    for i, item in enumerate(["a", "b", "c", "d", "e", "f"]):
        store.record(item, "view" if item != "c" else "buy", ts=100 + i)
    assert store.last(3) == ["d", "e", "f"] and len(store) == 5  # the oldest event was dropped
    assert store.last(10, kinds=["buy"]) == ["c"]
    assert store.export()[0] == {"item_id": "b", "kind": "view", "ts": 101.0}
    with pytest.raises(ValueError):
        store.record("")
    store.clear()
    assert store.last(10) == [] and len(store) == 0
    store.close()
    mode = sqlite3.connect(tmp_path / "h.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_history_reads_are_cached_until_anyone_writes(tmp_path):
    """last() answers from memory while the database is unchanged; a write by this store, another
    connection or another process is seen at once."""
    store, other = HistoryStore(tmp_path / "h.db"), HistoryStore(tmp_path / "h.db")
    for i in range(50):
        store.record(f"i{i}", ts=float(i))
    assert store.last(3) == ["i47", "i48", "i49"] and store.last(2) == ["i48", "i49"]  # the second from the cache
    store.last(2).append("mutated")
    assert store.last(2) == ["i48", "i49"]  # callers get copies
    other.record("theirs", ts=100.0)
    assert store.last(2) == ["i49", "theirs"]
    sqlite3.connect(tmp_path / "h.db", isolation_level=None).execute(
        "INSERT INTO events (item_id, kind, ts) VALUES ('raw', 'view', 200)")
    assert store.last(1) == ["raw"] and len(store.last(1000)) == 52
    store.record("mine", ts=300.0)  # appended to the cached window, no read
    assert store.last(2) == ["raw", "mine"] and store.last(1000)[-3:] == ["theirs", "raw", "mine"]
    store.record("older", ts=1.5)  # not the newest: the window is read again, in time order
    assert store.last(1000)[:3] == ["i0", "i1", "older"] and store.last(1) == ["mine"]
    store.clear()
    assert store.last(5) == [] and other.last(5) == []
    small = HistoryStore(tmp_path / "s.db", max_events=3)
    for i in range(6):
        small.record(f"s{i}", ts=float(i))
        assert small.last(10) == [f"s{j}" for j in range(max(0, i - 2), i + 1)]  # trimming keeps the window exact
    for s in (store, other, small):
        s.close()


def test_corrupt_history_database(tmp_path):
    db = tmp_path / "h.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(HistoryError, match="corrupt"):
        HistoryStore(db)
    HistoryStore.reset(db)
    assert HistoryStore(db).last(5) == []


def test_recommend_reads_the_device_history(converted, tmp_path):
    store = HistoryStore(tmp_path / "h.db")
    hist = some_history(converted, 10)
    for t, item in enumerate(hist):
        store.record(item, ts=t)
    rec = EdgeRecommender.open(converted["bundle"], converted["pub"], history=store)
    assert [r.item_id for r in rec.recommend(k=10)] == [r.item_id for r in rec.recommend(k=10, history=hist)]


def test_history_rows_follow_a_sliding_window_exactly(rec):
    """The incrementally kept rows and seen counts equal a fresh mapping after every kind of move."""
    from collections import Counter

    from edge_rec.history_rows import HistoryRows
    rng = np.random.default_rng(0)
    catalog = [i for i in rec.items.ids if i]
    pool = catalog[:40] + ["not-in-the-catalog"]
    window, rows = [], HistoryRows(rec.items)
    for step in range(400):
        move = rng.integers(0, 5)
        if move < 3:  # append one to three events, dropping the oldest beyond 25 (a full window slides)
            window = (window + [pool[int(j)] for j in rng.integers(0, len(pool), move + 1)])[-25:]
        elif move == 3:  # another writer: the store re-read the database, new string objects
            window = [i.encode().decode() for i in window]
        else:  # more than MAX_SHIFT new events at once
            window = (window + [pool[int(j)] for j in rng.integers(0, len(pool), 7)])[-25:]
        rows.update(list(window))
        expected = rec.items.aligned_rows(window)
        assert np.array_equal(rows.aligned, expected), step
        assert rows.seen == dict(Counter(r for r in expected.tolist() if r >= 0)), step


def test_device_history_recommendations_match_explicit_ones_across_stores(converted, rec, tmp_path):
    """One recommender serving two alternating history stores (two profiles on a kiosk) keeps each one's
    window apart: every answer equals the one for the same history given explicitly."""
    split, items = converted["split"], converted["data"].items
    stores, histories = [], []
    for u in range(2):
        store = HistoryStore(tmp_path / f"h{u}.db")
        hist = [items[i].id for i in split.test.histories[u][-15:]]
        for t, item in enumerate(hist):
            store.record(item, ts=t)
        stores.append(store)
        histories.append(hist)
    try:
        for tap in range(6):
            for u in range(2):
                item = histories[1 - u][tap]  # the other user's item: new to this one
                stores[u].record(item, ts=100 + tap)
                histories[u].append(item)
                rec.history = stores[u]
                got = [r.item_id for r in rec.recommend(k=10)]
                assert got == [r.item_id for r in rec.recommend(k=10, history=histories[u])], (tap, u)
                assert not set(got) & set(histories[u])
    finally:
        rec.history = None
        for store in stores:
            store.close()


def test_metadata_cache_is_a_bounded_lru_of_copies(rec, monkeypatch):
    monkeypatch.setattr(type(rec.items), "CACHE_ROWS", 4)
    rec.items._cache.clear()
    first = rec.items.metadata(0)
    first["title"] = "changed by the caller"
    assert rec.items.metadata(0)["title"] != "changed by the caller"
    for r in range(1, 5):
        rec.items.metadata(r)
    assert list(rec.items._cache) == [1, 2, 3, 4]  # row 0, least recently used, left first
    rec.items.metadata(1)
    rec.items.metadata(5)
    assert list(rec.items._cache) == [3, 4, 1, 5]
    assert rec.items.metadata_rows([5, 0, 5]) == [rec.items.metadata(5), rec.items.metadata(0), rec.items.metadata(5)]


def test_missing_interpreter_is_a_clear_error():
    with pytest.raises(ModelError, match="no TFLite interpreter"):
        load_backend("no_such_backend")


OPEN = """
import sys
from edge_rec.recommender import EdgeRecommender
from edge_rec.errors import EdgeRecError
try:
    EdgeRecommender.open(sys.argv[1] if len(sys.argv) > 1 else {bundle!r}, {pub!r})
    print("OPENED")
except EdgeRecError as e:
    print(type(e).__name__, e)
"""


def bundle_copy(converted, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(converted["bundle"], dst)
    return dst, Manifest.from_bytes((dst / MANIFEST_NAME).read_bytes())


@pytest.mark.parametrize("offset", [0, 40, 100, -5])
def test_flipped_index_byte_never_reaches_hnswlib(converted, tmp_path, offset):
    b, m = bundle_copy(converted, tmp_path)
    data = bytearray((b / m.index.file).read_bytes())
    data[offset] ^= 0xFF
    (b / m.index.file).write_bytes(bytes(data))
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IntegrityError" in r.stdout and "items.hnsw: sha256" in r.stdout


def test_index_of_another_dimension_is_rejected_before_loading(converted, tmp_path):
    from converter.index import build_hnsw
    b, m = bundle_copy(converted, tmp_path)
    other = build_hnsw(np.random.default_rng(0).normal(size=(m.index.count, m.index.dim + 8)).astype(np.float32), "ip", m.index.M)
    other.save_index(str(b / m.index.file))
    resign(b, converted["key"], m.index.file)
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IncompatibleBundleError" in r.stdout and f"dimension {m.index.dim + 8}, the manifest says {m.index.dim}" in r.stdout


@pytest.mark.parametrize("field,value", [(2, 10**12), (3, 7), (7, 2**31), (10, 3)])
def test_damaged_index_header_signed_anyway_is_rejected(converted, tmp_path, field, value):
    """Header fields that crash hnswlib (counts, sizes, entry point, M) are checked first."""
    from edge_rec.index import _HEADER
    b, m = bundle_copy(converted, tmp_path)
    path = b / m.index.file
    data = bytearray(path.read_bytes())
    fields = list(_HEADER.unpack_from(data))
    fields[field] = value
    _HEADER.pack_into(data, 0, *fields)
    path.write_bytes(bytes(data))
    resign(b, converted["key"], m.index.file)
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IncompatibleBundleError" in r.stdout, r.stdout + r.stderr


def test_truncated_or_missing_files(converted, tmp_path):
    b, m = bundle_copy(converted, tmp_path)
    (b / m.index.file).write_bytes((b / m.index.file).read_bytes()[:1000])
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IntegrityError" in r.stdout
    shutil.copy(converted["bundle"] / m.index.file, b / m.index.file)
    (b / m.model.file).unlink()
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IntegrityError" in r.stdout and "missing" in r.stdout
    r = run_isolated(OPEN.format(bundle=str(tmp_path / "nothing"), pub=str(converted["pub"])))
    assert "ManifestError" in r.stdout and "not found" in r.stdout


def test_cli_inspect_recommend_similar(converted):
    b, pub = str(converted["bundle"]), str(converted["pub"])
    cli = [sys.executable, "-m", "edge_rec.cli"]
    r = subprocess.run(cli + ["inspect", b, "--key", pub], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "golden cases (6 of them search queries): 14/14" in r.stdout and "PASS" in r.stdout, r.stdout + r.stderr
    assert "Edge TPU" in r.stdout and "no Edge TPU" in r.stdout
    hist = ",".join(some_history(converted, 5))
    r = subprocess.run(cli + ["recommend", b, "--key", pub, "--history", hist, "-k", "3", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3
    r = subprocess.run(cli + ["similar", b, "--key", pub, "no-such-item"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "unknown item id" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cli + ["recommend", b, "--key", "00" * 32], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "valid signature" in r.stderr


@pytest.mark.parametrize("collide", [False, True])
def test_item_table_maps_ids_to_rows_even_when_hashes_collide(collide):
    from unittest import mock

    from edge_rec.errors import IncompatibleBundleError
    from edge_rec.items import TOMBSTONE, ItemTable

    def table(ids):
        return ItemTable(np.zeros((len(ids), 2), np.int8), np.ones(len(ids), np.float32), ids, np.zeros(0, np.int64))
    # with ``collide`` every id of the same length has the same hash: lookups must still compare the ids
    by_length = (mock.patch("edge_rec.item_ids.hash_bytes", len),
                 mock.patch("edge_rec.item_ids.hash_spans", lambda raw, s, e: (e - s).astype(np.uint64)))
    with by_length[0] if collide else mock.MagicMock(), by_length[1] if collide else mock.MagicMock():
        items = table(["aa", "bb", TOMBSTONE, "cc", TOMBSTONE, "d"])
        assert items.aligned_rows(["bb", "cc", "zz", "aa", TOMBSTONE, "d", 7]).tolist() == [1, 3, -1, 0, -1, 5, -1]
        assert items.deleted.tolist() == [2, 4] and "cc" in items and TOMBSTONE not in items and 3 not in items
        assert items.rows(["d", "aa"]).tolist() == [5, 0]
        with pytest.raises(KeyError, match="zz"):
            items.rows(["aa", "zz"])
        for dup in (["aa", "bb", "aa"], ["x", "aa", "bb", "cc", "bb"]):
            with pytest.raises(IncompatibleBundleError, match="not unique"):
                table(dup)
        assert table([]).aligned_rows(["aa"]).tolist() == [-1]


def test_tables_are_mapped_from_the_verified_file(converted, tmp_path):
    """map_array gives load_array's values without reading the file into memory, refuses a file altered
    since it was verified, and a signed file that is not a plain .npy array (a buggy converter's)."""
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    bundle = Bundle.open(b, converted["pub"])
    name = bundle.manifest.items.vectors
    mapped = bundle.map_array(name)
    assert isinstance(mapped.base, np.memmap) and not mapped.flags.writeable and not mapped.flags.owndata
    assert np.array_equal(mapped, bundle.load_array(name))
    file = b / name
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))  # altered after the bundle was opened: checked again before it is mapped
    with pytest.raises(IntegrityError, match="sha256"):
        bundle.map_array(name)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    file.write_bytes(buf.getvalue())
    resign(b, converted["key"], name)
    with pytest.raises(IntegrityError, match="not a valid .npy array"):
        Bundle.open(b, converted["pub"]).map_array(name)


def test_item_metadata_lines_found_across_read_chunks(tmp_path):
    from edge_rec.items import ItemTable
    lines = [json.dumps({"title": "x" * n}) for n in (10, (1 << 20) - 5, 3, 2 << 20, 0)]  # lines cross 1 MB reads
    path = tmp_path / "meta.jsonl"
    path.write_bytes("\n".join(lines).encode())  # the last line without its newline
    items = ItemTable(np.zeros((5, 2), np.int8), np.ones(5, np.float32), list("abcde"), np.zeros(0, np.int64), path)
    assert [len(items.metadata(r)["title"]) for r in (4, 1, 3, 0, 2)] == [0, (1 << 20) - 5, 2 << 20, 10, 3]
    path.write_bytes(("\n".join(lines) + "\n").encode())
    items = ItemTable(np.zeros((5, 2), np.int8), np.ones(5, np.float32), list("abcde"), np.zeros(0, np.int64), path)
    assert len(items.metadata(4)["title"]) == 0 and len(items.metadata(3)["title"]) == 2 << 20
    path.write_bytes(("\n".join(lines[:4]) + "\n").encode())
    with pytest.raises(Exception, match="4 lines for 5 items"):
        ItemTable(np.zeros((5, 2), np.int8), np.ones(5, np.float32), list("abcde"), np.zeros(0, np.int64), path).metadata(0)
    for n in (37, 48):  # several blocks of LINE_BLOCK lines, the last one short or full
        path.write_bytes("".join(json.dumps({"row": r, "pad": "y" * (r % 7)}) + "\n" for r in range(n)).encode())
        ids = [str(r) for r in range(n)]
        items = ItemTable(np.zeros((n, 2), np.int8), np.ones(n, np.float32), ids, np.zeros(0, np.int64), path)
        assert [items.metadata(r)["row"] for r in np.random.default_rng(n).permutation(n)] == \
            np.random.default_rng(n).permutation(n).tolist()
        assert items.metadata(n) == {} and items.metadata(-1) == {}
        with pytest.raises(Exception, match=f"more than {n - 1} lines"):
            ItemTable(np.zeros((n - 1, 2), np.int8), np.ones(n - 1, np.float32), ids[:-1], np.zeros(0, np.int64),
                      path).metadata(0)


def test_recommend_follows_the_bundles_repeat_consumption_protocol(converted, tmp_path):
    """``seen_items`` in the manifest sets what recommend() does with seen items unless the caller says."""
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    histories = [[converted["data"].items[i].id for i in h[-30:]] for h in converted["split"].test.histories[:20]]
    assert Manifest.from_bytes((b / MANIFEST_NAME).read_bytes()).seen_items == converted["split"].seen_items == "exclude"
    m = Manifest.from_bytes((b / MANIFEST_NAME).read_bytes())
    m.seen_items = "repeat"
    m.signatures = [sign(m.canonical_bytes(), load_private_key(converted["key"]))]
    (b / MANIFEST_NAME).write_bytes(m.to_json())
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as ex, EdgeRecommender.open(b, converted["pub"]) as rep:
        assert ex.exclude_seen and not rep.exclude_seen
        repeated = 0
        for h in histories:
            def ids(rec, **kw):
                return [r.item_id for r in rec.recommend(50, h, **kw)]
            assert ids(ex) == ids(ex, exclude_seen=True) == ids(rep, exclude_seen=True)
            assert ids(rep) == ids(rep, exclude_seen=False) == ids(ex, exclude_seen=False)
            assert not set(ids(ex)) & set(h)
            repeated += bool(set(ids(rep)) & set(h))
        assert repeated > 0  # with repeats allowed, seen items do come back
