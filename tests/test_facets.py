"""Query facets (edge_rec.facets): the catalog genres and decades a query names, and the share of them
each item has. Fast: a small hand-made catalog."""
import numpy as np

from edge_rec.facets import FacetIndex, QueryFacets, facet_boost

CATALOG = [
    {"title": "A", "genres": ["Comedy", "Sci-Fi"], "year": 1995},
    {"title": "B", "genres": ["Film-Noir"], "year": 1948},
    {"title": "C", "genres": ["Children's", "Comedy"], "year": 2010},
    {"title": "D"},                                             # no genres, no year
    {"title": "E", "genres": "Comedy", "year": "1990"},          # malformed metadata is ignored, not a crash
]


def test_genre_names_are_read_as_the_catalog_spells_them_with_plurals():
    f = FacetIndex(CATALOG)
    assert f.parse("a funny comedy").genres == ("Comedy",)
    assert f.parse("comedies").genres == ("Comedy",)
    assert f.parse("sci fi films").genres == ("Sci-Fi",)           # "Sci-Fi" normalised like a query
    assert f.parse("film noir").genres == ("Film-Noir",)
    assert f.parse("children's movies").genres == ("Children's",)
    assert f.parse("scary movies").genres == ()                     # no synonym list: left to the encoder
    assert f.parse("comedy sci fi").genres == ("Comedy", "Sci-Fi")


def test_decades_are_read_in_the_ways_people_write_them():
    f = FacetIndex(CATALOG)
    for text in ("90s", "1990s", "'90s comedy", "the nineties", "90 s"):
        assert f.parse(text).decades == (1990,), text
    assert f.parse("10s").decades == (2010,)                        # the century the catalog has items of
    assert f.parse("the 1970s").decades == ()                       # no item from then
    assert f.parse("1995").decades == () and f.parse("90 songs").decades == ()
    assert not f.parse("toy story") and f.parse("a 90s comedy") == QueryFacets(("Comedy",), (1990,))


def test_share_counts_each_asked_genre_and_the_decades_once():
    f = FacetIndex(CATALOG)
    rows = np.arange(len(CATALOG))
    assert f.share(f.parse("a 90s comedy"), rows).tolist() == [1.0, 0.0, 0.5, 0.0, 0.0]
    assert f.share(f.parse("comedy sci fi"), rows).tolist() == [1.0, 0.0, 0.5, 0.0, 0.0]
    assert f.share(QueryFacets(), rows).tolist() == [0.0] * len(CATALOG)
    boost = facet_boost(f, f.parse("comedy"), 0.25)(rows)
    assert boost.dtype == np.float32 and boost.tolist() == [0.25, 0.0, 0.25, 0.0, 0.0]


def test_an_empty_catalog_parses_nothing():
    f = FacetIndex([])
    assert not f.parse("a 90s comedy") and f.share(QueryFacets(("Comedy",)), np.zeros(0, np.int64)).shape == (0,)
