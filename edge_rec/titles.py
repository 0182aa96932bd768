"""Title matching, the lexical half of the hybrid search: the character trigrams of a query against every
item's title (as people say it) and year, weighted by how rare each trigram is in the catalog.

A typed title, a few of its words, a prefix or a typo still share most of their trigrams with the title,
which is where a small text encoder is weakest. The index is built in memory from the item table's
metadata the first time a bundle searches (numpy, about a second per 100k titles), so it needs no
bundle file and follows every delta sync.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Sequence, Tuple

import numpy as np

from .errors import QueryError

_SHIFT = 21  # bits per code point: a trigram is three code points in one int64
_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "l'", "die", "der", "das", "los", "las")
_TRAILING_ARTICLE = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in _ARTICLES) + r")$", re.IGNORECASE)
_ALTERNATE_TITLE = re.compile(r"\s*\([^)]*\)\s*$")


def spoken_title(title: str) -> str:
    """The title as a person says it: "Matrix, The" -> "The Matrix"; an alternate title in parentheses
    ("Bread and Chocolate (Pane e cioccolata)") is dropped."""
    main = _ALTERNATE_TITLE.sub("", title.strip()) or title.strip()
    m = _TRAILING_ARTICLE.match(main)
    if m:
        article = m.group(2)
        main = f"{article}{'' if article.endswith(chr(39)) else ' '}{m.group(1)}"
    return main


def title_text(metadata: Dict[str, Any]) -> str:
    """What an item's title is matched as: its spoken title and year, normalised like a query ("" if none)."""
    from .query import normalize_query
    title = metadata.get("title")
    year = metadata.get("year")
    text = f"{spoken_title(title) if isinstance(title, str) else ''} {year if isinstance(year, int) else ''}"
    try:
        return normalize_query(text)
    except QueryError:
        return ""


