"""Median per-query timings, for the conversion report and the speed benchmark."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, Tuple

import numpy as np


def median_seconds(fn: Callable[[np.ndarray], Any], histories: Sequence[np.ndarray]) -> float:
    """Median seconds of ``fn`` over ``histories``, after one warm-up call (tracing, allocation)."""
    fn(histories[0])
    times = []
    for h in histories:
        t = time.perf_counter()
        fn(h)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def paired_median_seconds(
    a: Callable[[np.ndarray], Any], b: Callable[[np.ndarray], Any], histories: Sequence[np.ndarray]
) -> Tuple[float, float]:
    """Median seconds of ``a`` and of ``b`` on the same histories, in one run: all of ``a``, then all of ``b``.
    (Not interleaved: TensorFlow's thread pool keeps spinning after a call and would slow whatever runs
    next, which a device without TensorFlow never sees.)"""
    return median_seconds(a, histories), median_seconds(b, histories)
