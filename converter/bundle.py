"""Write a signed, self-verifying bundle directory (format defined in :mod:`edge_rec.manifest`).

Everything is written into a staging directory beside the target; golden cases are computed by the
runtime's own code on the staged files; the manifest is signed last; then the directory is renamed
into place, so a reader never sees a half-written bundle.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np

from edge_rec import golden
from edge_rec.atomic import atomic_write_bytes, replace_dir, staging_dir
from edge_rec.bundle import Bundle, read_manifest, sha256_file
from edge_rec.errors import BundleError
from edge_rec.items import item_file_bytes, vector_file_bytes
from edge_rec.manifest import MANIFEST_NAME, FileEntry, IndexSpec, ItemsSpec, Manifest, SearchSpec, TextFeatures
from edge_rec.quant import dequantize_rows, quantize_rows
from edge_rec.recommender import EdgeRecommender
from edge_rec.signing import load_private_key, sign
from edge_rec.vectors import complete_basis, split_rows

from .errors import ConverterError
from .index import IndexChoice, build_hnsw
from .quantize import Int8Model

FILES = {"model": "student.tflite", "index": "items.hnsw", "vectors": "item_vectors.npy", "scales": "item_scales.npy",
         "ids": "item_ids.json", "metadata": "item_meta.jsonl", "popularity": "popularity.npy"}
PROJECTION_FILE = "index_projection.npy"  # the compact store's projection (bundles whose index is compact)
SEARCH_FILES = {"tokenizer": "search_tokenizer.model", "index": "search.hnsw", "vectors": "search_vectors.npy",
                "scales": "search_scales.npy"}


@dataclass
class SearchPart:
    """What a bundle with search holds besides the recommender: tokenizer, int8 encoder, item search
    vectors (unit, float; quantized here) and their index, the default blend and the golden queries."""

    tokenizer: bytes
    encoder_tflite: bytes
    encoder_spec: Any           # edge_rec.manifest.EncoderSpec
    features: TextFeatures
    item_vectors: np.ndarray
    index: IndexChoice
    blend: float
    golden_queries: Sequence[str]   # candidates, in order of preference ...
    golden_searches: int = 8         # ... of which at most this many well-separated ones become golden cases


def next_version(out: Path) -> int:
    """One more than the bundle already at ``out`` (1 for a new one)."""
    try:
        return read_manifest(out).bundle_version + 1
    except BundleError:
        return 1


def write_bundle(out: Union[str, Path], model: Int8Model, item_ids: Sequence[str], item_vectors: np.ndarray,
                 metadata: Sequence[Dict[str, Any]], popularity: np.ndarray, index: IndexChoice,
                 golden_histories: Sequence[np.ndarray], private_key: Union[str, Path],
                 bundle_version: Optional[int] = None, info: Optional[Dict[str, Any]] = None,
                 search: Optional[SearchPart] = None, seen_items: str = "exclude",
                 before_signing: Optional[Callable[[EdgeRecommender, Manifest], None]] = None) -> Manifest:
    """Quantize the item vectors, build the index(es), write all files, compute golden cases, sign, publish.
    ``seen_items`` is the repeat-consumption protocol the bundle was evaluated with (the device's default).
    ``before_signing`` may adjust the manifest (e.g. the search blend) using the runtime on the staged files."""
    out = Path(out)
    key = load_private_key(private_key)
    version = bundle_version if bundle_version is not None else next_version(out)
    q, scales = quantize_rows(item_vectors)
    dim = q.shape[1]
    stage = staging_dir(out)
    try:
        graph_vectors, table, table_scales = dequantize_rows(q, scales), q, scales
        projection = index.projection if index.projection_dim else None
        if index.projection_dim and (projection is None or projection.shape != (dim, index.projection_dim)):
            raise ConverterError(f"a compact-store index choice needs its ({dim}, {index.projection_dim}) "
                                 "projection (converter.index.tune_index makes it)")
        contents = {}
        if projection is not None:  # the compact store: the graph over the projection, each vector stored once
            basis = complete_basis(projection)
            graph_vectors, table, table_scales = split_rows(graph_vectors, basis, index.projection_dim)
            buf = io.BytesIO()
            np.save(buf, basis, allow_pickle=False)
            contents[PROJECTION_FILE] = buf.getvalue()
        contents.update({FILES[k]: data for k, data in item_file_bytes(table, table_scales, item_ids, metadata,
                                                                       popularity).items()})
        build_hnsw(graph_vectors, index.space, index.M, index.ef_construction).save_index(str(stage / FILES["index"]))
        contents[FILES["model"]] = model.tflite
        if search is not None:
            contents.update(_search_files(search, stage))
        for name, data in contents.items():
            atomic_write_bytes(stage / name, data)
        names = list(FILES.values()) + ([SEARCH_FILES["index"]] if search is not None else []) + list(contents)
        files = {name: FileEntry(*sha256_file(stage / name)) for name in sorted(set(names))}
        manifest = Manifest(
            bundle_version=version, created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            model=model.spec,
            index=IndexSpec(FILES["index"], index.space, index.projection_dim or dim, len(q), index.M,
                            index.ef_construction, index.ef_search, projection=PROJECTION_FILE if projection is not None else None,
                            rerank=index.rerank, residual=projection is not None),
            items=ItemsSpec(FILES["vectors"], FILES["scales"], FILES["ids"], FILES["metadata"], FILES["popularity"],
                            len(q), dim),
            files=files, golden=[], info=dict(info or {}),
            search=_search_spec(search, len(q)) if search is not None else None, seen_items=seen_items)
        manifest.check_consistency()
        with EdgeRecommender(Bundle(stage, manifest, signers=[])) as rec:
            if before_signing is not None:
                before_signing(rec, manifest)
            manifest.golden, searches = golden.compute(rec, golden_histories, search.golden_queries if search else (),
                                                       max_searches=search.golden_searches if search else None)
        if manifest.search is not None:
            manifest.search.golden = searches
        manifest.signatures = [sign(manifest.canonical_bytes(), key)]
        atomic_write_bytes(stage / MANIFEST_NAME, manifest.to_json())
        replace_dir(stage, out)
    except BaseException:
        import shutil
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _search_files(search: SearchPart, stage: Path) -> Dict[str, bytes]:
    """The search table and tokenizer files; the search index is written into ``stage`` directly."""
    q, scales = quantize_rows(search.item_vectors)
    hnsw = build_hnsw(dequantize_rows(q, scales), search.index.space, search.index.M, search.index.ef_construction)
    hnsw.save_index(str(stage / SEARCH_FILES["index"]))
    tables = vector_file_bytes(q, scales)
    return {SEARCH_FILES["vectors"]: tables["vectors"], SEARCH_FILES["scales"]: tables["scales"],
            SEARCH_FILES["tokenizer"]: search.tokenizer, search.encoder_spec.file: search.encoder_tflite}


def _search_spec(search: SearchPart, count: int) -> SearchSpec:
    i = search.index
    dim = search.item_vectors.shape[1]
    return SearchSpec(SEARCH_FILES["tokenizer"], search.encoder_spec, search.features, SEARCH_FILES["vectors"],
                      SEARCH_FILES["scales"], IndexSpec(SEARCH_FILES["index"], i.space, dim, count, i.M, i.ef_construction,
                                                        i.ef_search), search.blend, [])
