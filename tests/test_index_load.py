"""The checked graph handed to hnswlib directly answers exactly as hnswlib's own loader does."""
from unittest import mock

import numpy as np
import pytest

from edge_rec.index import ItemIndex
from edge_rec.manifest import IndexSpec


@pytest.mark.parametrize("space", ["ip", "cosine", "l2"])
def test_restored_graph_answers_as_hnswlib_loads_it(tmp_path, space):
    import hnswlib
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 12)).astype(np.float32)
    built = hnswlib.Index(space=space, dim=12)
    built.init_index(len(vectors), M=6, ef_construction=60, random_seed=1)
    built.add_items(vectors, rng.permutation(len(vectors)))  # labels (table rows) in another order than elements
    for row in (5, 77, 1200):
        built.mark_deleted(row)  # a delta's tombstones
    path = tmp_path / "items.hnsw"
    built.save_index(str(path))
    spec = IndexSpec(path.name, space, 12, len(vectors), 6, 60, 40)
    queries = rng.standard_normal((50, 12)).astype(np.float32)
    with mock.patch("hnswlib.Index.load_index", side_effect=AssertionError("the loader was not needed")):
        restored = ItemIndex(path, spec)
    with mock.patch("hnswlib.Index.__setstate__", side_effect=TypeError("another pickle format")) as restore:
        loaded = ItemIndex(path, spec)  # the fallback: hnswlib's own loader
    assert restore.called
    assert restored.count == loaded.count == len(vectors)
    for q in queries:
        rows, dist = restored.search(q, 10)
        assert np.array_equal(rows, loaded.search(q, 10)[0]) and np.allclose(dist, loaded.search(q, 10)[1])
        assert not {5, 77, 1200} & set(rows.tolist())
        seen = set(rows[:8].tolist())  # excluded inside the search: hnswlib's filter sees each element's label
        assert np.array_equal(restored.search(q, 10, seen)[0], loaded.search(q, 10, seen)[0])
    assert restored._index.get_max_elements() == len(vectors) and restored._index.get_current_count() == len(vectors)
    with pytest.raises(RuntimeError, match="Label not found"):  # for queries only: no label map (a delta restores its own)
        restored._index.mark_deleted(9)
    loaded._index.mark_deleted(9)


def test_a_graph_grown_from_the_restored_state_is_the_one_hnswlibs_loader_grows(tmp_path):
    """A delta grows the checked graph restored in memory: at the file's width the grown file has the bytes
    hnswlib's own loader path gives (the same levels for new items), and a smaller width is the one used."""
    import hnswlib

    from edge_rec.index import check_index_file, restore_index
    path, spec = _small_index_file(tmp_path)
    added = np.random.default_rng(2).standard_normal((100, 4)).astype(np.float32)
    labels = np.arange(spec.count, spec.count + len(added))

    def grown(index, name):
        index.set_num_threads(1)
        index.mark_deleted(3)
        index.add_items(added, labels)
        index.save_index(str(tmp_path / name))
        return (tmp_path / name).read_bytes()
    loader = hnswlib.Index(space="ip", dim=4)
    loader.load_index(str(path), max_elements=spec.count + len(added))
    via_loader = grown(loader, "loader.hnsw")
    restored = restore_index(path, spec, check_index_file(path, spec), spec.count + len(added), spec.ef_construction)
    assert grown(restored, "restored.hnsw") == via_loader
    narrow = restore_index(path, spec, check_index_file(path, spec), spec.count + len(added), 10)
    assert narrow.ef_construction == 10 and grown(narrow, "narrow.hnsw") != via_loader


def _small_index_file(tmp_path):
    import hnswlib
    vectors = np.random.default_rng(1).standard_normal((400, 4)).astype(np.float32)
    index = hnswlib.Index(space="ip", dim=4)
    index.init_index(len(vectors), M=4, ef_construction=40, random_seed=1)
    index.add_items(vectors)
    path = tmp_path / "g.hnsw"
    index.save_index(str(path))
    return path, IndexSpec(path.name, "ip", 4, len(vectors), 4, 40, 20)


def test_a_damaged_graph_is_refused_before_hnswlib_reads_it(tmp_path):
    """Each kind of damage to the graph (not only the header) gets a clear error naming it."""
    from edge_rec.errors import ItemIndexError
    from edge_rec.index import _HEADER
    path, spec = _small_index_file(tmp_path)
    good = path.read_bytes()
    per_element = 4 * (2 * spec.M + 1) + 4 * spec.dim + 8
    upper = _HEADER.size + spec.count * per_element
    words = np.frombuffer(good[upper:], "<u4")
    size_word = upper + 4 * int(np.flatnonzero(words)[0])  # the first element above level 0
    label = _HEADER.size + per_element - 8

    def damaged(offset, value, cut=None, extra=b""):
        data = bytearray(good[:cut] if cut else good)
        if offset is not None:
            data[offset:offset + 4] = np.uint32(value).tobytes()
        return bytes(data) + extra

    cases = {"link block of": damaged(size_word, 7), "ends inside a link list": damaged(None, 0, cut=len(good) - 8),
             "bytes follow the last link list": damaged(None, 0, extra=b"\0" * 8),
             "points past the last element": damaged(_HEADER.size + 4, 10_000),
             "labels are not one per row": damaged(label, 1), "bad size word": damaged(_HEADER.size, 0x20001)}
    for message, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(ItemIndexError, match=message):
            ItemIndex(path, spec)
    path.write_bytes(good)
    assert ItemIndex(path, spec).count == spec.count
