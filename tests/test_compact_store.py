"""The compact item store (bundle format 6; format 8 stores each vector once): the graph over a projection
of the item vectors, the exact vectors re-ranking its candidates. How the converter chooses it, that it
answers like the plain graph on a real bundle, that format 7 compact bundles still open, and that a bad
projection file is refused before any search."""
import json
import shutil

import numpy as np
import pytest
from test_runtime import OPEN, resign, run_isolated

from converter import index as tuner
from converter.index import build_hnsw, exact_topk, excluded_recall, query_aware_projection, reranked_recall, tune_index
from edge_rec.bundle import sha256_file
from edge_rec.errors import ManifestError
from edge_rec.manifest import MANIFEST_NAME, FileEntry, IndexSpec, Manifest
from edge_rec.quant import quantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.vectors import GraphPart, ItemVectors, complete_basis, split_rows


def low_rank(n=4000, d=64, rank=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 0.02 * rng.normal(size=(n, d))).astype(np.float32)


def test_the_converter_picks_the_compact_store_when_a_few_directions_hold_the_vectors():
    items, queries = low_rank(), low_rank(300, seed=1)
    choice = tune_index(items, queries, target=0.95)
    assert choice.projection_dim in (16, 24, 32) and choice.rerank > 0 and choice.recall >= 0.97
    assert choice.bytes_per_item < min(choice.sizes.values())  # fewer bytes than any plain graph
    assert choice.compact_curves and "compact" in choice.form


def test_the_plain_graph_stays_when_no_projection_keeps_the_ranking():
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(3000, 64)).astype(np.float32), rng.normal(size=(200, 64)).astype(np.float32)
    choice = tune_index(items, queries, target=0.95, efs=(32, 64, 128, 256))
    assert choice.projection_dim == 0 and choice.rerank == 0 and choice.form.startswith("M ")
    assert tune_index(low_rank(), low_rank(300, seed=1), compact_dims=()).projection_dim == 0  # search indexes


def test_recall_with_seen_items_left_out_is_against_the_unseen_rows():
    items, queries = low_rank(2000), low_rank(100, seed=1)
    seen = [exact_topk(q[None], items, 30)[0] for q in queries]  # users who saw their 30 best items
    graph = build_hnsw(items, M=16)
    assert excluded_recall(graph, queries, items, seen, ef=2000) == 1.0  # an exhaustive beam finds the unseen best
    flat = query_aware_projection(items, queries, 1)
    line = build_hnsw(items @ flat, M=16)
    assert excluded_recall(line, queries, items, seen, ef=50, projection=flat, rerank=10) < 0.9  # 1 direction: lost


def test_the_choice_must_hold_with_each_users_seen_items_left_out(monkeypatch):
    items, queries = low_rank(), low_rank(300, seed=1)
    seen = [exact_topk(q[None], items, 30)[0] for q in queries]
    assert tune_index(items, queries, target=0.95).seen_excluded_recall is None
    kept = tune_index(items, queries, target=0.95, exclude=seen)
    assert kept.projection_dim and kept.seen_excluded_recall >= 0.97  # this catalog's projection keeps the unseen too
    # a projection that loses the unseen best: the plain graph wins, checked the same way
    real = tuner.excluded_recall
    monkeypatch.setattr(tuner, "excluded_recall", lambda *a, projection=None, **kw:
                        0.5 if projection is not None else real(*a, projection=projection, **kw))
    plain = tune_index(items, queries, target=0.95, exclude=seen)
    assert plain.projection_dim == 0 and plain.seen_excluded_recall >= 0.97


