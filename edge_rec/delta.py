"""Deltas between bundle versions: the format (a pack) and the one function that applies one.

A delta from version N to N+1 carries item upserts (int8 vectors with scales, metadata), deletions,
optionally a replacement model, and the signed manifest of version N+1. Applying it rebuilds the item
table (byte-identical to what the publisher computed, so its sha256 must match the signed manifest),
copies or replaces the model, and grows the previous HNSW index in place (hnswlib update / add /
mark_deleted). The publisher runs this same function to compute version N+1, so both sides agree.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from . import failpoints
from .bundle import Bundle, sha256_file, write_local_record
from .errors import EdgeRecError, IncompatibleBundleError, IntegrityError
from .items import TOMBSTONE, item_file_bytes, metadata_line
from .manifest import MANIFEST_NAME, FileEntry, Manifest
from .pack import Pack, PackError, read_pack, write_pack
from .quant import dequantize_rows

DELTA_FORMAT = "edge-rec-delta/1"
KIND = "delta"


class DeltaError(EdgeRecError):
    """A delta is malformed, or does not apply to this base, or does not produce the version it claims."""


@dataclass
class ItemChanges:
    """Catalog changes: items to insert or replace (by id, with int8 vectors and metadata) and ids to delete."""

    upsert_ids: List[str]
    upsert_metadata: List[Dict[str, Any]]
    upsert_vectors: np.ndarray  # int8 (n, dim)
    upsert_scales: np.ndarray   # float32 (n,)
    delete_ids: List[str] = field(default_factory=list)

    def check(self, dim: int, where: str = "delta") -> None:
        n = len(self.upsert_ids)
        if len(self.upsert_metadata) != n or self.upsert_vectors.shape != (n, dim) or self.upsert_scales.shape != (n,):
            raise DeltaError(f"{where}: {n} upserted ids, {len(self.upsert_metadata)} metadata, vectors "
                             f"{self.upsert_vectors.shape}, scales {self.upsert_scales.shape} (dim {dim})")
        ids = self.upsert_ids + self.delete_ids
        if any(not isinstance(i, str) or i == TOMBSTONE for i in ids):
            raise DeltaError(f"{where}: item ids must be non-empty strings")
        if len(set(ids)) != len(ids):
            raise DeltaError(f"{where}: an item id is upserted or deleted twice")
        if not all(isinstance(m, dict) for m in self.upsert_metadata):
            raise DeltaError(f"{where}: each upserted item's metadata must be an object")
        if not np.all(np.isfinite(self.upsert_scales)) or np.any(self.upsert_scales <= 0):
            raise DeltaError(f"{where}: vector scales must be finite and positive")


@dataclass
class Delta:
    from_version: int
    to_version: int
    base_manifest_sha256: str  # sha256 of the base version's manifest.json bytes
    changes: ItemChanges
    manifest: bytes            # the signed manifest.json of version ``to_version``
    model: Optional[bytes] = None


def write_delta(path: Path, delta: Delta) -> None:
    c = delta.changes
    meta = {"format": DELTA_FORMAT, "from_version": delta.from_version, "to_version": delta.to_version,
            "base_manifest_sha256": delta.base_manifest_sha256, "upsert_ids": c.upsert_ids,
            "upsert_metadata": c.upsert_metadata, "delete_ids": c.delete_ids, "dim": int(c.upsert_vectors.shape[1])}
    sections = {"manifest": delta.manifest, "upsert_vectors": np.ascontiguousarray(c.upsert_vectors, np.int8).tobytes(),
                "upsert_scales": np.ascontiguousarray(c.upsert_scales, "<f4").tobytes()}
    if delta.model is not None:
        sections["model"] = delta.model
    write_pack(path, KIND, meta, sections)


def read_delta(path: Path) -> Delta:
    """Parse a delta file; every field is type-checked, so bad input raises DeltaError (or PackError)."""
    pack = read_pack(path, KIND)
    m = pack.meta
    if m.get("format") != DELTA_FORMAT:
        raise DeltaError(f"{Path(path).name}: format {m.get('format')!r}, expected {DELTA_FORMAT!r}")
    ints = {k: m.get(k) for k in ("from_version", "to_version", "dim")}
    if any(type(v) is not int or v < 0 for v in ints.values()) or ints["to_version"] != ints["from_version"] + 1:
        raise DeltaError(f"{Path(path).name}: from_version, to_version (= from + 1) and dim must be integers >= 0")
    base = m.get("base_manifest_sha256")
    if not isinstance(base, str) or len(base) != 64:
        raise DeltaError(f"{Path(path).name}: base_manifest_sha256 missing or malformed")
    lists = [m.get(k) for k in ("upsert_ids", "upsert_metadata", "delete_ids")]
    if not all(isinstance(x, list) for x in lists):
        raise DeltaError(f"{Path(path).name}: upsert_ids, upsert_metadata and delete_ids must be lists")
    dim, n = ints["dim"], len(lists[0])
    vectors, scales = _section(pack, "upsert_vectors"), _section(pack, "upsert_scales")
    if len(vectors) != n * dim or len(scales) != 4 * n:
        raise DeltaError(f"{Path(path).name}: {n} upserts of dim {dim} need {n * dim} vector bytes and {4 * n} "
                         f"scale bytes, got {len(vectors)} and {len(scales)}")
    changes = ItemChanges(lists[0], lists[1], np.frombuffer(vectors, np.int8).reshape(n, dim),
                          np.frombuffer(scales, "<f4").astype(np.float32), lists[2])
    changes.check(dim, Path(path).name)
    model = _section(pack, "model") if "model" in pack.sections else None
    return Delta(ints["from_version"], ints["to_version"], base, changes, _section(pack, "manifest"), model)


def _section(pack: Pack, name: str) -> bytes:
    try:
        return pack.read(name)
    except PackError as e:
        raise DeltaError(str(e)) from None


@dataclass
class BuiltVersion:
    """What :func:`build_version` wrote: the files (besides the index) with their hashes, and the table size."""

    files: Dict[str, FileEntry]
    count: int
    index_file: str


def build_version(base: Bundle, changes: ItemChanges, out: Path, item_names: Dict[str, str],
                  model: Optional[bytes] = None, model_name: Optional[str] = None) -> BuiltVersion:
    """Write base + changes into the empty directory ``out``: item table, model, grown index.

    Rows keep their numbers (deleted ones become tombstones), upserts of known ids replace their row,
    new ids are appended; popularity drops deleted rows and appends new ones (least popular). The
    index is the base index with the same operations, in a fixed order, on one thread.
    """
    m = base.manifest
    changes.check(m.items.dim)
    vectors = base.load_array(m.items.vectors).copy()
    scales = base.load_array(m.items.scales).astype(np.float32).copy()
    ids: List[str] = json.loads(base.read_bytes(m.items.ids))
    lines = base.read_bytes(m.items.metadata).splitlines(keepends=True)
    popularity = base.load_array(m.items.popularity).astype(np.int64)
    row_of = {item_id: r for r, item_id in enumerate(ids) if item_id != TOMBSTONE}
    deleted = []
    for item_id in changes.delete_ids:
        r = row_of.pop(item_id, None)
        if r is None:
            raise DeltaError(f"the delta deletes {item_id!r}, which version {m.bundle_version} does not have")
        deleted.append(r)
        ids[r], lines[r] = TOMBSTONE, metadata_line({})
        vectors[r], scales[r] = 0, 1.0
    updated, appended = [], []
    new_rows = {}
    for i, item_id in enumerate(changes.upsert_ids):
        r = row_of.get(item_id)
        if r is None:
            r = len(ids) + len(appended)
            appended.append(i)
        else:
            updated.append(r)
        new_rows[i] = r
    n_total = len(ids) + len(appended)
    vectors = np.concatenate([vectors, np.zeros((len(appended), m.items.dim), np.int8)])
    scales = np.concatenate([scales, np.ones(len(appended), np.float32)])
    ids += [changes.upsert_ids[i] for i in appended]
    lines += [b""] * len(appended)
    for i, r in new_rows.items():
        vectors[r], scales[r] = changes.upsert_vectors[i], changes.upsert_scales[i]
        lines[r] = metadata_line(changes.upsert_metadata[i])
    gone = set(deleted)
    popularity = np.asarray([r for r in popularity.tolist() if r not in gone]
                            + [new_rows[i] for i in appended], dtype=np.int32)
    files: Dict[str, FileEntry] = {}
    for key, data in item_file_bytes(vectors, scales, ids, lines, popularity).items():
        files[item_names[key]] = _write(out / item_names[key], data)
    model_name = model_name or m.model.file
    failpoints.reached("stage-model")
    if model is not None:
        files[model_name] = _write(out / model_name, model)
    else:
        shutil.copyfile(base.verify_file(m.model.file), out / model_name)
        files[model_name] = FileEntry(*sha256_file(out / model_name))
    failpoints.reached("stage-index")
    _grow_index(base, out / m.index.file, n_total, sorted(deleted), sorted(set(new_rows.values())),
                dequantize_rows(vectors, scales))
    return BuiltVersion(files, n_total, m.index.file)


def _write(path: Path, data: bytes) -> FileEntry:
    with open(path, "wb") as f:
        f.write(data)
    return FileEntry(hashlib.sha256(data).hexdigest(), len(data))


def _grow_index(base: Bundle, out: Path, count: int, deleted: List[int], changed: List[int], vectors: np.ndarray) -> None:
    import hnswlib

    from .index import check_header
    spec = base.manifest.index
    src = base.verify_file(spec.file)
    check_header(src, spec)
    index = hnswlib.Index(space=spec.space, dim=spec.dim)
    index.load_index(str(src), max_elements=count)
    index.set_num_threads(1)  # the same graph on the publisher and on every device
    for r in deleted:
        index.mark_deleted(r)
    if changed:
        index.add_items(vectors[changed], np.asarray(changed, dtype=np.int64))
    index.save_index(str(out))


def apply_delta(base: Bundle, delta: Delta, out: Path, target: Manifest) -> None:
    """Device side: build version ``to_version`` into the empty directory ``out`` and check every file
    against the signed ``target`` manifest (already signature-verified by the caller)."""
    m = base.manifest
    base_sha, _ = sha256_file(base.path / MANIFEST_NAME)
    if delta.from_version != m.bundle_version or delta.base_manifest_sha256 != base_sha:
        raise DeltaError(f"this delta applies to version {delta.from_version} (manifest {delta.base_manifest_sha256[:12]}), "
                         f"the device has version {m.bundle_version} (manifest {base_sha[:12]})")
    if target.bundle_version != delta.to_version or not target.index.built_on_device:
        raise DeltaError(f"the delta's manifest is version {target.bundle_version}, the delta says {delta.to_version}")
    t, b = target.index, m.index
    if (t.space, t.dim, t.M, t.file) != (b.space, b.dim, b.M, b.file) or target.items.dim != m.items.dim:
        raise IncompatibleBundleError(f"version {target.bundle_version}'s index ({t.space}, dim {t.dim}, M {t.M}) "
                                      f"cannot grow from version {m.bundle_version}'s ({b.space}, dim {b.dim}, M {b.M})")
    names = {"vectors": target.items.vectors, "scales": target.items.scales, "ids": target.items.ids,
             "metadata": target.items.metadata, "popularity": target.items.popularity}
    built = build_version(base, delta.changes, out, names, delta.model, target.model.file)
    if built.count != target.items.count:
        raise DeltaError(f"the delta makes {built.count} rows, version {target.bundle_version} has {target.items.count}")
    for name, entry in built.files.items():
        if target.files.get(name) != entry:
            raise IntegrityError(f"{name} rebuilt from the delta does not match version {target.bundle_version}'s "
                                 "signed manifest; the delta or the base is damaged")
    failpoints.reached("write-manifest")
    (out / MANIFEST_NAME).write_bytes(delta.manifest)
    write_local_record(out, target)
