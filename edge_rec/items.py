"""The device's item table: item vectors (int8 with per-row scales, see :mod:`edge_rec.vectors`), ids,
popularity, and metadata read lazily.

Row ``r`` of the table is label ``r`` of the HNSW index. Metadata (titles, genres) stays on disk until
asked for: a JSON-lines file with one object per row, read a block of ``LINE_BLOCK`` lines at a time
through a table of the blocks' offsets built on first use (a quarter of a byte per row).
Rows are never renumbered: an item deleted by a delta sync stays as a tombstone row (empty id, zero
vector, marked deleted in the index) until the next full snapshot.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import IncompatibleBundleError, ItemIndexError
from .item_ids import ItemIds
from .vectors import GraphPart, ItemVectors

TOMBSTONE = ""  # the id of a deleted row
_DECODER = json.JSONDecoder()


def metadata_line(metadata: Dict[str, Any]) -> bytes:
    return (json.dumps(metadata, sort_keys=True) + "\n").encode()


def item_file_bytes(vectors: np.ndarray, scales: np.ndarray, ids: Sequence[str],
                    metadata: "Sequence[Dict[str, Any]] | Sequence[bytes]", popularity: np.ndarray) -> Dict[str, bytes]:
    """The item table's files, serialized the one way both the converter and a device applying a delta
    do it, so a table rebuilt on the device has the bytes (and sha256) the signed manifest expects.
    ``metadata`` holds one object per row, or rows already serialized by :func:`metadata_line`."""
    return {**vector_file_bytes(vectors, scales), "ids": json.dumps(list(ids)).encode(),
            "metadata": b"".join(m if isinstance(m, bytes) else metadata_line(m) for m in metadata),
            "popularity": npy_bytes(np.ascontiguousarray(popularity, dtype=np.int32))}


def vector_file_bytes(vectors: np.ndarray, scales: np.ndarray) -> Dict[str, bytes]:
    """An int8 vector table's two files (the item table's, the search table's), serialized one way."""
    return {"vectors": npy_bytes(np.ascontiguousarray(vectors, dtype=np.int8)),
            "scales": npy_bytes(np.ascontiguousarray(scales, dtype=np.float32))}