def test_a_small_catalog_gets_a_near_exact_index_within_its_byte_budget():
    items, queries = low_rank(), low_rank(300, seed=1)
    compact = tune_index(items, queries, target=0.95)
    assert not compact.near_exact and compact.recall < 0.995  # the most compact setting, not near-exact here
    near = tune_index(items, queries, target=0.95, near_exact_bytes=4e6)
    assert near.near_exact and near.recall >= 0.995 and near.bytes_per_item * len(items) <= 4e6
    settings = [(ef, r) for c in [*near.curves.values(), *near.compact_curves.values()] for ef, r in c.items()]
    assert near.ef_search == min(ef for ef, r in settings if r >= 0.995)  # the fastest near-exact setting
    tight = tune_index(items, queries, target=0.95, near_exact_bytes=10.0)  # no index fits 10 bytes
    assert not tight.near_exact and tight.bytes_per_item == compact.bytes_per_item


def test_the_projection_is_the_same_on_every_run():
    v, q = low_rank(30_000), low_rank(300, seed=1)
    p = query_aware_projection(v, q, 16)
    assert np.array_equal(p, query_aware_projection(v, q, 16))
    assert p.shape == (64, 16) and p.dtype == np.float32 and np.allclose(p.T @ p, np.eye(16), atol=1e-5)


def test_the_projection_follows_what_the_queries_ask_not_what_the_items_vary_most_in():
    """Items vary most in 32 directions the queries ignore; what the queries score lies in 16 quieter ones:
    the items' own principal directions lose the ranking, the query-aware ones keep it."""
    rng = np.random.default_rng(0)
    items = np.concatenate([3.0 * rng.normal(size=(4000, 32)), rng.normal(size=(4000, 16)),
                            0.05 * rng.normal(size=(4000, 16))], axis=1).astype(np.float32)
    queries = np.zeros((300, 64), np.float32)
    queries[:, 32:48] = rng.normal(size=(300, 16))
    truth = exact_topk(queries, items, 10)

    def recall(projection):
        return reranked_recall(build_hnsw(items @ projection, M=8), projection, items, queries, truth, 80, 128)
    _, _, vt = np.linalg.svd(items, full_matrices=False)
    assert recall(np.ascontiguousarray(vt[:16].T)) < 0.5
    assert recall(query_aware_projection(items, queries, 16)) > 0.95
    # the tuner fits the directions to other queries than those it measures recall on
    elsewhere = np.zeros_like(queries)
    elsewhere[:, :16] = rng.normal(size=(300, 16))
    fast = {"efs": (64, 128), "Ms": (8,), "compact_dims": (16,)}
    assert tune_index(items, queries, fit_queries=queries[::-1], **fast).projection_dim == 16
    assert tune_index(items, queries, fit_queries=elsewhere, **fast).projection_dim == 0


def test_the_manifest_needs_projection_and_rerank_together():
    base = {"file": "items.hnsw", "space": "ip", "dim": 16, "count": 10, "M": 8, "ef_construction": 200, "ef_search": 64}
    assert IndexSpec.from_dict(base).projection is None  # format 5 and older: the plain graph
    assert IndexSpec.from_dict(base | {"projection": "p.npy", "rerank": 80}).rerank == 80
    for bad in ({"projection": "p.npy"}, {"rerank": 80}, {"projection": "p.npy", "rerank": -1}):
        with pytest.raises(ManifestError, match="rerank"):
            IndexSpec.from_dict(base | bad)
    with pytest.raises(ManifestError, match="residual needs a projection"):
        IndexSpec.from_dict(base | {"residual": True})


