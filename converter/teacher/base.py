"""The Teacher interface: what edge-rec needs from a server model to distil it onto a device."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class TextHead:
    """How a teacher places an item from its language-model text vector, as plain numpy (what a
    distributed export ships to its workers): ``text @ weight``, plus the learned ID row of an item the
    teacher was trained on (an item it never saw gets its text part alone: cold start)."""

    weight: np.ndarray       # (384, dim)
    item_ids: Sequence[str]  # items with a learned ID row ...
    id_rows: np.ndarray      # ... (len(item_ids), dim), in that order

    def vectors(self, item_ids: Sequence[str], text_vectors: np.ndarray) -> np.ndarray:
        """(len(item_ids), dim) float32 item vectors."""
        out = np.asarray(text_vectors, np.float32) @ self.weight
        row = {item_id: i for i, item_id in enumerate(self.item_ids)}
        known = [(k, row[item_id]) for k, item_id in enumerate(item_ids) if item_id in row]
        if known:
            at, rows = map(list, zip(*known))
            out[at] += self.id_rows[rows]
        return out.astype(np.float32)


class Teacher(abc.ABC):
    """A recommender over a fixed catalog of ``n_items`` items, indexed 0..n_items-1.

    Users plug their own server model in by implementing ``item_vectors`` and ``user_vectors``; the
    score of an item for a user is their dot product. (The device retrieves by inner product, so a
    teacher is distilled through these two vectors.)
    """

    @property
    @abc.abstractmethod
    def n_items(self) -> int:
        """Number of catalog items."""

    @abc.abstractmethod
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32: the item representations the teacher scores against."""

    @abc.abstractmethod
    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(len(histories), dim) float32: one query vector per history (item indices, oldest first)."""

    def text_head(self) -> TextHead:
        """The teacher's text path as numpy (see :class:`TextHead`). Teachers without one cannot place
        items from text and raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} cannot embed items from text")

    def item_vectors_from_text(self, item_ids: Sequence[str], text_vectors: np.ndarray) -> np.ndarray:
        """(len(item_ids), dim) vectors for items given by id and language-model text vector: new or
        re-described items a delta publishes, including ones with no interactions (cold start)."""
        return self.text_head().vectors(item_ids, text_vectors)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(len(histories), n_items) float32 scores of every item for every history."""
        return self.user_vectors(histories) @ self.item_vectors().T

    def prefix_user_vectors(self, sequences: Sequence[np.ndarray], lengths: Sequence[np.ndarray]) -> np.ndarray:
        """User vectors of many prefixes of a few sequences: a row for ``seq[:l]`` for each ``l`` in
        ``lengths[i]``, sequence by sequence. Models that see every prefix in one pass (causal
        transformers) override this to share the work; this default embeds each prefix on its own."""
        return self.user_vectors([seq[:int(n)] for seq, ls in zip(sequences, lengths) for n in ls])

    def __call__(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """A Teacher is a ``Scorer`` for :func:`converter.evaluate.evaluate`."""
        return self.scores(histories)
