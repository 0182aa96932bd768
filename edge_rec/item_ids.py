"""The item table's ids, held compactly: the ids file's bytes, each id's span in them, sorted hash keys.

At a million items a list of Python strings costs ~73 MB and a dict from id to row ~70 MB more; this
keeps the file's bytes (~1 byte per id character; left in the bundle's file when it has one, read an id
at a time, see :mod:`edge_rec.file_bytes`) plus 13 bytes per id (ids shorter than 256 bytes; 16 at most),
and maps a history's ids to rows through 32-bit keys of their hashes, each hit checked against its bytes
(equal keys are runs searched in turn). Row ``r``'s id is decoded when asked for. An empty id is a
tombstone (a row a delta deleted): it never maps to a row.
"""
from __future__ import annotations

import json
from typing import Iterator, List, Sequence, Union, overload

import numpy as np

from .errors import IncompatibleBundleError, ManifestError
from .file_bytes import FileBytes

_ENCODING, _ERRORS = "utf-8", "surrogatepass"  # ids with lone surrogates (legal in JSON) round-trip too
_NOT_WHITESPACE = np.ones(256, bool)
_NOT_WHITESPACE[list(b" \t\n\r")] = False
_CHUNK = 1 << 16  # ids hashed per numpy step (bounds the transient index arrays)
_FEW = 16          # up to this many ids are hashed in Python (numpy's per-call cost is larger)
_MASK, _PRIME, _SEED = (1 << 64) - 1, 0x100000001B3, 0x9E3779B97F4A7C15


def _encode(item_id: object) -> bytes:
    return (item_id if type(item_id) is str else str(item_id)).encode(_ENCODING, _ERRORS)