def test_a_vector_is_the_sum_of_its_graph_coordinates_and_its_int8_rest():
    rng = np.random.default_rng(0)
    v = low_rank(500)
    basis = complete_basis(query_aware_projection(v, low_rank(300, seed=1), 16))
    assert np.allclose(basis.T @ basis, np.eye(64), atol=1e-5) and basis.dtype == np.float32
    coords, rest, scales = split_rows(v, basis, 16)
    assert coords.shape == (500, 16) and rest.shape == (500, 48) and rest.dtype == np.int8
    store = ItemVectors(rest, scales, GraphPart(basis, coords))
    rows = rng.integers(0, 500, 40)
    peak = np.abs(v[rows] @ basis[:, 16:]).max(axis=1, keepdims=True)
    assert np.abs(store.rows(rows) - v[rows]).max(axis=1, keepdims=True).max() <= (peak / 127).max()  # half a step, rotated
    q = rng.normal(size=64).astype(np.float32)
    exact = store.rows(rows) @ q
    assert np.allclose(store.scores(rows, q), exact, atol=1e-4)
    assert np.allclose(store.scores(rows, q, coords[rows] @ (q @ basis[:, :16])), exact, atol=1e-4)
    assert np.allclose(store.scores(slice(None), q)[rows], exact, atol=1e-4)
    # a row's bytes do not depend on the rows split with it (a delta splits only its upserts)
    one = split_rows(v[rows[:1]], basis, 16)
    assert np.array_equal(one[0], coords[rows[:1]]) and np.array_equal(one[1], rest[rows[:1]])


def _plain_copy(converted, tmp_path):
    """The converted bundle rewritten with the plain graph (the form of format 5 and older bundles)."""
    from converter.bundle import write_bundle
    from converter.index import IndexChoice
    from converter.quantize import Int8Model
    from edge_rec.bundle import Bundle
    from edge_rec.signing import load_private_key
    bundle = Bundle.open(converted["bundle"], load_private_key(converted["key"]).public_key())
    m = bundle.manifest
    with EdgeRecommender(bundle) as rec:
        vectors = rec.items.dequantized(np.arange(len(rec.items)))
        meta = [rec.items.metadata(r) for r in range(len(rec.items))]
        write_bundle(tmp_path / "plain", Int8Model(bundle.read_bytes(m.model.file), m.model, rec.model.op_report()),
                     rec.items.ids, vectors, meta, rec.items.popularity, IndexChoice("ip", 16, 200, 128, 1.0, 0.95, 0.0),
                     [np.zeros(0, np.int64)], converted["key"], bundle_version=1)
    return tmp_path / "plain"


def test_the_converted_bundle_is_compact_and_answers_like_the_plain_graph(converted, tmp_path):
    m = Manifest.from_bytes((converted["bundle"] / MANIFEST_NAME).read_bytes())
    assert m.index.projection in m.files and m.index.rerank > 0 and m.index.dim < m.items.dim  # the slice's choice
    plain = _plain_copy(converted, tmp_path)
    histories = [[converted["data"].items[i].id for i in h] for h in converted["split"].test.histories[:100]]
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as compact, \
            EdgeRecommender.open(plain, converted["pub"]) as full:
        assert full.bundle.manifest.index.projection is None
        same = [len({r.item_id for r in compact.recommend(10, h)} & {r.item_id for r in full.recommend(10, h)}) / 10
                for h in histories]
        assert np.mean(same) >= 0.95, np.mean(same)
        items = [h[-1] for h in histories[:30]]
        alike = [len({r.item_id for r in compact.similar_items(i, 10)} & {r.item_id for r in full.similar_items(i, 10)}) / 10
                 for i in items]
        assert np.mean(alike) >= 0.9, np.mean(alike)
        comedies = compact.recommend(10, histories[0], filter={"genres": "Comedy"})
        assert len(comedies) == 10 and all("Comedy" in r.metadata["genres"] for r in comedies)
        # the re-rank pool under exclusions: extra rows cover the excluded among the k kept, not the whole pool
        pool = compact.index.spec.rerank
        for h in histories[:20]:
            rows = compact.items.rows(h, strict=False)
            q, seen = compact.query_vector(rows[-compact.history_len:]), set(rows.tolist())
            lean, _ = compact.index.search(q, pool, seen, need=10)
            wide, _ = compact.index.search(q, pool, seen)
            assert 10 <= len(lean) <= pool and not seen & set(lean.tolist()) and len(wide) == pool
            assert lean.tolist() == wide[:len(lean)].tolist() or len(set(lean.tolist()) & set(wide.tolist())) >= 0.9 * len(lean)


