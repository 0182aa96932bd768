"""Title matching (the lexical half of the hybrid search): trigram coverage, typos, prefixes, years,
scripts, rare and common trigrams, and the index's edge cases. Fast, no bundle needed."""
import numpy as np
import pytest

from edge_rec.query import normalize_query
from edge_rec.titles import TitleIndex, hybrid_scores, spoken_title, title_text, trigram_codes

CATALOG = [{"title": "Toy Story", "year": 1995}, {"title": "Toy Story 2", "year": 1999},
           {"title": "Matrix, The", "year": 1999}, {"title": "Shawshank Redemption, The", "year": 1994},
           {"title": "Star Wars: Episode IV - A New Hope", "year": 1977}, {"title": "Amélie (Fabuleux destin d'Amélie Poulain, Le)", "year": 2001},
           {}, {"title": "Seven Samurai (Shichinin no samurai)", "year": 1954}, {"title": "\u5343\u3068\u5343\u5c0b", "year": 2001},
           {"title": 42, "year": "1999"}]


@pytest.fixture(scope="module")
def index():
    return TitleIndex.from_metadata(CATALOG)


def best(index, query, k=1):
    return index.match(normalize_query(query)).best(k).tolist()


def test_titles_are_read_as_people_say_them():
    assert spoken_title("Matrix, The") == "The Matrix" and spoken_title("Seven Samurai (Shichinin no samurai)") == "Seven Samurai"
    assert title_text(CATALOG[3]) == "the shawshank redemption 1994"
    assert title_text(CATALOG[5]) == "amelie 2001"  # accents folded, alternate title dropped
    assert title_text({}) == "" and title_text({"title": 42, "year": "1999"}) == ""  # odd metadata: nothing to match


def test_typed_titles_prefixes_typos_and_years_find_their_item(index):
    assert best(index, "shawshank") == [3]
    assert best(index, "the shawshank redemtion") == [3]  # a typo
    assert best(index, "AMELIE") == [5]
    assert set(best(index, "toy story", 2)) == {0, 1}
    assert best(index, "toy story 1995") == [0]  # the year decides
    assert best(index, "star wars episode") == [4]
    assert best(index, "\u5343\u3068") == [8]  # a non-Latin script is matched by its characters


def test_coverage_is_the_weighted_share_of_the_query_found(index):
    m = index.match("the matrix")
    cov = m.of(np.arange(len(CATALOG)))
    assert cov[2] == pytest.approx(1.0) and np.all(cov <= 1.0) and np.all(cov >= 0.0)
    assert cov[6] == 0.0 and cov[9] == 0.0  # no title
    partial = index.match("matrix reloaded").of(np.array([2]))[0]
    assert 0.2 < partial < 0.8
    assert len(index.match("zzqx").rows) == 0  # trigrams no title has: nothing matches, no error


def test_common_trigrams_are_skipped_for_speed():
    titles = [f"the story number {i}" for i in range(2000)] + ["the zebra"]
    idx = TitleIndex(titles, common_share=0.01, min_common=8)
    m = idx.match("the zebra")
    assert m.best(1).tolist() == [2000] and len(m.rows) < 50  # " th"/"the" are in every title: not gathered


def test_empty_and_tiny_catalogs():
    for titles in ([], [""], ["a"]):
        idx = TitleIndex(titles)
        assert len(idx.match("toy story").rows) == 0
    assert len(trigram_codes("")) == 0 and len(trigram_codes("a")) == 1  # " a ": one trigram


def test_hybrid_scores_reward_only_strong_title_matches():
    dense = np.array([0.5, 0.5, 0.5], np.float32)
    out = hybrid_scores(dense, np.array([1.0, 0.5, 0.0], np.float32), 0.4)
    assert out[0] == pytest.approx(0.9) and out[1] == pytest.approx(0.6) and out[2] == pytest.approx(0.5)


def test_ties_go_to_the_lower_row_whatever_the_cpu():
    from edge_rec.titles import TitleMatches
    rows = np.arange(100, dtype=np.int64) * 3
    cov = np.full(100, 0.5, np.float32)
    cov[[7, 50]] = 0.9
    m = TitleMatches(rows, cov)
    assert m.best(5).tolist() == [21, 150, 0, 3, 6]  # the two best, then the tied rows in row order
    assert m.best(200).tolist()[:3] == [21, 150, 0] and len(m.best(200)) == 100
