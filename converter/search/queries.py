"""Search queries made from the catalog's own text, for training and evaluating the query encoder.

There are no query logs, so queries are generated the ways people type them:

* known-item queries, from one item's title: the title as typed (lower case, punctuation dropped,
  "Matrix, The" read as "the matrix"), with its year, a prefix or a span of its words, one typo
  (a dropped, doubled, swapped or replaced letter) and "movies like <title>";
* intent queries, from genre and decade phrases ("a 90s comedy", "scary movies from the 80s").

Items are split by a seeded draw: training queries come only from training items, validation and
evaluation queries only from items the encoder never sees. Intent queries use disjoint phrasings for
training, validation and evaluation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_rec.query import QueryError, normalize_query
from edge_rec.titles import spoken_title

from ..data import Item

KNOWN_ITEM_KINDS = ("title", "title_year", "prefix", "span", "typo", "like")
INTENT_KINDS = ("genre", "decade", "genre_decade")

# ML-1M genre names -> how people say them (other data sets: the genre name itself, lower case)
GENRE_WORDS: Dict[str, Tuple[str, ...]] = {
    "Action": ("action",), "Adventure": ("adventure",), "Animation": ("animated", "animation", "cartoon"),
    "Children's": ("kids", "children's", "family"), "Comedy": ("comedy", "funny"), "Crime": ("crime", "gangster"),
    "Documentary": ("documentary",), "Drama": ("drama",), "Fantasy": ("fantasy",), "Film-Noir": ("film noir", "noir"),
    "Horror": ("horror", "scary"), "Musical": ("musical",), "Mystery": ("mystery",),
    "Romance": ("romance", "romantic", "love story"), "Sci-Fi": ("sci-fi", "science fiction", "scifi"),
    "Thriller": ("thriller", "suspense"), "War": ("war",), "Western": ("western", "cowboy"),
}
_LIKE = ("movies like {t}", "something like {t}", "films similar to {t}", "more like {t}")
STAGES = ("train", "valid", "eval")
_TEMPLATES = {  # phrasings per stage (training, validation, evaluation); {g} genre words, {d} decade words
    "genre": (("{g} movies", "a {g} movie", "best {g} films", "{g}", "good {g} movies to watch"),
              ("{g} to watch tonight", "recommend a {g}"),
              ("some {g}", "{g} films", "i want a {g} movie", "show me {g}")),
    "decade": (("movies from the {d}", "{d} films", "best of the {d}"),
               ("films made in the {d}",),
               ("{d} movies", "a film from the {d}")),
    "genre_decade": (("{d} {g} movies", "{g} from the {d}", "a {g} movie from the {d}"),
                     ("{g} movie of the {d}", "good {d} {g}"),
                     ("a {d} {g}", "{g} films of the {d}", "{d} {g}")),
}
_KEYBOARD_NEIGHBOURS = {c: n for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm")
                        for i, c in enumerate(row) for n in [row[max(0, i - 1):i] + row[i + 1:i + 2]]}


@dataclass(frozen=True)
class Query:
    """One generated query: its text, how it was made, and what it asks for."""

    text: str
    kind: str
    item: int = -1                 # known-item queries: the item (catalog row) it came from
    item_id: str = ""              # ... and its id
    genre: Optional[str] = None    # intent queries: the genre asked for (catalog genre name)
    decade: Optional[int] = None   # intent queries: the decade asked for (e.g. 1990)

    @property
    def known_item(self) -> bool:
        return self.item >= 0


def typed(text: str, keep_apostrophes: bool = True) -> str:
    """The text as most queries arrive, read the way the device reads a query (:func:`edge_rec.query.normalize_query`):
    lower case, accents folded, punctuation dropped; "" when nothing is left."""
    try:
        return normalize_query(text if keep_apostrophes else text.replace("'", ""))
    except QueryError:
        return ""


def typo(text: str, rng: random.Random) -> str:
    """One edit in one word of four or more letters: drop, double, swap with the next, or a neighbouring key."""
    words = text.split()
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    w = words[i]
    p = rng.randrange(1, len(w) - 1)
    edit = rng.choice(("drop", "double", "swap", "key"))
    if edit == "drop":
        w = w[:p] + w[p + 1:]
    elif edit == "double":
        w = w[:p] + w[p] + w[p:]
    elif edit == "swap":
        w = w[:p] + w[p + 1] + w[p] + w[p + 2:]
    else:
        w = w[:p] + rng.choice(_KEYBOARD_NEIGHBOURS.get(w[p], w[p])) + w[p + 1:]
    words[i] = w
    return " ".join(words)


def decade_words(decade: int) -> Tuple[str, ...]:
    short = f"{decade % 100:02d}s"
    names = {1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
             1970: "seventies", 1980: "eighties", 1990: "nineties"}
    return (short, f"{decade}s") + ((names[decade],) if decade in names else ())


def genre_words(genre: str) -> Tuple[str, ...]:
    return GENRE_WORDS.get(genre, (genre.lower().replace("-", " "),))


def known_item_queries(item: Item, row: int, rng: random.Random, per_kind: int = 1) -> List[Query]:
    """Queries a person looking for this one item might type."""
    title = spoken_title(item.title)
    if not typed(title):
        return []
    out = []

    def add(text: str, kind: str) -> None:
        out.append(Query(text, kind, row, item.id))
    for _ in range(per_kind):
        plain = typed(title, keep_apostrophes=rng.random() < 0.5)
        words = plain.split()
        add(plain, "title")
        if item.year:
            add(f"{plain} {item.year}", "title_year")
        if len(words) >= 3:
            n = rng.randint(max(2, (len(words) + 1) // 2), len(words) - 1)
            add(" ".join(words[:n]), "prefix")
            start = rng.randint(1, len(words) - 2)
            add(" ".join(words[start:start + rng.randint(2, len(words) - start)]), "span")
        misspelt = typo(plain, rng)
        if misspelt != plain:
            add(misspelt, "typo")
        add(rng.choice(_LIKE).format(t=plain), "like")
    return list(dict.fromkeys(out))


def intent_queries(items: Sequence[Item], stage: str, rng: random.Random, per_template: int = 1,
                   min_items: int = 10) -> List[Query]:
    """Genre, decade and genre + decade queries over the combinations the catalog has at least
    ``min_items`` items of, in the phrasings of ``stage`` (training, validation and evaluation differ)."""
    counts: Dict[Tuple[Optional[str], Optional[int]], int] = {}
    for it in items:
        decade = (it.year // 10) * 10 if it.year else None
        for key in [(g, None) for g in it.genres] + [(None, decade)] + [(g, decade) for g in it.genres]:
            counts[key] = counts.get(key, 0) + 1
    out = []
    for kind, templates in _TEMPLATES.items():
        for template in templates[STAGES.index(stage)]:
            for (g, d), n in sorted(counts.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] or 0)):
                if n < min_items or (g is None) == ("{g}" in template) or (d is None) == ("{d}" in template):
                    continue
                for _ in range(per_template):
                    text = template.format(g=rng.choice(genre_words(g)) if g else "",
                                           d=rng.choice(decade_words(d)) if d else "")
                    out.append(Query(" ".join(text.split()), kind, genre=g, decade=d))
    return list(dict.fromkeys(out))


def split_items(n_items: int, heldout: float = 0.1, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): a seeded draw, the same on every run and for `edge-rec eval`."""
    order = np.random.default_rng(seed).permutation(n_items)
    n_out = int(round(heldout * n_items))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def make_queries(items: Sequence[Item], rows: Sequence[int], stage: str, seed: int = 0,
                 per_kind: int = 1) -> List[Query]:
    """Known-item queries for ``rows`` plus intent queries in ``stage``'s phrasings ("train", "valid", "eval")."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    rng = random.Random(seed * len(STAGES) + STAGES.index(stage))
    out = [q for r in rows for q in known_item_queries(items[int(r)], int(r), rng, per_kind)]
    return out + intent_queries(items, stage, rng)
