"""Item vectors as the device stores them, and their inner products with a query.

Two layouts. The int8 table: one row per item, one float32 scale per row. The residual layout (format 8,
the compact store): hnswlib keeps a float32 copy of every vector it indexes, so the graph over a few
directions already holds each item's coordinates along them; the table then holds only the coordinates
along the remaining directions of an orthonormal basis (int8, one scale per row), and a vector is the
sum of its two parts. Each vector is stored once, which saves the graph's dimension in bytes per item.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from .errors import IncompatibleBundleError
from .quant import dequantize_rows, quantize_rows

Rows = Union[np.ndarray, slice]


@dataclass(frozen=True)
class GraphPart:
    """The residual layout's other half: the basis and the graph's coordinates of every item."""

    basis: np.ndarray   # (dim, dim) float32, orthonormal; the first coords.shape[1] columns are the graph's directions
    coords: np.ndarray  # (count, graph dim) float32: each item's coordinates along them (a view of the graph file)


def complete_basis(projection: np.ndarray) -> np.ndarray:
    """(d, d) float32 orthonormal basis: ``projection``'s (d, p) orthonormal columns, then the directions
    orthogonal to them (a QR completion, the same on every run)."""
    p = projection.shape[1]
    full, _ = np.linalg.qr(np.asarray(projection, np.float64), mode="complete")
    return np.hstack([np.asarray(projection, np.float64), full[:, p:]]).astype(np.float32)


def split_rows(vectors: np.ndarray, basis: np.ndarray, graph_dim: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(graph coordinates float32 (n, graph_dim), int8 residual rows (n, d - graph_dim), scales (n,)).

    The coordinates are summed one basis row at a time in float64, elementwise: no BLAS kernel picks the
    order, so a publisher and a device of another architecture compute the same bytes, which the signed
    manifest of a delta-built version checks."""
    v = np.asarray(vectors, np.float64)
    b = np.asarray(basis, np.float64)
    coords = np.zeros((len(v), b.shape[1]), np.float64)
    for j in range(b.shape[0]):
        coords += v[:, j:j + 1] * b[j]
    rest, scales = quantize_rows(coords[:, graph_dim:])
    return coords[:, :graph_dim].astype(np.float32), rest, scales


def check_basis(basis: np.ndarray, name: str) -> None:
    """Refuse a basis that is not orthonormal (vectors would not be the sum of their parts)."""
    error = np.abs(basis.astype(np.float64).T @ basis - np.eye(len(basis))).max() if basis.size else 0.0
    if not error < 1e-3:
        raise IncompatibleBundleError(f"{name} is not an orthonormal basis (largest error {error:.3g})")


class ItemVectors:
    """Rows of the item vectors, from the int8 table (and, in the residual layout, the graph's coordinates)."""

    def __init__(self, table: np.ndarray, scales: np.ndarray, graph: Optional[GraphPart] = None) -> None:
        if table.dtype != np.int8 or table.ndim != 2:
            raise IncompatibleBundleError(f"item vectors must be a 2-d int8 array, got {table.dtype} {table.shape}")
        if scales.shape != (len(table),):
            raise IncompatibleBundleError(f"item table: {len(table)} vectors, {scales.shape[0]} scales")
        if graph is not None:
            n, p = graph.coords.shape
            if graph.basis.shape != (p + table.shape[1],) * 2 or n != len(table):
                raise IncompatibleBundleError(f"residual item table {table.shape} does not fit the graph's {n} items of "
                                              f"{p} coordinates and the basis {graph.basis.shape}")
        self.table, self.scales, self.graph = table, np.asarray(scales, np.float32), graph
        if graph is not None:  # the basis's two sets of columns, sliced once: every request multiplies by them
            p = graph.coords.shape[1]
            self._graph_dirs, self._rest_dirs = np.ascontiguousarray(graph.basis[:, :p]), np.ascontiguousarray(graph.basis[:, p:])

    def __len__(self) -> int:
        return len(self.table)

    @property
    def dim(self) -> int:
        return self.table.shape[1] + (self.graph.coords.shape[1] if self.graph is not None else 0)

    def rows(self, rows: Rows) -> np.ndarray:
        """(len(rows), dim) float32 vectors of the given rows."""
        rest = dequantize_rows(self.table[rows], self.scales[rows])
        if self.graph is None:
            return rest
        return self.graph.coords[rows] @ self._graph_dirs.T + rest @ self._rest_dirs.T

    def scores(self, rows: Rows, q: np.ndarray, along_graph: Optional[np.ndarray] = None) -> np.ndarray:
        """Inner products of ``q`` with the rows' vectors (``slice(None)``: every row), each row's scale applied
        to its product. ``along_graph``: the rows' products with what the graph holds, when known (hnswlib's
        inner-product distances give them): the residual layout then reads no graph coordinates; a table
        of whole vectors does not need them."""
        q = np.asarray(q, np.float32)
        rest = (self.table[rows].astype(np.float32) @ (q if self.graph is None else q @ self._rest_dirs)) * self.scales[rows]
        if self.graph is None:
            return rest
        if along_graph is None:
            along_graph = self.graph.coords[rows] @ (q @ self._graph_dirs)
        return (along_graph + rest).astype(np.float32, copy=False)
