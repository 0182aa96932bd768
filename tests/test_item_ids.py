"""The compact id table: the ids file read in place, ids <-> rows, and bad files refused clearly."""
import json

import numpy as np
import pytest

from edge_rec.errors import IncompatibleBundleError, ManifestError
from edge_rec.file_bytes import FileBytes
from edge_rec.item_ids import ItemIds

PLAIN = ["1", "2", "", "abc-42", "Überfilm", "東京物語", "a b,c", "[x]", "", "z" * 300]
ESCAPED = ['say "hi"', "back\\slash", "tab\there", "\ud800lone", "ctrl\x01"]


@pytest.mark.parametrize("ids", [PLAIN, ESCAPED, PLAIN + ESCAPED, []])
@pytest.mark.parametrize("indent", [None, 2])
def test_ids_file_reads_as_json_does(ids, indent):
    escape_all = indent is None or any("\ud800" in i for i in ids)  # a lone surrogate has no UTF-8 form
    data = json.dumps(ids, indent=indent, ensure_ascii=escape_all).encode()
    table = ItemIds.from_json(data)
    assert (table._blob is data) == (b"\\" not in data)  # without escapes the file's bytes are the blob
    assert list(table) == ids and len(table) == len(ids) and table[:3] == ids[:3]
    assert [table[r] for r in range(len(ids))] == ids
    live = [i for i in ids if i]
    assert table.rows(live + ["missing", ""]).tolist() == [ids.index(i) for i in live] + [-1, -1]
    assert table.tombstones().tolist() == [r for r, i in enumerate(ids) if not i]
    assert all(i in table for i in live) and "" not in table and 7 not in table


@pytest.mark.parametrize("data", [b'["a", 1]', b'{"a": "b"}', b'["a"', b'["a",]', b'["a" "b"]', b'"a"', b"",
                                  b'["a"]x', b'[["a"]]', b'["a\x01"]', b'["\xff"]', b'["a\\"]'])
def test_a_malformed_ids_file_is_refused_clearly(data):
    with pytest.raises(ManifestError, match="item ids"):
        ItemIds.from_json(data)


def test_duplicate_ids_are_refused_but_tombstones_may_repeat():
    with pytest.raises(IncompatibleBundleError, match="not unique"):
        ItemIds.from_json(b'["a", "b", "a"]')
    assert ItemIds.from_list(["", "a", ""]).tombstones().tolist() == [0, 2]


def test_non_string_ids_are_looked_up_by_their_text():
    table = ItemIds.from_list(["7", "8"])
    assert table.rows([8, "7", np.int64(9)]).tolist() == [1, 0, -1]


def test_one_hash_in_python_and_in_numpy():
    """Few ids are hashed in Python, many by numpy: both must give every id the same hash."""
    from edge_rec.item_ids import hash_bytes, hash_spans
    rng = np.random.default_rng(0)
    ids = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in [0, 1, 7, 8, 9, 15, 16, 17, 40] + list(rng.integers(0, 30, 200))]
    ends = np.cumsum([len(i) for i in ids])
    many = hash_spans(np.frombuffer(b"".join(ids), np.uint8), np.r_[0, ends[:-1]], ends)
    assert many.tolist() == [hash_bytes(i) for i in ids]
    assert len(set(hash_bytes(i.to_bytes(8, "little")) for i in range(10000))) == 10000  # 8-byte ids never collide
    table = ItemIds.from_list([str(i) for i in range(100)])
    wanted = [str(i) for i in rng.permutation(120)]
    assert table.rows(wanted[:5]).tolist() + table.rows(wanted[5:]).tolist() == [int(w) if int(w) < 100 else -1 for w in wanted]


def test_ids_left_in_their_file_read_as_the_bytes_do(tmp_path):
    """The device leaves the ids file on disk (only the ids it looks up are read) and its keys are 32 bits:
    ids whose keys collide are still told apart by their bytes."""
    ids = [f"item-{i}" for i in range(20000)] + [""]
    path = tmp_path / "ids.json"
    path.write_bytes(json.dumps(ids).encode())
    stored = FileBytes(open(path, "rb"))
    table = ItemIds.from_json(path.read_bytes(), stored)
    assert table._blob is stored and table._keys.dtype == np.uint32 and table._lengths.dtype == np.uint8
    assert table.rows(ids[::997] + ["item-x"]).tolist() == list(range(0, 20000, 997)) + [-1]
    assert table.take([5, 19999, 20000]) == ["item-5", "item-19999", ""] and table[7] == "item-7"
    assert table.tombstones().tolist() == [20000] and stored[3:0] == b"" and len(stored) == path.stat().st_size
    with pytest.raises(TypeError, match="contiguous"):
        stored[::2]
    with pytest.raises(ManifestError, match="stored item ids differ"):
        ItemIds.from_json(b'["a"]', stored)
    keys = table._keys
    table.close()
    same = int(np.sum(keys[1:] == keys[:-1]))  # 20,000 ids in 2**32 keys: usually none, and none needed
    assert same <= 2
