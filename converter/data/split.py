"""Leave-one-out split: per user, the last item is the test target, the second-last the validation target."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from .dataset import Dataset


@dataclass
class EvalSet:
    """Histories (each ending right before its target) and the held-out next item of each user."""

    users: np.ndarray          # user indices into Dataset.user_ids
    histories: List[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class Split:
    """``train`` holds every user's sequence minus the held-out items; ``valid``/``test`` are EvalSets."""

    train: List[np.ndarray]
    valid: EvalSet
    test: EvalSet

    def stage(self, name: str) -> EvalSet:
        if name not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {name!r}")
        return self.valid if name == "valid" else self.test


MIN_EVAL_LENGTH = 3  # a user needs at least one training item besides the two held-out ones


def leave_one_out(data: Dataset) -> Split:
    """Split per user; users with fewer than 3 interactions are kept for training only."""
    train, v_users, t_users = [], [], []
    for u, seq in enumerate(data.sequences):
        if len(seq) >= MIN_EVAL_LENGTH:
            train.append(seq[:-2])
            v_users.append(u)
            t_users.append(u)
        else:
            train.append(seq)
    seqs = data.sequences
    valid = EvalSet(np.asarray(v_users, dtype=np.int64), [seqs[u][:-2] for u in v_users],
                    np.asarray([seqs[u][-2] for u in v_users], dtype=np.int64))
    test = EvalSet(np.asarray(t_users, dtype=np.int64), [seqs[u][:-1] for u in t_users],
                   np.asarray([seqs[u][-1] for u in t_users], dtype=np.int64))
    return Split(train=train, valid=valid, test=test)
