"""The in-memory data set every loader produces: an item catalog and per-user, time-ordered sequences."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Item:
    """One catalog entry: its external id and the text the language model embeds."""

    id: str
    title: str = ""
    year: Optional[int] = None
    genres: Tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The text embedded for this item, e.g. ``Toy Story (1995). Genres: Animation, Comedy.``"""
        parts = [f"{self.title} ({self.year})" if self.year is not None else self.title]
        if self.genres:
            parts.append("Genres: " + ", ".join(self.genres))
        parts.extend(f"{k.capitalize()}: {v}" for k, v in self.extra.items() if v)
        return ". ".join(p for p in parts if p) + "."


@dataclass
class Dataset:
    """Items indexed 0..n_items-1 and, per user, the indices of the items they touched, oldest first."""

    name: str
    items: List[Item]
    user_ids: List[str]
    sequences: List[np.ndarray]
    cold_items: List[Item] = field(default_factory=list)  # in the catalog file, never interacted with

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_index(self) -> Dict[str, int]:
        return {item.id: i for i, item in enumerate(self.items)}

    def fingerprint(self) -> str:
        """A short hash of the catalog ids and all sequences: a trained model is tied to it."""
        h = hashlib.sha256()
        h.update("\x1f".join(item.id for item in self.items).encode())
        for seq in self.sequences:
            h.update(np.asarray(seq, dtype="<i4").tobytes())
            h.update(b"\xff\xff\xff\xff")
        return h.hexdigest()[:16]

    def summary(self) -> str:
        lengths = np.array([len(s) for s in self.sequences])
        return (f"{self.name}: {self.n_users:,} users, {self.n_items:,} items, "
                f"{self.n_interactions:,} interactions (median {int(np.median(lengths))} per user), "
                f"{len(self.cold_items)} catalog items without interactions")


def build_dataset(name: str, events: Iterable[Tuple[str, str, float]], catalog: Mapping[str, Item],
                  item_order: Optional[List[str]] = None) -> Dataset:
    """Group ``(user, item, timestamp)`` events by user and order each user's events by time.

    Ties keep file order (stable sort). Catalog items that occur in ``events`` form the item index,
    in catalog order; the others become ``cold_items``. Every event item must be in ``catalog``
    (the loaders check this with the file and line at hand).
    """
    users: Dict[str, int] = {}
    per_user_items: List[List[str]] = []
    per_user_ts: List[List[float]] = []
    for user, item, ts in events:
        u = users.get(user)
        if u is None:
            u = users[user] = len(per_user_items)
            per_user_items.append([])
            per_user_ts.append([])
        per_user_items[u].append(item)
        per_user_ts[u].append(ts)
    order = item_order if item_order is not None else list(catalog)
    used = set()
    for seq in per_user_items:
        used.update(seq)
    index: Dict[str, int] = {}
    items: List[Item] = []
    cold: List[Item] = []
    for item_id in order:
        if item_id in used:
            index[item_id] = len(items)
            items.append(catalog[item_id])
        else:
            cold.append(catalog[item_id])
    sequences = []
    for seq, ts in zip(per_user_items, per_user_ts):
        by_time = np.argsort(np.asarray(ts, dtype=np.float64), kind="stable")
        sequences.append(np.asarray([index[seq[i]] for i in by_time], dtype=np.int32))
    return Dataset(name=name, items=items, user_ids=list(users), sequences=sequences, cold_items=cold)
