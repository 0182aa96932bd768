"""Publish a channel: static files devices pull (``channel.json``, deltas, a snapshot), all signed, into a
local directory or S3-compatible object storage (:mod:`converter.channel_store`).

``publish_bundle`` starts a channel or ships a new full version (e.g. a new model); ``publish_changes``
turns a catalog change set into a delta N -> N+1 plus a snapshot of N+1. Version N+1 is computed with
the runtime's own :func:`edge_rec.delta.build_version`, the function a device runs to apply the delta,
and its golden cases come from the runtime running on that result. Packs are content-addressed
(``snapshots/v<N>-<sha>.pack``) and uploaded before ``channel.json``, which is swapped in only if no
other publisher changed it meanwhile; ``prune_channel`` removes packs nothing names any more.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_rec import golden
from edge_rec.bundle import Bundle, sha256_file, write_local_record
from edge_rec.channel import CHANNEL_NAME, Artifact, ChannelManifest
from edge_rec.delta import Delta, ItemChanges, build_version, read_delta, write_delta
from edge_rec.errors import EdgeRecError
from edge_rec.manifest import MANIFEST_NAME, FileEntry, Manifest
from edge_rec.quant import quantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key, sign
from edge_rec.snapshot import snapshot_manifest, unpack_snapshot, write_snapshot

from .channel_store import ChannelRead, ChannelStore, LocalStore, PruneResult, S3Store, open_store, prune
from .errors import ConverterError
from .trust import check_signing_keys

MAX_DELTAS = 30  # deltas kept in the channel; devices further behind take the snapshot
# The construction width a delta's items are added to the graph at (at most the graph's own): the publisher
# and every device insert them, so it bounds a device's apply time (measured: benchmarks/million.py).
DELTA_EF_CONSTRUCTION = 200
PathLike = Union[str, Path]
Channel = Union[str, Path, LocalStore, S3Store]  # a directory, s3://bucket/prefix, or an opened store


class PublishError(ConverterError):
    """The channel or the input cannot be published as asked."""


def _keys(private_keys: Union[PathLike, Sequence[PathLike]]):
    paths = [private_keys] if isinstance(private_keys, (str, Path)) else list(private_keys)
    return [load_private_key(p) for p in paths]


def _signed(manifest: Manifest, keys) -> bytes:
    manifest.signatures = [sign(manifest.canonical_bytes(), k) for k in keys]
    return manifest.to_json()


def _read(store: ChannelStore) -> "tuple[Optional[ChannelManifest], ChannelRead]":
    read = store.read_channel()
    try:
        return (ChannelManifest.from_bytes(read.data) if read.data is not None else None), read
    except EdgeRecError as e:
        raise PublishError(f"{store.location}/{CHANNEL_NAME} is unreadable: {e}") from None


def read_channel(channel: Channel, endpoint_url: Optional[str] = None) -> Optional[ChannelManifest]:
    """The channel's current channel.json, or None for a channel not started yet."""
    return _read(open_store(channel, endpoint_url))[0]


def _pack_snapshot(work: Path, bundle_dir: Path, manifest_bytes: bytes, version: int) -> "tuple[Artifact, Path]":
    """Pack a complete bundle directory (with the given signed manifest) as ``snapshots/v<N>-<sha>.pack``."""
    tmp = work / "snapshot.pack"
    digest, size = write_snapshot(tmp, bundle_dir, manifest_bytes)
    return Artifact(f"snapshots/v{version}-{digest[:16]}.pack", digest, size, version), tmp


def _commit(store: ChannelStore, read: ChannelRead, name: str, version: int, snapshot: Artifact,
            deltas: List[Artifact], keys, expires_days: float) -> ChannelManifest:
    """Sign the new channel.json and swap it in, unless another publisher changed it since ``read``."""
    now = int(time.time())
    m = ChannelManifest(channel=name, version=version, issued=now, expires=now + int(expires_days * 86400),
                        snapshot=snapshot, deltas=deltas[-MAX_DELTAS:])
    m.signatures = [sign(m.canonical_bytes(), k) for k in keys]
    store.commit_channel(m.to_json(), read)
    return m


def publish_bundle(channel: Channel, bundle_dir: PathLike, private_keys, name: Optional[str] = None,
                   expires_days: float = 7.0, endpoint_url: Optional[str] = None) -> ChannelManifest:
    """Ship ``bundle_dir`` as the channel's next version (a snapshot; the delta chain restarts)."""
    store, bundle_dir = open_store(channel, endpoint_url), Path(bundle_dir)
    keys = _keys(private_keys)
    check_signing_keys(store, keys)
    current, read = _read(store)
    bundle = Bundle.open_installed(bundle_dir)  # every file checked; the manifest is re-signed below with ``keys``
    manifest = copy.deepcopy(bundle.manifest)
    manifest.bundle_version = (current.version + 1) if current else max(1, manifest.bundle_version)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot, packed = _pack_snapshot(Path(tmp), bundle_dir, _signed(manifest, keys), manifest.bundle_version)
        store.upload(snapshot.file, packed)
    return _commit(store, read, name or (current.channel if current else bundle_dir.name), manifest.bundle_version,
                   snapshot, [], keys, expires_days)


