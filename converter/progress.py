"""Progress bars for long steps (tqdm), quiet when not attached to a terminal unless asked."""
from __future__ import annotations

import os
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: Optional[str] = None, total: Optional[int] = None,
             leave: bool = False) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``desc`` is given and output is interactive (or forced)."""
    if desc is None:
        return iterable
    force = os.environ.get("EDGE_REC_PROGRESS") == "1"
    if not (force or sys.stderr.isatty()):
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)


def say(message: str) -> None:
    """Print a status line at once (also when stdout is a file or a pipe)."""
    print(message, flush=True)
