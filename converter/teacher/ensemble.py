"""Several teachers as one: the ensemble's user and item vectors are its members' concatenated, so its
score of an item is the sum of the members' scores (still one two-tower model, distilled and served like
any teacher). On ML-1M the three early-stopped teachers of ``RECIPE`` (41.5 minutes of training in all on 2
cores) reach test NDCG@10 0.1807 where each alone reaches 0.1725-0.1736 (benchmarks/teacher_ensemble.py)."""
from __future__ import annotations

import json
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_rec.atomic import atomic_write_json, replace_dir, staging_dir

from ..progress import say
from .base import Teacher, TextHead

FORMAT = "edge-rec-ensemble-teacher/1"
RECIPE = "default,blocks=3,seed=1"  # what `--ensemble` trains given no spec: three 64-wide teachers (README, "The teacher")


class EnsembleTeacher(Teacher):
    """Teachers over the same catalog (same item ids, same order) scored as the sum of their scores."""

    def __init__(self, members: Sequence[Teacher], info: Optional[Dict[str, Any]] = None) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 teachers, got {len(members)}")
        ids = [list(getattr(m, "item_ids", [])) for m in members]
        if any(m.n_items != members[0].n_items for m in members) or any(i != ids[0] for i in ids):
            raise ValueError("the ensemble's teachers must share one catalog (the same item ids in the same order)")
        prints = {(getattr(m, "info", None) or {}).get("dataset_fingerprint") for m in members}
        if len(prints) > 1:
            raise ValueError("the ensemble's teachers were trained on different data sets")
        self.members, self.item_ids = list(members), ids[0]
        self.info = {"dataset_fingerprint": prints.pop(),
                     "dataset": (getattr(members[0], "info", None) or {}).get("dataset"),
                     "train_seconds": round(sum((getattr(m, "info", None) or {}).get("train_seconds", 0.0) for m in members), 1),
                     "stopped": [(getattr(m, "info", None) or {}).get("stopped") for m in members],
                     **(info or {})}

    @property
    def configs(self) -> List[Any]:
        """The members' configs, in order."""
        return [getattr(m, "config", None) for m in self.members]

    @property
    def n_items(self) -> int:
        return self.members[0].n_items

    def item_vectors(self) -> np.ndarray:
        return np.concatenate([m.item_vectors() for m in self.members], axis=1).astype(np.float32)

    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([m.user_vectors(histories) for m in self.members], axis=1).astype(np.float32)

    def prefix_user_vectors(self, sequences: Sequence[np.ndarray], lengths: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([m.prefix_user_vectors(sequences, lengths) for m in self.members], axis=1)

    def text_head(self) -> TextHead:
        """The members' text heads side by side (every member must have one)."""
        heads = [m.text_head() for m in self.members]
        return TextHead(np.concatenate([h.weight for h in heads], axis=1), self.item_ids,
                        np.concatenate([h.id_rows for h in heads], axis=1))

    def save(self, path: Union[str, Path]) -> Path:
        """Write the ensemble to directory ``path`` atomically: config.json and one directory per member."""
        path = Path(path)
        stage = staging_dir(path)
        names = [f"member{i}" for i in range(len(self.members))]
        for name, member in zip(names, self.members):
            member.save(stage / name)
        atomic_write_json(stage / "config.json", {"format": FORMAT, "members": names, "info": self.info})
        replace_dir(stage, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "EnsembleTeacher":
        path = Path(path)
        meta = _read_config(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}/config.json: format {meta.get('format')!r}, expected {FORMAT!r}")
        info = {k: v for k, v in meta.get("info", {}).items() if k not in ("dataset_fingerprint", "train_seconds", "stopped")}
        return cls([load_teacher(path / name) for name in meta["members"]], info)


def _read_config(path: Path) -> Dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved teacher at {path} (config.json missing)") from None


def load_teacher(path: Union[str, Path]) -> Teacher:
    """A teacher saved by ``SASRecTeacher.save`` or ``EnsembleTeacher.save``, by the format its config.json names."""
    from .sasrec import FORMAT as SASREC_FORMAT
    from .sasrec import SASRecTeacher
    path = Path(path)
    fmt = _read_config(path).get("format")
    if fmt == FORMAT:
        return EnsembleTeacher.load(path)
    if fmt == SASREC_FORMAT:
        return SASRecTeacher.load(path)
    raise ValueError(f"{path}/config.json: unknown teacher format {fmt!r} (this edge-rec reads {SASREC_FORMAT!r} and {FORMAT!r})")


def member_configs(spec: str, base: Any) -> List[Any]:
    """The members of ``--ensemble SPEC``: comma-separated members, each ``default`` (``base`` as it is) or
    ``key=value`` overrides of ``base`` joined by ``+``, e.g. ``default,dim=128,blocks=3+dropout=0.2``."""
    kinds = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    configs = []
    for member in (m.strip() for m in spec.split(",")):
        overrides: Dict[str, Any] = {}
        for pair in ([] if member == "default" else member.split("+")):
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in kinds:
                raise ValueError(f"ensemble member {member!r}: {pair!r} is not key=value of a teacher setting "
                                 f"({', '.join(sorted(kinds))}), nor 'default'")
            kind = kinds[key]
            try:
                overrides[key] = value.strip().lower() in ("1", "true", "yes") if kind is bool else kind(value)
            except ValueError:
                raise ValueError(f"ensemble member {member!r}: {key} must be a {kind.__name__}, not {value!r}") from None
        configs.append(replace(base, **overrides))
    if len(configs) < 2:
        raise ValueError(f"--ensemble {spec!r} names {len(configs)} member; an ensemble needs at least 2")
    return configs


def train_ensemble(split, item_ids: List[str], text_vectors: Optional[np.ndarray], configs: Sequence[Any],
                   budget_minutes: float, log: Callable[[str], None] = say) -> EnsembleTeacher:
    """Train each member in turn (``train_sasrec``: early stopping, then refit) within ``budget_minutes`` in
    all: a member gets the time the ones before it left, so a late member may stop on the budget (its
    ``stopped`` says so)."""
    from .train import train_sasrec
    start, members = time.time(), []
    for i, c in enumerate(configs):
        left = budget_minutes - (time.time() - start) / 60
        if left <= 0:
            raise ValueError(f"the ensemble's {budget_minutes}-minute budget ran out before member {i + 1} of {len(configs)}")
        log(f"ensemble member {i + 1}/{len(configs)}: dim {c.dim}, {c.blocks} blocks, window {c.max_len}; {left:.1f} min left")
        teacher, _ = train_sasrec(split, item_ids, text_vectors, c, log=log, max_minutes=left)
        members.append(teacher)
    return EnsembleTeacher(members, {"budget_minutes": budget_minutes})


def teacher_configs(config: Any) -> List[Any]:
    """The member configs a teacher setting names: a list of them (an ensemble) as a list, one config as [it]."""
    return list(config) if isinstance(config, (list, tuple)) else [config]


def train_teacher(split, item_ids: List[str], text_vectors: Optional[np.ndarray], config: Any,
                  log: Callable[[str], None] = say) -> Teacher:
    """A SASRec teacher for a ``SASRecConfig``, an ensemble for a list of them (trained within the first
    one's ``max_minutes``); the saved info says how training stopped."""
    from .train import train_sasrec
    if not isinstance(config, (list, tuple)):
        return train_sasrec(split, item_ids, text_vectors, config, log=log)[0]
    return train_ensemble(split, item_ids, text_vectors, config, config[0].max_minutes, log=log)