def publish_changes(channel: Channel, changes: ItemChanges, private_keys, expires_days: float = 7.0,
                    endpoint_url: Optional[str] = None, insert_width: Optional[int] = None) -> ChannelManifest:
    """Publish ``changes`` as version N+1: the delta N -> N+1, a snapshot of N+1, and a new channel.json.
    Devices add the delta's items to their indexes at construction width ``insert_width`` (at most the
    graph's own; default ``DELTA_EF_CONSTRUCTION``), as the publisher does: the signed manifest of N+1 records it."""
    insert_width = DELTA_EF_CONSTRUCTION if insert_width is None else insert_width
    if insert_width < 1:
        raise PublishError(f"the insertion width must be at least 1, not {insert_width}")
    store = open_store(channel, endpoint_url)
    keys = _keys(private_keys)
    check_signing_keys(store, keys)
    current, read = _read(store)
    if current is None:
        raise PublishError(f"{store.location} has no {CHANNEL_NAME}: start it with a bundle (edge-rec publish --bundle)")
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, stage = Path(tmp) / "base", Path(tmp) / "next"
        base_dir.mkdir()
        stage.mkdir()
        store.download(current.snapshot.file, Path(tmp) / "current.pack")
        if sha256_file(Path(tmp) / "current.pack")[0] != current.snapshot.sha256:
            raise PublishError(f"{store.location}/{current.snapshot.file} does not match its channel.json hash")
        unpack_snapshot(Path(tmp) / "current.pack", base_dir)
        base = Bundle.open_installed(base_dir)  # named by hash in the channel.json it came with
        m = base.manifest
        target = copy.deepcopy(m)
        target.bundle_version = m.bundle_version + 1
        target.created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for index in target.indexes:
            index.built_on_device = True
            index.ef_construction = min(index.ef_construction, insert_width)
        built = build_version(base, changes, stage, target)
        for index in [target.items] + target.indexes:
            index.count = built.count
        target.files = dict(built.files)
        target.info = dict(m.info, parent_version=m.bundle_version, changes={
            "upserted": len(changes.upsert_ids), "deleted": len(changes.delete_ids)})
        write_local_record(stage, target)
        with EdgeRecommender(Bundle(stage, target, signers=[])) as rec:
            queries = [g.query for g in m.search.golden] if m.search else []
            target.golden, searches = golden.compute(rec, [rec.items.rows(g.history, strict=False) for g in m.golden], queries)
        if target.search is not None:
            target.search.golden = searches
        delta_file = Path(tmp) / "delta.pack"
        write_delta(delta_file, Delta(m.bundle_version, target.bundle_version, sha256_file(base_dir / MANIFEST_NAME)[0],
                                      changes, _signed(target, keys),
                                      other_base_manifest_sha256=_delta_form(store, current, Path(tmp))))
        digest, size = sha256_file(delta_file)
        delta = Artifact(f"deltas/v{m.bundle_version}-v{target.bundle_version}-{digest[:16]}.pack", digest, size,
                         target.bundle_version, m.bundle_version)
        full = copy.deepcopy(target)  # the snapshot ships the indexes themselves, so they are listed and hashed
        for index in full.indexes:
            index.built_on_device = False
            full.files[index.file] = FileEntry(*sha256_file(stage / index.file))
        snapshot, packed = _pack_snapshot(Path(tmp), stage, _signed(full, keys), full.bundle_version)
        store.upload(delta.file, delta_file)  # packs first, channel.json last
        store.upload(snapshot.file, packed)
    return _commit(store, read, current.channel, target.bundle_version, snapshot, current.deltas + [delta], keys,
                   expires_days)


def _delta_form(store: ChannelStore, current: ChannelManifest, tmp: Path) -> List[str]:
    """sha256 of the manifest a device holds when it reached the current version by the last delta."""
    last = current.deltas[-1] if current.deltas else None
    if last is None or last.to_version != current.version:
        return []
    store.download(last.file, tmp / "last-delta.pack")
    if sha256_file(tmp / "last-delta.pack")[0] != last.sha256:
        raise PublishError(f"{store.location}/{last.file} does not match its channel.json hash")
    return [hashlib.sha256(read_delta(tmp / "last-delta.pack").manifest).hexdigest()]


def prune_channel(channel: Channel, keep_days: float, endpoint_url: Optional[str] = None,
                  now: Optional[float] = None) -> PruneResult:
    """Remove snapshots and deltas older than ``keep_days`` that the current channel.json does not name."""
    store = open_store(channel, endpoint_url)
    current, _ = _read(store)
    if current is None:
        raise PublishError(f"{store.location} has no {CHANNEL_NAME}: nothing to prune")
    return prune(store, keep_days, [current.snapshot.file] + [d.file for d in current.deltas], now)