def trigram_codes(text: str) -> np.ndarray:
    """Sorted distinct trigram codes of a normalised text, padded with a space at each end."""
    cps = np.frombuffer(f" {text} ".encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if len(cps) < 3:
        return np.zeros(0, np.int64)
    return np.unique((cps[:-2] << (2 * _SHIFT)) | (cps[1:-1] << _SHIFT) | cps[2:])


@dataclass(frozen=True)
class TitleMatches:
    """Rows whose title shares a trigram with the query, and their coverage: the rarity-weighted share of
    the query's trigrams found in the title (1.0: every informative trigram of the query is there)."""

    rows: np.ndarray       # int64, ascending
    coverage: np.ndarray   # float32, in (0, 1]

    @classmethod
    def none(cls) -> "TitleMatches":
        """No title matches (a query sharing nothing with any title, or a search without title matching)."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32))

    def of(self, rows: np.ndarray) -> np.ndarray:
        """Coverage of arbitrary rows (0 where the title shares nothing)."""
        out = np.zeros(len(rows), np.float32)
        if len(self.rows):
            pos = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
            hit = self.rows[pos] == rows
            out[hit] = self.coverage[pos[hit]]
        return out

    def best(self, k: int) -> np.ndarray:
        """The rows of the ``k`` highest coverages, best first; ties go to the lower row, the same on every
        CPU (numpy's own selection breaks ties differently on x86 and ARM)."""
        if len(self.rows) > k:
            kth = np.partition(self.coverage, len(self.rows) - k)[len(self.rows) - k]  # the k-th best value
            keep = np.flatnonzero(self.coverage >= kth)
        else:
            keep = np.arange(len(self.rows))
        order = keep[np.lexsort((self.rows[keep], -self.coverage[keep]))]
        return self.rows[order[:k]]


class TitleIndex:
    """Trigram postings of every row's title. Trigrams found in more than ``common_share`` of the titles
    say little and would cost the most; queries skip them."""

    def __init__(self, texts: Sequence[str], common_share: float = 0.01, min_common: int = 64) -> None:
        n = len(texts)
        self.n_rows = n
        lengths = np.fromiter((len(t) + 3 for t in texts), dtype=np.int64, count=n)  # " t " plus a separator
        joined = "\x00".join(f" {t} " for t in texts)
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        row = np.repeat(np.arange(n, dtype=np.int64), lengths)[:len(cps)]
        if len(cps) >= 3:
            codes = (cps[:-2] << (2 * _SHIFT)) | (cps[1:-1] << _SHIFT) | cps[2:]
            inside = (cps[:-2] != 0) & (cps[1:-1] != 0) & (cps[2:] != 0)
            codes, row = codes[inside], row[:-2][inside]
        else:
            codes, row = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.codes, trigram = np.unique(codes, return_inverse=True)
        pairs = np.sort(trigram.astype(np.int64) * max(n, 1) + row)  # sorted then deduplicated: faster than
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs  # np.unique's hashing
        self.postings = (pairs % max(n, 1)).astype(np.int32)
        self.offsets = np.searchsorted(pairs // max(n, 1), np.arange(len(self.codes) + 1)).astype(np.int64)
        df = np.diff(self.offsets)
        titled = max(1, int(np.count_nonzero(lengths > 3)))
        self.weights = np.log1p(titled / np.maximum(df, 1)).astype(np.float32)
        self.unseen_weight = float(np.log1p(titled))   # a query trigram no title has (e.g. from a typo)
        self.max_postings = max(min_common, int(common_share * titled))

    @classmethod
    def from_metadata(cls, metadata: Iterable[Dict[str, Any]]) -> "TitleIndex":
        return cls([title_text(m) for m in metadata])

    def match(self, text: str) -> TitleMatches:
        """Coverage of every title sharing an informative trigram with ``text`` (a normalised query)."""
        q = trigram_codes(text)
        if not len(self.codes) or not len(q):
            return TitleMatches.none()
        pos = np.minimum(np.searchsorted(self.codes, q), len(self.codes) - 1)
        found = self.codes[pos] == q
        df = np.where(found, self.offsets[pos + 1] - self.offsets[pos], 0)
        informative = df <= self.max_postings
        total = float(np.sum(np.where(found, self.weights[pos], self.unseen_weight)[informative]))
        use = pos[found & informative]
        if total <= 0 or not len(use):
            return TitleMatches.none()
        starts, ends = self.offsets[use], self.offsets[use + 1]
        rows = np.concatenate([self.postings[s:e] for s, e in zip(starts, ends)])
        weights = np.repeat(self.weights[use], ends - starts)
        uniq, inverse = np.unique(rows, return_inverse=True)
        coverage = np.bincount(inverse, weights=weights) / total
        return TitleMatches(uniq.astype(np.int64), np.minimum(coverage, 1.0).astype(np.float32))


def hybrid_scores(dense: np.ndarray, coverage: np.ndarray, weight: float) -> np.ndarray:
    """The hybrid search score: the encoder's cosine plus ``weight`` times the title coverage squared
    (squared, so only a title matching most of the query moves an item far)."""
    return (dense + weight * np.square(coverage)).astype(np.float32)


def hybrid_rank(encoder_rows: np.ndarray, title_rows: np.ndarray, cosine: Callable[[np.ndarray], np.ndarray],
                matches: TitleMatches, weight: float) -> Tuple[np.ndarray, np.ndarray]:
    """The encoder's candidates and the title matches merged, scored by :func:`hybrid_scores` (``cosine``
    of rows: the encoder's cosine, plus the facet boost where the query names genres or decades), best
    first; ties go to the lower row. Shared by the device and the converter's evaluation."""
    cand = np.union1d(encoder_rows, title_rows).astype(np.int64)
    scores = hybrid_scores(cosine(cand), matches.of(cand), weight)
    order = np.argsort(-scores, kind="stable")
    return cand[order], scores[order]


__all__ = ["TitleIndex", "TitleMatches", "hybrid_rank", "hybrid_scores", "spoken_title", "title_text", "trigram_codes"]

