"""Deltas between bundle versions: the format (a pack) and the one function that applies one.

A delta from version N to N+1 carries item upserts (int8 vectors with scales, metadata, and
search vectors when the bundle has search), deletions, optionally a replacement model, and the signed
manifest of version N+1. Applying it rebuilds the item (and search) tables (byte-identical to what the
publisher computed, so their sha256 must match the signed manifest), copies or replaces the model, and
grows the previous HNSW indexes in place (hnswlib update / add / mark_deleted), so items a delta adds
are recommendable and searchable at once. The publisher runs this same function to compute version N+1, so both sides agree.
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
from .errors import DeltaError, IncompatibleBundleError, IntegrityError
from .index import check_index_file, load_projection, restore_index
from .items import TOMBSTONE, item_file_bytes, metadata_line, vector_file_bytes
from .manifest import MANIFEST_NAME, FileEntry, IndexSpec, Manifest
from .pack import Pack, PackError, read_pack, write_pack
from .quant import dequantize_rows
from .vectors import split_rows

DELTA_FORMAT = "edge-rec-delta/1"
KIND = "delta"


@dataclass
class ItemChanges:
    """Catalog changes: items to insert or replace (by id, with int8 vectors and metadata) and ids to delete."""

    upsert_ids: List[str]
    upsert_metadata: List[Dict[str, Any]]
    upsert_vectors: np.ndarray  # int8 (n, dim)
    upsert_scales: np.ndarray   # float32 (n,)
    delete_ids: List[str] = field(default_factory=list)
    upsert_search_vectors: Optional[np.ndarray] = None  # int8 (n, search dim): for bundles with search
    upsert_search_scales: Optional[np.ndarray] = None   # float32 (n,)

    def check(self, dim: int, where: str = "delta", search_dim: Optional[int] = None) -> None:
        n = len(self.upsert_ids)
        if len(self.upsert_metadata) != n or self.upsert_vectors.shape != (n, dim) or self.upsert_scales.shape != (n,):
            raise DeltaError(f"{where}: {n} upserted ids, {len(self.upsert_metadata)} metadata, vectors "
                             f"{self.upsert_vectors.shape}, scales {self.upsert_scales.shape} (dim {dim})")
        has_search = self.upsert_search_vectors is not None
        if search_dim is None and has_search:
            raise DeltaError(f"{where}: carries search vectors, but the bundle has no search")
        if search_dim is not None:
            if not has_search or self.upsert_search_scales is None:
                raise DeltaError(f"{where}: the bundle has search, so upserted items need search vectors "
                                 "(publish with the search model)")
            if self.upsert_search_vectors.shape != (n, search_dim) or self.upsert_search_scales.shape != (n,):
                raise DeltaError(f"{where}: search vectors {self.upsert_search_vectors.shape} and scales "
                                 f"{self.upsert_search_scales.shape} for {n} upserts of search dim {search_dim}")
            if not np.all(np.isfinite(self.upsert_search_scales)) or np.any(self.upsert_search_scales <= 0):
                raise DeltaError(f"{where}: search vector scales must be finite and positive")
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
    base_manifest_sha256: str  # sha256 of the base version's manifest.json bytes (as its snapshot ships it)
    changes: ItemChanges
    manifest: bytes            # the signed manifest.json of version ``to_version``
    model: Optional[bytes] = None
    # the same base as a device that reached it by a delta holds it (that manifest lists the indexes as
    # built on the device); either form is the same version, file for file
    other_base_manifest_sha256: List[str] = field(default_factory=list)

    def applies_to(self, manifest_sha256: str) -> bool:
        return manifest_sha256 in [self.base_manifest_sha256, *self.other_base_manifest_sha256]


def write_delta(path: Path, delta: Delta) -> None:
    c = delta.changes
    meta = {"format": DELTA_FORMAT, "from_version": delta.from_version, "to_version": delta.to_version,
            "base_manifest_sha256": delta.base_manifest_sha256,
            "other_base_manifest_sha256": delta.other_base_manifest_sha256, "upsert_ids": c.upsert_ids,
            "upsert_metadata": c.upsert_metadata, "delete_ids": c.delete_ids, "dim": int(c.upsert_vectors.shape[1])}
    sections = {"manifest": delta.manifest, "upsert_vectors": np.ascontiguousarray(c.upsert_vectors, np.int8).tobytes(),
                "upsert_scales": np.ascontiguousarray(c.upsert_scales, "<f4").tobytes()}
    if c.upsert_search_vectors is not None and c.upsert_search_scales is not None:
        meta["search_dim"] = int(c.upsert_search_vectors.shape[1])
        sections["upsert_search_vectors"] = np.ascontiguousarray(c.upsert_search_vectors, np.int8).tobytes()
        sections["upsert_search_scales"] = np.ascontiguousarray(c.upsert_search_scales, "<f4").tobytes()
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
    base, others = m.get("base_manifest_sha256"), m.get("other_base_manifest_sha256", [])
    if not isinstance(base, str) or len(base) != 64:
        raise DeltaError(f"{Path(path).name}: base_manifest_sha256 missing or malformed")
    if not isinstance(others, list) or not all(isinstance(o, str) and len(o) == 64 for o in others):
        raise DeltaError(f"{Path(path).name}: other_base_manifest_sha256 must be a list of sha256 hex digests")
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
    search_dim = m.get("search_dim")
    if search_dim is not None:
        if type(search_dim) is not int or search_dim <= 0:
            raise DeltaError(f"{Path(path).name}: search_dim must be a positive integer")
        sv, ss = _section(pack, "upsert_search_vectors"), _section(pack, "upsert_search_scales")
        if len(sv) != n * search_dim or len(ss) != 4 * n:
            raise DeltaError(f"{Path(path).name}: {n} upserts of search dim {search_dim} need {n * search_dim} and "
                             f"{4 * n} bytes, got {len(sv)} and {len(ss)}")
        changes.upsert_search_vectors = np.frombuffer(sv, np.int8).reshape(n, search_dim)
        changes.upsert_search_scales = np.frombuffer(ss, "<f4").astype(np.float32)
    changes.check(dim, Path(path).name, search_dim)
    model = _section(pack, "model") if "model" in pack.sections else None
    return Delta(ints["from_version"], ints["to_version"], base, changes, _section(pack, "manifest"), model, others)


def _section(pack: Pack, name: str) -> bytes:
    try:
        return pack.read(name)
    except PackError as e:
        raise DeltaError(str(e)) from None


@dataclass
class BuiltVersion:
    """What :func:`build_version` wrote: the files (besides the indexes) with their hashes, and the table size."""

    files: Dict[str, FileEntry]
    count: int


def _table(base: Bundle, vectors_file: str, scales_file: str) -> "tuple[np.ndarray, np.ndarray]":
    return base.load_array(vectors_file).copy(), base.load_array(scales_file).astype(np.float32).copy()


def _apply_rows(vectors: np.ndarray, scales: np.ndarray, deleted: List[int], new_rows: Dict[int, int], n_total: int,
                upsert_vectors: np.ndarray, upsert_scales: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """An int8 table after the changes: deleted rows zeroed (scale 1), rows appended, upserted rows written."""
    grow = n_total - len(vectors)
    vectors = np.concatenate([vectors, np.zeros((grow, vectors.shape[1]), np.int8)])
    scales = np.concatenate([scales, np.ones(grow, np.float32)])
    for r in deleted:
        vectors[r], scales[r] = 0, 1.0
    for i, r in new_rows.items():
        vectors[r], scales[r] = upsert_vectors[i], upsert_scales[i]
    return vectors, scales


def build_version(base: Bundle, changes: ItemChanges, out: Path, target: Manifest, model: Optional[bytes] = None
                  ) -> BuiltVersion:
    """Write base + changes into the empty directory ``out`` under ``target``'s file names: item table,
    search table, model and tokenizer, grown indexes.

    Rows keep their numbers (deleted ones become tombstones), upserts of known ids replace their row,
    new ids are appended; popularity drops deleted rows and appends new ones (least popular). Each
    index is the base index with the same operations, in a fixed order, on one thread.
    """
    m = base.manifest
    changes.check(m.items.dim, search_dim=m.search.dim if m.search else None)
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
    appended, new_rows = [], {}
    for i, item_id in enumerate(changes.upsert_ids):
        r = row_of.get(item_id)
        if r is None:
            r = len(ids) + len(appended)
            appended.append(i)
        new_rows[i] = r
    n_total = len(ids) + len(appended)
    changed = sorted(set(new_rows.values()))
    by_row = [i for i, _ in sorted(new_rows.items(), key=lambda ir: ir[1])]  # the upserts in the order of `changed`
    rows, row_scales = changes.upsert_vectors, changes.upsert_scales
    graph_part = dequantize_rows(rows, row_scales)
    if m.index.residual:  # the table holds the rest of each vector, the graph its coordinates (edge_rec.vectors)
        basis = load_projection(base.verify_file(m.index.projection), m.index, m.items.dim)
        graph_part, rows, row_scales = split_rows(graph_part, basis, m.index.dim)
    graph_part = graph_part[by_row]
    vectors, scales = _apply_rows(*_table(base, m.items.vectors, m.items.scales), deleted, new_rows, n_total,
                                  rows, row_scales)
    ids += [changes.upsert_ids[i] for i in appended]
    lines += [b""] * len(appended)
    for i, r in new_rows.items():
        lines[r] = metadata_line(changes.upsert_metadata[i])
    gone = set(deleted)
    popularity = np.asarray([r for r in popularity.tolist() if r not in gone]
                            + [new_rows[i] for i in appended], dtype=np.int32)
    t = target.items
    names = {"vectors": t.vectors, "scales": t.scales, "ids": t.ids, "metadata": t.metadata, "popularity": t.popularity}
    files: Dict[str, FileEntry] = {}
    for key, data in item_file_bytes(vectors, scales, ids, lines, popularity).items():
        files[names[key]] = _write(out / names[key], data)
    failpoints.reached("stage-model")
    if model is not None:
        files[target.model.file] = _write(out / target.model.file, model)
    else:
        files[target.model.file] = _copy(base, m.model.file, out / target.model.file)
    grown = [(m.index, target.index, graph_part)]
    if m.search is not None and target.search is not None:
        s, ts = m.search, target.search
        sv, ss = _apply_rows(*_table(base, s.vectors, s.scales), deleted, new_rows, n_total,
                             changes.upsert_search_vectors, changes.upsert_search_scales)
        for key, data in vector_file_bytes(sv, ss).items():
            name = ts.vectors if key == "vectors" else ts.scales
            files[name] = _write(out / name, data)
        for src, dst in ((s.tokenizer, ts.tokenizer), (s.encoder.file, ts.encoder.file)):
            files[dst] = _copy(base, src, out / dst)
        grown.append((s.index, ts.index, dequantize_rows(sv[changed], ss[changed])))
    failpoints.reached("stage-index")
    for spec, target_spec, added in grown:  # ``added``: the changed rows' vectors, in the order of ``changed``
        if spec.projection and target_spec.projection:  # the compact store: the graph holds projected vectors
            files[target_spec.projection] = _copy(base, spec.projection, out / target_spec.projection)
            if not spec.residual:
                added = added @ load_projection(out / target_spec.projection, target_spec, added.shape[1])
        _grow_index(base, spec, out / target_spec.file, n_total, sorted(deleted), changed, added,
                    target_spec.ef_construction)
    return BuiltVersion(files, n_total)


def _write(path: Path, data: bytes) -> FileEntry:
    with open(path, "wb") as f:
        f.write(data)
    return FileEntry(hashlib.sha256(data).hexdigest(), len(data))


def _copy(base: Bundle, name: str, dst: Path) -> FileEntry:
    shutil.copyfile(base.verify_file(name), dst)
    return FileEntry(*sha256_file(dst))


def _grow_index(base: Bundle, spec: IndexSpec, out: Path, count: int, deleted: List[int], changed: List[int],
                vectors: np.ndarray, ef_construction: int) -> None:
    """``base``'s index with ``deleted`` rows marked and the ``changed`` rows' ``vectors`` (in that order) added
    at construction width ``ef_construction`` (the target manifest's: the publisher's choice)."""
    src = base.verify_file(spec.file)
    index = restore_index(src, spec, check_index_file(src, spec), count, ef_construction)
    index.set_num_threads(1)  # the same graph on the publisher and on every device
    for r in deleted:
        index.mark_deleted(r)
    if changed:
        index.add_items(np.asarray(vectors, np.float32), np.asarray(changed, dtype=np.int64))
    index.save_index(str(out))


def apply_delta(base: Bundle, delta: Delta, out: Path, target: Manifest) -> None:
    """Device side: build version ``to_version`` into the empty directory ``out`` and check every file
    against the signed ``target`` manifest (already signature-verified by the caller)."""
    m = base.manifest
    base_sha, _ = sha256_file(base.path / MANIFEST_NAME)
    if delta.from_version != m.bundle_version or not delta.applies_to(base_sha):
        raise DeltaError(f"this delta applies to version {delta.from_version} (manifest {delta.base_manifest_sha256[:12]}), "
                         f"the device has version {m.bundle_version} (manifest {base_sha[:12]})")
    if target.bundle_version != delta.to_version or not target.index.built_on_device:
        raise DeltaError(f"the delta's manifest is version {target.bundle_version}, the delta says {delta.to_version}")
    if target.items.dim != m.items.dim or (target.search is None) != (m.search is None):
        raise IncompatibleBundleError(f"version {target.bundle_version} (item dim {target.items.dim}, "
                                      f"{'with' if target.search else 'without'} search) cannot grow from version "
                                      f"{m.bundle_version} (item dim {m.items.dim}, {'with' if m.search else 'without'} search)")
    for t, b in zip(target.indexes, m.indexes):
        if (t.space, t.dim, t.M, t.file, t.projection, t.rerank) != (b.space, b.dim, b.M, b.file, b.projection, b.rerank):
            raise IncompatibleBundleError(f"version {target.bundle_version}'s index {t.file} ({t.space}, dim {t.dim}, M {t.M}) "
                                          f"cannot grow from version {m.bundle_version}'s ({b.space}, dim {b.dim}, M {b.M})")
    built = build_version(base, delta.changes, out, target, delta.model)
    if built.count != target.items.count:
        raise DeltaError(f"the delta makes {built.count} rows, version {target.bundle_version} has {target.items.count}")
    for name, entry in built.files.items():
        if target.files.get(name) != entry:
            raise IntegrityError(f"{name} rebuilt from the delta does not match version {target.bundle_version}'s "
                                 "signed manifest; the delta or the base is damaged")
    failpoints.reached("write-manifest")
    (out / MANIFEST_NAME).write_bytes(delta.manifest)
    write_local_record(out, target)