def changes_from_vectors(upserts: Dict[str, np.ndarray], metadata: Dict[str, Dict[str, Any]],
                         deletes: Sequence[str] = (), search_vectors: Optional[Dict[str, np.ndarray]] = None) -> ItemChanges:
    """ItemChanges from float item vectors (in the bundle's item space), metadata and, for bundles with
    search, float search vectors, by item id."""
    ids = list(upserts)

    def quantized(by_id: Dict[str, np.ndarray]) -> "tuple[np.ndarray, np.ndarray]":
        if not ids:
            return np.zeros((0, 0), np.int8), np.zeros(0, np.float32)
        return quantize_rows(np.stack([by_id[i] for i in ids]))
    q, scales = quantized(upserts)
    changes = ItemChanges(ids, [metadata.get(i, {}) for i in ids], q, scales, list(deletes))
    if search_vectors is not None:
        missing = [i for i in ids if i not in search_vectors]
        if missing:
            raise PublishError(f"no search vector for upserted item(s) {missing[:5]}")
        changes.upsert_search_vectors, changes.upsert_search_scales = quantized(search_vectors)
    return changes


def read_change_set(path: PathLike) -> "tuple[list, list]":
    """A change set file: ``{"upsert": [{"id": ..., "title": ..., "year": ..., "genres": [...]}, ...],
    "delete": [ids]}``. Returns (upserted items as dicts, deleted ids)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PublishError(f"cannot read the change set {path}: {e}") from None
    if not isinstance(raw, dict):
        raise PublishError(f"{path}: expected a JSON object with lists 'upsert' and 'delete', got {type(raw).__name__}")
    upsert, delete = raw.get("upsert", []), raw.get("delete", [])
    if not isinstance(upsert, list) or not isinstance(delete, list):
        raise PublishError(f"{path}: expected an object with lists 'upsert' and 'delete'")
    for i, item in enumerate(upsert):
        if not isinstance(item, dict) or not isinstance(item.get("id"), (str, int)) or str(item["id"]) == "":
            raise PublishError(f"{path}: upsert[{i}] needs an 'id'")
    return upsert, [str(d) for d in delete]


def changes_from_catalog(change_set: "tuple[list, list]", teacher, encoder, manifest: Manifest,
                         search_model=None) -> ItemChanges:
    """Embed a change set's items (as :func:`read_change_set` returns them) with the teacher (ID embedding
    + text for known items, text alone for new ones: cold start) and, when the channel's bundle has
    search, into the search space with the search model; quantize them like the bundle's tables."""
    from .data import Item
    upsert, delete = change_set
    dim = manifest.items.dim
    items = [Item(str(u["id"]), str(u.get("title", "")), u.get("year"), tuple(u.get("genres", ())),
                  {k: str(v) for k, v in u.items() if k not in ("id", "title", "year", "genres")}) for u in upsert]
    text, vectors = np.zeros((0, 384), np.float32), np.zeros((0, dim), np.float32)
    if items:
        try:  # one step (one Ray job with a RayTextEncoder) when the teacher's text path is plain numpy
            text, vectors = encoder.place([it.id for it in items], [it.text() for it in items], teacher.text_head())
        except NotImplementedError:  # a teacher with its own item_vectors_from_text
            text = encoder.encode([it.text() for it in items])
            vectors = teacher.item_vectors_from_text([it.id for it in items], text)
    if items and vectors.shape[1] != dim:
        raise PublishError(f"the teacher's item space has dimension {vectors.shape[1]}, the channel's bundle {dim}")
    search = None
    if manifest.search is not None:
        if search_model is None:
            raise PublishError("the channel's bundle has search: give the search model (--search-model, written by "
                               "edge-rec convert beside the teacher) so new items are searchable")
        if search_model.dim != manifest.search.dim:
            raise PublishError(f"the search model has dimension {search_model.dim}, the channel's search index "
                               f"{manifest.search.dim}: use the search model of the bundle's conversion")
        search = dict(zip([it.id for it in items], search_model.item_vectors(items, text))) if items else {}
    meta = {it.id: {"title": it.title, "year": it.year, "genres": list(it.genres), **dict(it.extra)} for it in items}
    return changes_from_vectors({it.id: v for it, v in zip(items, vectors)}, meta, delete, search)


def channel_manifest(channel: Channel, endpoint_url: Optional[str] = None) -> Manifest:
    """The bundle manifest of the channel's latest version (from its snapshot)."""
    store = open_store(channel, endpoint_url)
    current, _ = _read(store)
    if current is None:
        raise PublishError(f"{store.location} has no {CHANNEL_NAME}")
    with tempfile.TemporaryDirectory() as tmp:
        store.download(current.snapshot.file, Path(tmp) / "current.pack")
        try:
            return snapshot_manifest(Path(tmp) / "current.pack")
        except EdgeRecError as e:
            raise PublishError(f"the channel's snapshot is unreadable: {e}") from None
