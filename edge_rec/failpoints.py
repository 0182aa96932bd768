"""Named points in the sync and apply steps where tests inject crashes (SIGKILL) or faults.

Production code only calls :func:`reached`; nothing happens unless a test installed a hook.
"""
from __future__ import annotations

from typing import Callable, Optional

POINTS = ("download", "verify", "stage-index", "stage-model", "write-manifest", "switch", "cleanup", "recover",
          "cleanup-removed")

hook: Optional[Callable[[str], None]] = None


def reached(name: str) -> None:
    if hook is not None:
        hook(name)
