"""Query facets, the structured half of search: the genres and decades a query names ("a 90s comedy":
Comedy, the 1990s), read against every item's metadata so that items having what was asked move up.

Only the catalog's own vocabulary is read: its genre names as the metadata ships them (normalised like a
query, with English plurals: "comedies", "sci fi" for "Sci-Fi") and decades written as people write
them ("90s", "1990s", "'90s", "nineties"). There is no synonym list: "scary" is left to the encoder.
The index is built from the item table's metadata on first use, like the title index, so it follows
every delta sync and needs no bundle file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

_DECADE = re.compile(r"(?<![\w'])'?(1[0-9]|20)?([0-9])0 ?'?s\b")
_DECADE_NAMES = {"twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60, "seventies": 70,
                 "eighties": 80, "nineties": 90}


@dataclass(frozen=True)
class QueryFacets:
    """What a query asks for: catalog genre names and decades (e.g. 1990)."""

    genres: Tuple[str, ...] = ()
    decades: Tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.genres or self.decades)


def _plurals(phrase: str) -> Tuple[str, ...]:
    if phrase.endswith("y") and not phrase.endswith(("ay", "ey", "oy", "uy")):
        return phrase, phrase + "s", phrase[:-1] + "ies"
    return phrase, phrase + "s"


class FacetIndex:
    """Every row's genres and decade, and the phrases that name them."""

    def __init__(self, metadata: Sequence[Dict[str, Any]]) -> None:
        from .query import QueryError, normalize_query
        rows_of: Dict[str, List[int]] = {}
        self.decade = np.full(len(metadata), -1, np.int32)
        for r, meta in enumerate(metadata):
            genres = meta.get("genres")
            for g in genres if isinstance(genres, list) else ():
                if isinstance(g, str):
                    rows_of.setdefault(g, []).append(r)
            year = meta.get("year")
            if isinstance(year, int) and not isinstance(year, bool):
                self.decade[r] = (year // 10) * 10
        self.genre_rows = {g: np.unique(np.asarray(rows, np.int64)) for g, rows in rows_of.items()}
        self.phrases: Dict[str, str] = {}
        for g in sorted(rows_of, key=lambda g: -len(rows_of[g])):  # a phrase two genres share names the bigger
            try:
                name = normalize_query(g)
            except QueryError:
                continue
            for phrase in _plurals(name):
                self.phrases.setdefault(phrase, g)
        self._longest = max((len(p.split()) for p in self.phrases), default=0)
        decades, counts = np.unique(self.decade[self.decade >= 0], return_counts=True)
        self.decade_items = dict(zip(decades.tolist(), counts.tolist()))

    @classmethod
    def from_metadata(cls, metadata: Iterable[Dict[str, Any]]) -> "FacetIndex":
        return cls(list(metadata))

    def parse(self, text: str) -> QueryFacets:
        """The catalog genres and decades a normalised query names (decades the catalog has no item of are
        ignored; "90s" is the 1990s or the 2090s, whichever the catalog has more items of)."""
        words = text.split()
        genres: List[str] = []
        for i in range(len(words)):
            for n in range(min(self._longest, len(words) - i), 0, -1):
                g = self.phrases.get(" ".join(words[i:i + n]))
                if g is not None:
                    if g not in genres:
                        genres.append(g)
                    break
        decades: List[int] = []
        found = [(m.group(1), int(m.group(2)) * 10) for m in _DECADE.finditer(text)]
        found += [(None, tens) for w, tens in _DECADE_NAMES.items() if re.search(rf"\b{w}\b", text)]
        for century, tens in found:
            options = [int(century) * 100 + tens] if century else [1900 + tens, 2000 + tens]
            best = self._likeliest(options)
            if best is not None and best not in decades:
                decades.append(best)
        return QueryFacets(tuple(genres), tuple(decades))

    def _likeliest(self, decades: Sequence[int]) -> Optional[int]:
        have = [(self.decade_items.get(d, 0), d) for d in decades]
        count, decade = max(have)
        return decade if count else None

    def share(self, facets: QueryFacets, rows: np.ndarray) -> np.ndarray:
        """For each row, the share of the asked facets it has (each asked genre is one; the decades asked
        are one): 1.0 for an item with everything asked, 0.0 for one with nothing or for an empty ask."""
        rows = np.asarray(rows, np.int64)
        none = np.zeros(0, np.int64)
        parts = [np.isin(rows, self.genre_rows.get(g, none)) for g in facets.genres]
        if facets.decades:
            parts.append(np.isin(self.decade[rows], facets.decades))
        if not parts:
            return np.zeros(len(rows), np.float32)
        return np.mean(parts, axis=0).astype(np.float32)


def facet_boost(index: FacetIndex, facets: QueryFacets, weight: float) -> Callable[[np.ndarray], np.ndarray]:
    """The score a search adds to rows for what the query names: ``weight`` times :meth:`FacetIndex.share`.
    Shared by the device and the converter's evaluation."""
    return lambda rows: (weight * index.share(facets, rows)).astype(np.float32)


__all__ = ["FacetIndex", "QueryFacets", "facet_boost"]
