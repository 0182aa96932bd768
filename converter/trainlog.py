"""The record a training loop keeps: per-epoch loss and validation metrics, the best epoch, the time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List


@dataclass
class TrainLog:
    epochs: List[Dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: str = ""
