"""int8 quantization shared by the converter (which writes) and the device (which reads).

Item vectors are stored per row as symmetric int8 with one float32 scale per row:
``vector = q * scale``. Model tensors use TFLite's affine scheme: ``real = (q - zero_point) * scale``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np


def quantize_rows(vectors: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(n, d) float -> (int8 (n, d), float32 scales (n,)), symmetric per row; zero rows get scale 1."""
    v = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(v).max(axis=1) if v.size else np.zeros(len(v), np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(v / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def dequantize_rows(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_rows` (up to rounding)."""
    return q.astype(np.float32) * np.asarray(scales, dtype=np.float32)[..., None]


@lru_cache(maxsize=None)
def _limits(dtype: str) -> Tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def quantize_tensor(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Float -> TFLite affine integer tensor."""
    low, high = _limits(dtype)
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale))
    q += zero_point
    return np.clip(q, low, high, out=q).astype(dtype)


def dequantize_tensor(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite affine integer tensor -> float32."""
    return (np.asarray(q, np.float32) - zero_point) * np.float32(scale)