def test_the_converted_compact_store_keeps_each_vector_once(converted):
    m = Manifest.from_bytes((converted["bundle"] / MANIFEST_NAME).read_bytes())
    assert m.format_version >= 8 and m.index.residual
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        assert rec.items.vectors.table.shape == (m.items.count, m.items.dim - m.index.dim)
        assert rec.items.vectors.graph.basis.shape == (m.items.dim, m.items.dim)
    header = 128  # the .npy header
    assert m.files[m.items.vectors].size == m.items.count * (m.items.dim - m.index.dim) + header


def test_a_format_7_compact_bundle_still_opens_and_answers_alike(converted, tmp_path):
    """Format 6 and 7 compact bundles hold every vector in full in the table and the graph's directions
    alone in the projection file: rewritten that way from the format 8 bundle, it answers the same."""
    old = tmp_path / "old"
    shutil.copytree(converted["bundle"], old)
    m = Manifest.from_bytes((old / MANIFEST_NAME).read_bytes())
    histories = [[converted["data"].items[i].id for i in h] for h in converted["split"].test.histories[:60]]
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as new:
        table, scales = quantize_rows(new.items.dequantized(np.arange(len(new.items))))
        basis = new.items.vectors.graph.basis
        want = [[r.item_id for r in new.recommend(10, h)] for h in histories]
    np.save(old / m.items.vectors, table)
    np.save(old / m.items.scales, scales)
    np.save(old / m.index.projection, basis[:, :m.index.dim])
    m.format_version, m.index.residual = 7, False
    for name in (m.items.vectors, m.items.scales, m.index.projection):
        m.files[name] = FileEntry(*sha256_file(old / name))
    (old / MANIFEST_NAME).write_bytes(m.to_json())
    resign(old, converted["key"])
    with EdgeRecommender.open(old, converted["pub"]) as rec:
        assert rec.items.vectors.graph is None and rec.items.vectors.table.shape[1] == m.items.dim
        got = [[r.item_id for r in rec.recommend(10, h)] for h in histories]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)]) >= 0.97


@pytest.mark.parametrize("damage", ["shape", "nan", "not npy", "not orthonormal"])
def test_a_bad_projection_signed_anyway_is_refused_when_opening(converted, tmp_path, damage):
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    m = Manifest.from_bytes((b / MANIFEST_NAME).read_bytes())
    path = b / m.index.projection
    p = np.load(path)
    if damage == "shape":
        np.save(path, p[:, :-1])
    elif damage == "nan":
        p[0, 0] = np.nan
        np.save(path, p)
    elif damage == "not orthonormal":
        np.save(path, p * np.float32(1.5))
    else:
        path.write_bytes(json.dumps(p.tolist()).encode())
    resign(b, converted["key"], m.index.projection)
    r = run_isolated(OPEN.format(bundle=str(b), pub=str(converted["pub"])))
    assert "IncompatibleBundleError" in r.stdout and m.index.projection in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("space", ["ip", "cosine", "l2"])
def test_exact_topk_matches_a_full_stable_sort_ties_included(space):
    rng = np.random.default_rng(0)
    vectors = np.round(rng.normal(size=(500, 8)), 1).astype(np.float32)
    vectors[10:20] = vectors[0]  # ten ties: the lower rows come first, as a stable sort orders them
    queries = rng.normal(size=(130, 8)).astype(np.float32)  # more than one chunk
    queries[:5] = vectors[0]
    if space == "l2":
        keys = ((queries[:, None] - vectors[None]) ** 2).sum(-1)
    else:
        unit = (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)) if space == "cosine" else (lambda x: x)
        keys = -(unit(queries) @ unit(vectors).T)
    assert np.array_equal(exact_topk(queries, vectors, 10, space), np.argsort(keys, axis=1, kind="stable")[:, :10])
