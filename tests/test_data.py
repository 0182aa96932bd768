import lzma

import numpy as np
import pytest

from converter.data import (
    DataFormatError,
    DatasetNotFoundError,
    Item,
    build_dataset,
    leave_one_out,
    load_interactions,
    load_movielens_1m,
)


def write_ml(tmp_path, movies, ratings, xz=False):
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    if xz:
        with lzma.open(tmp_path / "ratings.dat.xz", "wt") as f:
            f.write(ratings)
    else:
        (tmp_path / "ratings.dat").write_text(ratings)
    return tmp_path


MOVIES = "1::Toy Story (1995)::Animation|Comedy\n2::Misérables, Les (1995)::Drama\n3::Heat (1995)::Action\n"


def test_sequences_are_time_ordered_and_stable_on_ties(tmp_path):
    ratings = "7::3::4::300\n7::1::5::100\n7::2::3::300\n9::2::1::50\n9::1::2::40\n"
    d = load_movielens_1m(write_ml(tmp_path, MOVIES, ratings, xz=True))
    idx = d.item_index()
    assert d.user_ids == ["7", "9"]
    # user 7: ts 100 (movie 1), then the tie at 300 in file order: movie 3, movie 2
    assert [d.items[i].id for i in d.sequences[0]] == ["1", "3", "2"]
    assert [d.items[i].id for i in d.sequences[1]] == ["1", "2"]
    assert set(idx) == {"1", "2", "3"}
    assert d.items[idx["2"]].title == "Misérables, Les" and d.items[idx["2"]].year == 1995
    assert d.items[idx["1"]].text() == "Toy Story (1995). Genres: Animation, Comedy."


def test_leave_one_out_split():
    catalog = {str(i): Item(str(i)) for i in range(6)}
    events = [("a", str(i), float(i)) for i in range(5)] + [("b", "5", 1.0), ("b", "0", 2.0)]
    d = build_dataset("t", events, catalog)
    s = leave_one_out(d)
    assert [list(x) for x in s.train] == [[0, 1, 2], [5, 0]]  # b has < 3 events: training only
    assert list(s.valid.users) == [0] and list(s.valid.histories[0]) == [0, 1, 2] and s.valid.targets[0] == 3
    assert list(s.test.histories[0]) == [0, 1, 2, 3] and s.test.targets[0] == 4
    with pytest.raises(ValueError, match="stage"):
        s.stage("train")


@pytest.mark.parametrize("ratings,needle", [
    ("1::1::5::100\n1::2::x::200\n", "line 2"),
    ("1::1::5::100\n1::2::9::200\n", "Rating(1-5)"),
    ("1::1::5\n", "line 1"),
    ("1::1::5::100\n1::77::3::200\n", "movie 77 is not in movies.dat"),
])
def test_garbled_ratings_name_file_and_line(tmp_path, ratings, needle):
    write_ml(tmp_path, MOVIES, ratings)
    with pytest.raises(DataFormatError) as e:
        load_movielens_1m(tmp_path)
    assert needle in str(e.value) and "ratings.dat" in str(e.value)


def test_garbled_movies_and_corrupt_xz(tmp_path):
    write_ml(tmp_path, "1::Toy Story (1995)\n", "1::1::5::1\n")
    with pytest.raises(DataFormatError, match=r"movies.dat, line 1"):
        load_movielens_1m(tmp_path)
    write_ml(tmp_path, MOVIES, "")
    (tmp_path / "ratings.dat").unlink()
    (tmp_path / "ratings.dat.xz").write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(DataFormatError, match="cannot decode"):
        load_movielens_1m(tmp_path)


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_movielens_1m(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value) and "EDGE_REC_ML1M" in str(e.value)


def test_generic_format_csv_and_tsv(tmp_path):
    (tmp_path / "items.tsv").write_text("item\ttitle\tgenres\tdescription\n"
                                        "a\tAlpha\tX|Y\tthe first\nb\tBeta\t\t\nc\tGamma\tZ\tnever seen\n")
    (tmp_path / "log.tsv").write_text("user\titem\ttimestamp\tweight\n"
                                      "u1\tb\t2024-01-02T00:00:00Z\t1\n"
                                      "u1\ta\t2024-01-01T00:00:00\t2.5\n"
                                      "u1\tc\t2024-01-03T00:00:00\t0\n"
                                      "u2\tb\t5\t1\n")
    d = load_interactions(tmp_path / "log.tsv", tmp_path / "items.tsv")
    assert [i.id for i in d.items] == ["a", "b"] and [i.id for i in d.cold_items] == ["c"]
    assert [d.items[i].id for i in d.sequences[0]] == ["a", "b"]  # weight 0 dropped, ISO dates ordered
    assert d.items[0].text() == "Alpha. Genres: X, Y. Description: the first."


@pytest.mark.parametrize("log,needle", [
    ("user,item,timestamp\nu1,a,1\nu1,zzz,2\n", "line 3: item 'zzz' is not in the items file"),
    ("user,item,timestamp\nu1,a,yesterday\n", "line 2: timestamp 'yesterday'"),
    ("user,item,timestamp\nu1,a\n", "line 2: expected 3 fields"),
    ("user,item\nu1,a\n", "line 1: header"),
    ("", "empty"),
    ("user,item,timestamp,weight\nu1,a,1,lots\n", "weight 'lots'"),
])
def test_generic_format_errors(tmp_path, log, needle):
    (tmp_path / "items.csv").write_text("item,title\na,Alpha\n")
    (tmp_path / "log.csv").write_text(log)
    with pytest.raises(DataFormatError) as e:
        load_interactions(tmp_path / "log.csv", tmp_path / "items.csv")
    assert needle in str(e.value) and "log.csv" in str(e.value)


def test_real_movielens_1m(ml1m):
    assert (ml1m.n_users, ml1m.n_items, ml1m.n_interactions) == (6040, 3706, 1_000_209)
    assert len(ml1m.cold_items) == 3883 - 3706
    assert min(len(s) for s in ml1m.sequences) == 20
    s = leave_one_out(ml1m)
    assert len(s.test) == len(s.valid) == 6040
    assert all(len(h) == len(t) - 2 for h, t in zip(s.valid.histories, ml1m.sequences))


def test_generic_reader_on_real_slice(ml1m, ml1m_slice):
    d = load_interactions(ml1m_slice["interactions"], ml1m_slice["items"])
    assert d.n_users == ml1m_slice["n_users"] and d.n_items == ml1m_slice["n_items"]
    for u in range(d.n_users):
        ids = [d.items[i].id for i in d.sequences[u]]
        assert ids == [ml1m.items[i].id for i in ml1m.sequences[u]]
    titles = {it.id: it.title for it in d.items}
    assert all(titles[ml1m.items[i].id] == ml1m.items[i].title for i in ml1m.sequences[0])
    assert np.all(d.sequences[0] < d.n_items)