class ItemIds(Sequence[str]):
    """Row -> id (``ids[r]``, decoded on demand) and ids -> rows (:meth:`rows`), in a few bytes per id."""

    def __init__(self, blob: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self._blob: "bytes | FileBytes" = blob
        self._starts = starts.astype(np.uint32 if len(blob) < 2 ** 32 else np.int64)
        lengths = np.asarray(ends, np.int64) - starts
        longest = int(lengths.max(initial=0))
        self._lengths = lengths.astype(np.uint8 if longest < 2 ** 8 else np.uint16 if longest < 2 ** 16 else np.uint32)
        keys = _key(hash_spans(np.frombuffer(blob, np.uint8), self._starts, self._starts + self._lengths))
        self._order = np.argsort(keys, kind="stable").astype(np.int32 if len(starts) < 2 ** 31 else np.int64)
        self._keys = keys[self._order]
        self._check_unique()

    @classmethod
    def from_list(cls, ids: Sequence[str]) -> "ItemIds":
        encoded = [_encode(i) for i in ids]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        ends = np.cumsum(lengths)
        return cls(b"".join(encoded), ends - lengths, ends)

    @classmethod
    def from_json(cls, data: bytes, stored: "FileBytes | bytes | None" = None) -> "ItemIds":
        """The ids file (a JSON list of strings). Ids without escapes (the usual case) are located in the
        file's bytes by numpy, which then serve as the blob (``stored``, the same file left on disk, if
        given: ``data`` is then only read once, at opening); a file with escapes is parsed by ``json`` into
        a blob of its own (``stored`` is then not needed)."""
        spans = _plain_json_strings(data) if b"\\" not in data else None
        if spans is not None:
            try:
                data.decode(_ENCODING)
            except UnicodeDecodeError as e:
                raise ManifestError(f"item ids are not a JSON list: {e}") from None
            table = cls(data, *spans)
            if stored is not None:
                if len(stored) != len(data):
                    raise ManifestError("the stored item ids differ from the ids file read")
                table._blob = stored
            return table
        try:
            value = json.loads(data.decode(_ENCODING))
        except (UnicodeDecodeError, ValueError) as e:
            raise ManifestError(f"item ids are not a JSON list: {e}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ManifestError("item ids must be a JSON list of strings")
        return cls.from_list(value)

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> List[str]: ...

    def __getitem__(self, row: Union[int, slice]) -> Union[str, List[str]]:
        if isinstance(row, slice):
            return self.take(np.arange(*row.indices(len(self))))
        return self._raw(int(row)).decode(_ENCODING, _ERRORS)

    def _raw(self, row: int) -> bytes:
        """Row ``row``'s id as stored (UTF-8 bytes; empty for a tombstone)."""
        start = self._starts.item(row)
        return self._blob[start:start + self._lengths.item(row)]

    def take(self, rows: Sequence[int]) -> List[str]:
        """The ids of ``rows`` (what a result list needs: one numpy gather, then a slice per id)."""
        blob = self._blob
        return [blob[a:a + n].decode(_ENCODING, _ERRORS) for a, n in zip(self._starts[rows].tolist(), self._lengths[rows].tolist())]

    def __iter__(self) -> Iterator[str]:
        for c in range(0, len(self), _CHUNK):
            yield from self[c:c + _CHUNK]

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and int(self.rows([item_id])[0]) >= 0

    def close(self) -> None:
        """Close the ids file when the ids are read from it (nothing to do for ids held in memory)."""
        if isinstance(self._blob, FileBytes):
            self._blob.close()

    def tombstones(self) -> np.ndarray:
        """Rows whose id is empty (deleted by a delta), ascending."""
        return np.flatnonzero(self._lengths == 0).astype(np.int64)

    def rows(self, item_ids: Sequence[object]) -> np.ndarray:
        """The row of each id, -1 for ids not in the table (int64, same length as ``item_ids``)."""
        wanted = [_encode(i) for i in item_ids]
        if not wanted or not len(self):
            return np.full(len(wanted), -1, np.int64)
        if len(wanted) <= _FEW:  # in Python: numpy's per-call cost exceeds the work for a few ids
            keys = [hash_bytes(w) >> 32 for w in wanted]  # as a uint32 below: a Python int would cast the array
            positions = [self._keys.searchsorted(np.uint32(h)).item() for h in keys]
        else:
            ends = np.cumsum(np.fromiter(map(len, wanted), np.int64, len(wanted)))
            found = _key(hash_spans(np.frombuffer(b"".join(wanted), np.uint8), np.r_[0, ends[:-1]], ends))
            keys, positions = found.tolist(), np.searchsorted(self._keys, found).tolist()
        return np.array([self._row_of(w, h, p) for w, h, p in zip(wanted, keys, positions)], np.int64)

    def _row_of(self, wanted: bytes, h: int, p: int) -> int:
        """The row holding ``wanted`` among the ids whose key is ``h`` (a run from position ``p``), or -1."""
        keys = self._keys
        while p < len(keys) and keys.item(p) == h:
            r = self._order.item(p)
            if wanted and self._raw(r) == wanted:
                return r
            p += 1
        return -1

    def _check_unique(self) -> None:
        """Equal ids have equal keys: only runs of equal keys (collisions, tombstones) need a look."""
        same = np.flatnonzero(self._keys[1:] == self._keys[:-1])
        for start in same[np.r_[True, np.diff(same) > 1]].tolist() if len(same) else []:
            end = start + 1
            while end + 1 < len(self._keys) and self._keys[end + 1] == self._keys[start]:
                end += 1
            live = [b for b in map(self._raw, self._order[start:end + 1].tolist()) if b]
            if len(set(live)) != len(live):
                raise IncompatibleBundleError("item ids are not unique")


def _key(hashes: np.ndarray) -> np.ndarray:
    """The 32-bit lookup keys of 64-bit hashes (their high half: half the memory, and at a million ids about a
    hundred colliding pairs, which the byte check sorts out)."""
    return (hashes >> np.uint64(32)).astype(np.uint32)


def hash_bytes(data: bytes) -> int:
    """A 64-bit hash of ``data``, eight bytes (little-endian, zero-padded) at a time: per word, xor, multiply
    by an odd constant, xor-shift (each step a bijection, so ids of up to 8 bytes and equal length never
    collide). :func:`hash_spans` computes the same for many byte strings at once."""
    h = (len(data) * _SEED) & _MASK
    for w in range(0, len(data), 8):
        h = ((h ^ int.from_bytes(data[w:w + 8], "little")) * _PRIME) & _MASK
        h ^= h >> 31
    return h


def hash_spans(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """:func:`hash_bytes` of ``raw[starts[i]:ends[i]]`` for every i (uint64), vectorised by numpy."""
    out = np.empty(len(starts), np.uint64)
    lanes = np.arange(8)
    last = max(len(raw) - 1, 0)
    for c in range(0, len(starts), _CHUNK):
        s, n = starts[c:c + _CHUNK].astype(np.int64), (ends[c:c + _CHUNK] - starts[c:c + _CHUNK]).astype(np.int64)
        h = n.astype(np.uint64) * np.uint64(_SEED)
        for w in range(int(n.max(initial=0) + 7) // 8):
            active = np.flatnonzero(n > 8 * w)
            offsets = lanes[None, :] + 8 * w
            chunk = raw[np.minimum(s[active, None] + offsets, last)]  # (m, 8) bytes, past-the-end ones zeroed
            chunk[offsets >= n[active, None]] = 0
            g = (h[active] ^ chunk.view("<u8")[:, 0]) * np.uint64(_PRIME)
            h[active] = g ^ (g >> np.uint64(31))
        out[c:c + _CHUNK] = h
    return out


def _plain_json_strings(data: bytes) -> "tuple[np.ndarray, np.ndarray] | None":
    """(starts, ends) of the strings of a JSON list of strings without escapes, or None when ``data`` is
    not exactly that (the caller then lets ``json`` parse it and report what is wrong)."""
    raw = np.frombuffer(data, np.uint8)
    is_quote = raw == ord('"')
    quotes = np.flatnonzero(is_quote)
    if len(quotes) % 2:
        return None
    control = np.flatnonzero(raw < 0x20)
    if (np.searchsorted(quotes, control) % 2).any():  # raw control characters are not allowed in JSON strings
        return None
    # no escapes: every quote opens or closes a string (a uint8 running count keeps its parity when it wraps)
    outside = raw[~((np.cumsum(is_quote, dtype=np.uint8) & 1).astype(bool) | is_quote)]
    tokens = outside[_NOT_WHITESPACE[outside]].tobytes()
    n = len(quotes) // 2
    return (quotes[0::2] + 1, quotes[1::2]) if tokens == b"[" + b"," * max(n - 1, 0) + b"]" else None
