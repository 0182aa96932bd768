"""Publish a channel: static files devices pull (``channel.json``, deltas, a snapshot), all signed.

``publish_bundle`` starts a channel or ships a new full version (e.g. a new model); ``publish_changes``
turns a catalog change set into a delta N -> N+1 plus a snapshot of N+1. Version N+1 is computed with
the runtime's own :func:`edge_rec.delta.build_version`, the function a device runs to apply the delta,
and its golden cases come from the runtime running on that result.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_rec import golden
from edge_rec.atomic import atomic_write_bytes
from edge_rec.bundle import Bundle, sha256_file, write_local_record
from edge_rec.channel import CHANNEL_NAME, Artifact, ChannelManifest
from edge_rec.delta import Delta, ItemChanges, build_version, write_delta
from edge_rec.errors import EdgeRecError
from edge_rec.manifest import MANIFEST_NAME, FileEntry, Manifest
from edge_rec.quant import quantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key, sign
from edge_rec.snapshot import snapshot_manifest, unpack_snapshot, write_snapshot

from .errors import ConverterError

MAX_DELTAS = 30  # deltas kept in the channel; devices further behind take the snapshot
PathLike = Union[str, Path]


class PublishError(ConverterError):
    """The channel or the input cannot be published as asked."""


def _keys(private_keys: Union[PathLike, Sequence[PathLike]]):
    paths = [private_keys] if isinstance(private_keys, (str, Path)) else list(private_keys)
    return [load_private_key(p) for p in paths]


def _signed(manifest: Manifest, keys) -> bytes:
    manifest.signatures = [sign(manifest.canonical_bytes(), k) for k in keys]
    return manifest.to_json()


def read_channel(channel: PathLike) -> Optional[ChannelManifest]:
    file = Path(channel) / CHANNEL_NAME
    return ChannelManifest.from_bytes(file.read_bytes()) if file.is_file() else None


def _write_snapshot(channel: Path, bundle_dir: Path, manifest_bytes: bytes, version: int) -> Artifact:
    """Pack a complete bundle directory (with the given signed manifest) as ``snapshots/v<N>.pack``."""
    rel = f"snapshots/v{version}.pack"
    digest, size = write_snapshot(channel / rel, bundle_dir, manifest_bytes)
    return Artifact(rel, digest, size, version)


def _write_channel(channel: Path, name: str, version: int, snapshot: Artifact, deltas: List[Artifact], keys,
                   expires_days: float) -> ChannelManifest:
    now = int(time.time())
    m = ChannelManifest(channel=name, version=version, issued=now, expires=now + int(expires_days * 86400),
                        snapshot=snapshot, deltas=deltas[-MAX_DELTAS:])
    m.signatures = [sign(m.canonical_bytes(), k) for k in keys]
    atomic_write_bytes(channel / CHANNEL_NAME, m.to_json())
    keep = {snapshot.file} | {d.file for d in m.deltas}
    for sub in ("snapshots", "deltas"):
        for f in (channel / sub).glob("*.pack") if (channel / sub).is_dir() else []:
            if f"{sub}/{f.name}" not in keep:
                f.unlink()
    return m


def publish_bundle(channel: PathLike, bundle_dir: PathLike, private_keys, name: Optional[str] = None,
                   expires_days: float = 7.0) -> ChannelManifest:
    """Ship ``bundle_dir`` as the channel's next version (a snapshot; the delta chain restarts)."""
    channel, bundle_dir = Path(channel), Path(bundle_dir)
    keys = _keys(private_keys)
    current = read_channel(channel)
    bundle = Bundle.open(bundle_dir, [k.public_key() for k in keys])
    manifest = copy.deepcopy(bundle.manifest)
    manifest.bundle_version = (current.version + 1) if current else max(1, manifest.bundle_version)
    snapshot = _write_snapshot(channel, bundle_dir, _signed(manifest, keys), manifest.bundle_version)
    return _write_channel(channel, name or (current.channel if current else bundle_dir.name), manifest.bundle_version,
                          snapshot, [], keys, expires_days)


def publish_changes(channel: PathLike, changes: ItemChanges, private_keys, expires_days: float = 7.0) -> ChannelManifest:
    """Publish ``changes`` as version N+1: the delta N -> N+1, a snapshot of N+1, and a new channel.json."""
    channel = Path(channel)
    keys = _keys(private_keys)
    current = read_channel(channel)
    if current is None:
        raise PublishError(f"{channel} has no {CHANNEL_NAME}: start it with a bundle (edge-rec publish --bundle)")
    with tempfile.TemporaryDirectory(dir=channel) as tmp:
        base_dir, stage = Path(tmp) / "base", Path(tmp) / "next"
        base_dir.mkdir()
        stage.mkdir()
        unpack_snapshot(channel / current.snapshot.file, base_dir)
        base = Bundle.open(base_dir, [k.public_key() for k in keys])
        m = base.manifest
        target = copy.deepcopy(m)
        target.bundle_version = m.bundle_version + 1
        target.created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for index in target.indexes:
            index.built_on_device = True
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
        delta_manifest = _signed(target, keys)
        rel = f"deltas/v{m.bundle_version}-v{target.bundle_version}.pack"
        tmp_delta = Path(tmp) / "delta.pack"
        write_delta(tmp_delta, Delta(m.bundle_version, target.bundle_version, sha256_file(base_dir / MANIFEST_NAME)[0],
                                     changes, delta_manifest))
        (channel / "deltas").mkdir(exist_ok=True)
        os.replace(tmp_delta, channel / rel)
        digest, size = sha256_file(channel / rel)
        delta_artifact = Artifact(rel, digest, size, target.bundle_version, m.bundle_version)
        full = copy.deepcopy(target)  # the snapshot ships the indexes themselves, so they are listed and hashed
        for index in full.indexes:
            index.built_on_device = False
            full.files[index.file] = FileEntry(*sha256_file(stage / index.file))
        snapshot = _write_snapshot(channel, stage, _signed(full, keys), full.bundle_version)
    return _write_channel(channel, current.channel, target.bundle_version, snapshot,
                          current.deltas + [delta_artifact], keys, expires_days)


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
    text = encoder.encode([it.text() for it in items]) if items else np.zeros((0, 384), np.float32)
    vectors = teacher.item_vectors_from_text([it.id for it in items], text) if items else np.zeros((0, dim), np.float32)
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


def channel_manifest(channel: PathLike) -> Manifest:
    """The bundle manifest of the channel's latest version (from its snapshot)."""
    current = read_channel(channel)
    if current is None:
        raise PublishError(f"{channel} has no {CHANNEL_NAME}")
    try:
        return snapshot_manifest(Path(channel) / current.snapshot.file)
    except EdgeRecError as e:
        raise PublishError(f"the channel's snapshot is unreadable: {e}") from None