def npy_bytes(array: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


LINE_BLOCK = 16  # metadata lines read together (about 1.5 KB on ML-1M): one offset kept per block


class ItemTable:
    CACHE_ROWS = 4096

    def __init__(self, vectors: np.ndarray, scales: np.ndarray, ids: "Sequence[str] | ItemIds", popularity: np.ndarray,
                 metadata_path: Optional[Path] = None, graph: Optional[GraphPart] = None) -> None:
        """``vectors``, ``scales``: the int8 table; ``graph``: the residual layout's other half (see :mod:`edge_rec.vectors`)."""
        self.vectors = ItemVectors(vectors, scales, graph)
        if len(ids) != len(vectors):
            raise IncompatibleBundleError(f"item table: {len(vectors)} vectors, {len(ids)} ids")
        if popularity.size and (popularity.min() < 0 or popularity.max() >= len(vectors)):
            raise IncompatibleBundleError("popularity list refers to rows outside the item table")
        self.ids: ItemIds = ids if isinstance(ids, ItemIds) else ItemIds.from_list(ids)
        self.deleted = self.ids.tombstones()
        self.popularity = popularity.astype(np.int64)
        self.metadata_path = metadata_path
        self._blocks: Optional[np.ndarray] = None
        self._fd: Optional[int] = None
        self._cache: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()  # an LRU of decoded rows
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.dim

    def dequantized(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), dim) float32 vectors of the given rows."""
        return self.vectors.rows(np.asarray(rows, dtype=np.int64))

    def rows(self, item_ids: Sequence[str], strict: bool = True) -> np.ndarray:
        """Rows of ``item_ids``; unknown ids raise ``KeyError`` (or are skipped with ``strict=False``)."""
        aligned = self.aligned_rows(item_ids)
        known = aligned >= 0
        if strict and not known.all():
            raise KeyError(f"unknown item id {item_ids[int(np.argmin(known))]!r}: not in this bundle's catalog")
        return aligned[known]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.ids

    def aligned_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """The row of each id, -1 for ids not in the catalog (int64, same length as ``item_ids``)."""
        return self.ids.rows(item_ids)

    def metadata(self, row: int) -> Dict[str, Any]:
        """The metadata object of one row (empty if the bundle has none for it); recently used rows are cached."""
        return self.metadata_rows([row])[0]

    def metadata_rows(self, rows: Sequence[int]) -> List[Dict[str, Any]]:
        """The metadata objects of several rows (each a copy: callers may change them)."""
        if self.metadata_path is None:
            return [{} for _ in rows]
        cache = self._cache
        with self._lock:
            found = [cache.get(r) for r in rows]
            for r, value in zip(rows, found):
                if value is not None:
                    cache.move_to_end(r)
        return [dict(value) if value is not None else self._read(r) for r, value in zip(rows, found)]

    def _read(self, row: int) -> Dict[str, Any]:
        """Decode one row's line from the file and cache it (least recently used rows leave first)."""
        with self._lock:
            if self._blocks is None:
                self._blocks = self._index_lines()
                self._fd = os.open(self.metadata_path, os.O_RDONLY)
            blocks, fd = self._blocks, self._fd
        if not 0 <= row < len(self):
            return {}
        block = row // LINE_BLOCK
        start = int(blocks[block])
        within = row % LINE_BLOCK
        line = os.pread(fd, int(blocks[block + 1]) - start, start).split(b"\n", within + 1)[within]
        try:  # raw_decode on text: a third of json.loads(bytes)'s time on a short line
            text = line.decode("utf-8")
            value, end = _DECODER.raw_decode(text)
            if text[end:].strip():
                raise ValueError("extra data")
        except ValueError:  # UnicodeDecodeError is one too
            raise ItemIndexError(f"{self.metadata_path.name}: line {row + 1} is not JSON") from None
        value = value if isinstance(value, dict) else {}
        with self._lock:
            self._cache[row] = value
            if len(self._cache) > self.CACHE_ROWS:
                self._cache.popitem(last=False)
        return dict(value)

    def all_metadata(self) -> List[Dict[str, Any]]:
        """Every row's metadata object, read in one pass (for indexes built over the whole catalog)."""
        if self.metadata_path is None:
            return [{} for _ in self.ids]
        out: List[Dict[str, Any]] = []
        with open(self.metadata_path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    value = json.loads(line)
                except ValueError:
                    raise ItemIndexError(f"{self.metadata_path.name}: line {number} is not JSON") from None
                out.append(value if isinstance(value, dict) else {})
        if len(out) != len(self.ids):
            raise IncompatibleBundleError(f"{self.metadata_path.name} has {len(out)} lines for {len(self.ids)} items")
        return out

    def close(self) -> None:
        self.ids.close()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd, self._blocks = None, None

    def _index_lines(self) -> np.ndarray:
        """Where every ``LINE_BLOCK``-th line starts (and where the last line ends), found a megabyte at a time
        by numpy, checking the file has one line per row: at a million items 0.25 MB, against 4 MB for every
        line's offset (and 15 MB and 0.2 s for a Python loop over the lines)."""
        n = len(self.ids)
        size = os.path.getsize(self.metadata_path)
        blocks = np.zeros(-(-n // LINE_BLOCK) + 1, np.uint32 if size < 2 ** 32 else np.int64)
        lines, read, end = 0, 0, 0  # newlines found (one past n at most), bytes read, the end of line `lines`
        with open(self.metadata_path, "rb") as f:
            while lines <= n and (chunk := f.read(1 << 20)):
                ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)[:n + 1 - lines] + (read + 1)
                starting = np.arange(lines + 1, lines + 1 + len(ends))  # the line each newline's next byte starts
                first = (starting % LINE_BLOCK == 0) & (starting < n)
                blocks[starting[first] // LINE_BLOCK] = ends[first]
                lines, read = lines + len(ends), read + len(chunk)
                end = int(ends[-1]) if len(ends) else end
        if read < size and lines <= n:
            raise IncompatibleBundleError(f"{self.metadata_path.name} changed while it was read")
        if read and lines <= n and end != read:  # a last line without its newline
            lines, end = lines + 1, read
        if lines != n:
            found = f"{lines} lines" if lines < n else f"more than {n} lines"
            raise IncompatibleBundleError(f"{self.metadata_path.name} has {found} for {n} items")
        blocks[-1] = end
        return blocks
