"""Leave-one-out split: per user, the last item is the test target, the second-last the validation target.

The split also fixes the repeat-consumption protocol (``seen_items``, one of ``edge_rec.manifest.SEEN_ITEMS``)
that the teacher, the student, popularity and the device are all evaluated with, and that the bundle
records: "exclude" ranks no item the user has seen (a seen target is a miss, as the device never shows
it), "repeat" ranks every item. "auto" picks "repeat" when at least ``REPEAT_SHARE`` of the held-out
targets are items already in their user's history (re-purchases), else "exclude".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from edge_rec.manifest import SEEN_ITEMS

from .dataset import Dataset


@dataclass
class EvalSet:
    """Histories (each ending right before its target) and the held-out next item of each user."""

    users: np.ndarray          # user indices into Dataset.user_ids
    histories: List[np.ndarray]
    targets: np.ndarray
    exclude_seen: bool = True  # the protocol: seen items are not ranked (see the module docstring)

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class Split:
    """``train`` holds every user's sequence minus the held-out items; ``valid``/``test`` are EvalSets."""

    train: List[np.ndarray]
    valid: EvalSet
    test: EvalSet
    seen_items: str = "exclude"   # the protocol every evaluation and the bundle use
    repeat_share: float = 0.0     # share of held-out targets the user had already interacted with

    def stage(self, name: str) -> EvalSet:
        if name not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test


MIN_EVAL_LENGTH = 3  # a user needs at least one training item besides the two held-out ones
REPEAT_SHARE = 0.1   # "auto": at least this share of repeated targets makes the protocol "repeat"


def repeat_share(histories: Sequence[np.ndarray], targets: np.ndarray) -> float:
    """Share of targets that already occur in their history."""
    if len(targets) == 0:
        return 0.0
    return float(np.mean([bool((np.asarray(h) == t).any()) for h, t in zip(histories, targets)]))


def choose_seen_items(share: float, seen_items: str = "auto") -> str:
    """The protocol for a data set whose held-out targets repeat a seen item at ``share``."""
    if seen_items == "auto":
        return "repeat" if share >= REPEAT_SHARE else "exclude"
    if seen_items not in SEEN_ITEMS:
        raise ValueError(f"seen_items must be 'auto' or one of {', '.join(SEEN_ITEMS)}, got {seen_items!r}")
    return seen_items


def leave_one_out(data: Dataset, seen_items: str = "auto") -> Split:
    """Split per user; users with fewer than 3 interactions are kept for training only. ``seen_items``:
    "auto" (by the data's share of repeats), "exclude" or "repeat"."""
    train, v_users, t_users = [], [], []
    for u, seq in enumerate(data.sequences):
        if len(seq) >= MIN_EVAL_LENGTH:
            train.append(seq[:-2])
            v_users.append(u)
            t_users.append(u)
        else:
            train.append(seq)
    seqs = data.sequences
    v_hist, t_hist = [seqs[u][:-2] for u in v_users], [seqs[u][:-1] for u in t_users]
    v_targets = np.asarray([seqs[u][-2] for u in v_users], dtype=np.int64)
    t_targets = np.asarray([seqs[u][-1] for u in t_users], dtype=np.int64)
    share = repeat_share(v_hist + t_hist, np.concatenate([v_targets, t_targets]))
    protocol = choose_seen_items(share, seen_items)
    exclude = protocol == "exclude"
    valid = EvalSet(np.asarray(v_users, dtype=np.int64), v_hist, v_targets, exclude)
    test = EvalSet(np.asarray(t_users, dtype=np.int64), t_hist, t_targets, exclude)
    return Split(train=train, valid=valid, test=test, seen_items=protocol, repeat_share=share)
