"""The pack: one file holding a JSON header and named binary sections (deltas and snapshots travel as packs).

Layout: ``MAGIC`` (8 bytes), header length (uint32 little-endian), the header (UTF-8 JSON object with
``kind``, ``meta`` and ``sections``: name, size and sha256 of each), then the sections' bytes in header
order. The file's length must be exactly what the header adds up to, and each section's hash is checked
when it is read, so a damaged or crafted pack gets a :class:`PackError`, never a crash.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, Union

from .errors import PackError

MAGIC = b"ERPACK1\n"
MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class Section:
    name: str
    offset: int
    size: int
    sha256: str


@dataclass
class Pack:
    """A parsed pack header; section bytes are read (and hash-checked) on demand from ``path``."""

    path: Path
    kind: str
    meta: Dict[str, Any]
    sections: Dict[str, Section]

    def read(self, name: str) -> bytes:
        s = self._section(name)
        with open(self.path, "rb") as f:
            f.seek(s.offset)
            data = f.read(s.size)
        if len(data) != s.size or hashlib.sha256(data).hexdigest() != s.sha256:
            raise PackError(f"{self.path.name}: section {name!r} is damaged (size or sha256 differs from its header)")
        return data

    def copy_to(self, name: str, out: BinaryIO) -> None:
        """Stream a section into ``out`` (for large files), checking its hash."""
        s = self._section(name)
        with open(self.path, "rb") as f:
            intact = _stream_section(f, s, out.write)
        if not intact:
            raise PackError(f"{self.path.name}: section {name!r} is damaged (size or sha256 differs from its header)")

    def _section(self, name: str) -> Section:
        try:
            return self.sections[name]
        except KeyError:
            raise PackError(f"{self.path.name} has no section {name!r}") from None


def write_pack(path: Union[str, Path], kind: str, meta: Mapping[str, Any], sections: Mapping[str, bytes]) -> None:
    """Write a pack to ``path`` (callers make it atomic by writing to a temporary name and renaming)."""
    entries = [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in sections.items()]
    header = json.dumps({"kind": kind, "meta": meta, "sections": entries}, sort_keys=True,
                        separators=(",", ":"), allow_nan=False).encode("utf-8")
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        for data in sections.values():
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_pack(path: Union[str, Path], kind: str) -> Pack:
    """Parse and check a pack's header: magic, lengths, section table, and that the file ends where it should."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 4)
            if len(head) < len(MAGIC) + 4 or head[:len(MAGIC)] != MAGIC:
                raise PackError(f"{path.name} is not an edge-rec pack (bad magic or too short)")
            (length,) = struct.unpack("<I", head[len(MAGIC):])
            if length > MAX_HEADER_BYTES or len(MAGIC) + 4 + length > size:
                raise PackError(f"{path.name}: header length {length} does not fit the file ({size} bytes)")
            raw = f.read(length)
    except OSError as e:
        raise PackError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PackError(f"{path.name}: header is not UTF-8 JSON ({type(e).__name__})") from None
    if not isinstance(header, dict) or header.get("kind") != kind:
        got = header.get("kind") if isinstance(header, dict) else type(header).__name__
        raise PackError(f"{path.name}: expected a {kind!r} pack, got {got!r}")
    meta, table = header.get("meta"), header.get("sections")
    if not isinstance(meta, dict) or not isinstance(table, list):
        raise PackError(f"{path.name}: header needs an object 'meta' and a list 'sections'")
    sections: Dict[str, Section] = {}
    offset = len(MAGIC) + 4 + length
    for i, entry in enumerate(_entries(table, path.name)):
        name, n, sha = entry
        if name in sections:
            raise PackError(f"{path.name}: section {name!r} appears twice")
        sections[name] = Section(name, offset, n, sha)
        offset += n
    if offset != size:
        raise PackError(f"{path.name}: the header accounts for {offset} bytes, the file has {size}")
    return Pack(path, kind, meta, sections)


def intact_prefix(path: Union[str, Path], kind: str) -> int:
    """How many leading bytes of a downloaded pack agree with its own header: the header and the sections
    before the first damaged one. A download whose signed hash fails resumes from there instead of from
    zero; the header is not trusted for anything else (the signed hash of the whole file still decides)."""
    try:
        pack = read_pack(path, kind)
    except PackError:
        return 0
    with open(pack.path, "rb") as f:
        for s in sorted(pack.sections.values(), key=lambda s: s.offset):
            if not _stream_section(f, s):
                return s.offset
    return 0  # every section matches the header yet the signed hash does not: the header itself is wrong


def _stream_section(f: BinaryIO, s: Section, sink: Callable[[bytes], Any] = lambda chunk: None) -> bool:
    """Read section ``s`` of the open pack ``f`` in chunks (each also given to ``sink``): whether its size
    and sha256 are what the header says."""
    f.seek(s.offset)
    h, left = hashlib.sha256(), s.size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            break
        h.update(chunk)
        sink(chunk)
        left -= len(chunk)
    return not left and h.hexdigest() == s.sha256


def _entries(table: List[Any], where: str) -> Iterator["tuple[str, int, str]"]:
    for i, e in enumerate(table):
        ok = (isinstance(e, dict) and isinstance(e.get("name"), str) and type(e.get("size")) is int
              and e["size"] >= 0 and isinstance(e.get("sha256"), str) and len(e["sha256"]) == 64)
        if not ok:
            raise PackError(f"{where}: section entry {i} needs a string name, a size >= 0 and a sha256")
        yield e["name"], e["size"], e["sha256"]
