"""Write a signed, self-verifying bundle directory (format defined in :mod:`edge_rec.manifest`).

Everything is written into a staging directory beside the target; golden cases are computed by the
runtime's own code on the staged files; the manifest is signed last; then the directory is renamed
into place, so a reader never sees a half-written bundle.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_rec.atomic import atomic_write_bytes, replace_dir, staging_dir
from edge_rec.bundle import Bundle, read_manifest, sha256_file
from edge_rec.errors import BundleError
from edge_rec.items import item_file_bytes
from edge_rec.manifest import MANIFEST_NAME, FileEntry, GoldenCase, IndexSpec, ItemsSpec, Manifest
from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key, sign

from .index import IndexChoice, build_hnsw
from .quantize import Int8Model

FILES = {"model": "student.tflite", "index": "items.hnsw", "vectors": "item_vectors.npy", "scales": "item_scales.npy",
         "ids": "item_ids.json", "metadata": "item_meta.jsonl", "popularity": "popularity.npy"}


def next_version(out: Path) -> int:
    """One more than the bundle already at ``out`` (1 for a new one)."""
    try:
        return read_manifest(out).bundle_version + 1
    except BundleError:
        return 1


def write_bundle(out: Union[str, Path], model: Int8Model, item_ids: Sequence[str], item_vectors: np.ndarray,
                 metadata: Sequence[Dict[str, Any]], popularity: np.ndarray, index: IndexChoice,
                 golden_histories: Sequence[np.ndarray], private_key: Union[str, Path],
                 bundle_version: Optional[int] = None, info: Optional[Dict[str, Any]] = None) -> Manifest:
    """Quantize the item vectors, build the index, write all files, compute golden cases, sign, publish."""
    out = Path(out)
    key = load_private_key(private_key)
    version = bundle_version if bundle_version is not None else next_version(out)
    q, scales = quantize_rows(item_vectors)
    stage = staging_dir(out)
    try:
        hnsw = build_hnsw(dequantize_rows(q, scales), index.space, index.M, index.ef_construction)
        hnsw.save_index(str(stage / FILES["index"]))
        contents = {FILES[k]: data for k, data in item_file_bytes(q, scales, item_ids, metadata, popularity).items()}
        contents[FILES["model"]] = model.tflite
        for name, data in contents.items():
            atomic_write_bytes(stage / name, data)
        files = {name: FileEntry(*sha256_file(stage / name)) for name in sorted(FILES.values())}
        manifest = Manifest(
            bundle_version=version, created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            model=model.spec,
            index=IndexSpec(FILES["index"], index.space, q.shape[1], len(q), index.M, index.ef_construction, index.ef_search),
            items=ItemsSpec(FILES["vectors"], FILES["scales"], FILES["ids"], FILES["metadata"], FILES["popularity"],
                            len(q), q.shape[1]),
            files=files, golden=[], info=dict(info or {}))
        manifest.check_consistency()
        manifest.golden = golden_cases(EdgeRecommender(Bundle(stage, manifest, signers=[])), golden_histories)
        manifest.signatures = [sign(manifest.canonical_bytes(), key)]
        atomic_write_bytes(stage / MANIFEST_NAME, manifest.to_json())
        replace_dir(stage, out)
    except BaseException:
        import shutil
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def golden_cases(rec: EdgeRecommender, histories: Sequence[np.ndarray], k: int = 10) -> List[GoldenCase]:
    """Histories (as item ids) with the query vector and top-k the runtime computes for them."""
    cases = []
    for rows in histories:
        rows = np.asarray(rows, dtype=np.int64)
        top, _ = rec.recommend_rows(rows, k)
        query = rec.query_vector(rows) if len(rows) else np.zeros(rec.items.dim, np.float32)
        cases.append(GoldenCase(history=[rec.items.ids[r] for r in rows], query=[float(x) for x in query],
                                top=[rec.items.ids[r] for r in top]))
    return cases
