"""The bundle manifest: the one definition of the bundle format (version ``FORMAT_VERSION``).

A bundle is a directory holding ``manifest.json`` and the files it lists. The manifest names every
file with its size and sha256, describes the model's tensors and quantization, the index parameters
and the item table, carries golden cases for on-device parity checks, and is signed (ed25519) over
its canonical JSON form (everything but ``signatures``; keys sorted, no whitespace, ASCII).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import IncompatibleBundleError, ManifestError
from .signed import Signature, SignedDocument, signed_payload_of, typed_field, typed_list

FORMAT = "edge-rec-bundle"
FORMAT_VERSION = 9           # 2: index.built_on_device, tombstone rows from delta syncs; 3: optional on-device search;
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9)  # 4: search.title_weight (hybrid title matching; format 3 bundles search without it);
#   5: search.facet_weight (genres and decades a query names; format 4 searches without);
#   6: index.projection / index.rerank (the compact item store: the graph over a projection, an int8 re-rank);
#   7: seen_items (the repeat-consumption protocol; older formats exclude seen items);
#   8: index.residual (the compact store keeps each vector once: graph coordinates + an int8 residual table);
#   9: a delta adds its items to a grown index at the target manifest's ef_construction (earlier: the file's)
MANIFEST_NAME = "manifest.json"
LOCAL_NAME = "local.json"  # the device's own record of files it built (see IndexSpec.built_on_device)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# What recommend() does with items already in the user's history, chosen per data set by the converter
# and evaluated the same way: "exclude" (never shown again: films, books) or "repeat" (re-purchases
# count: groceries, consumables).
SEEN_ITEMS = ("exclude", "repeat")



@dataclass
class FileEntry:
    sha256: str
    size: int

    @classmethod
    def from_dict(cls, d, where):
        sha = typed_field(d, "sha256", str, where)
        size = typed_field(d, "size", int, where)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"{where}.sha256: not a lowercase hex sha256")
        if size < 0:
            raise ManifestError(f"{where}.size: negative")
        return cls(sha, size)


@dataclass
class TensorSpec:
    """One model input or output: shape, dtype and affine quantization (real = (q - zero_point) * scale)."""

    name: str
    shape: List[int]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, d, where):
        t = cls(typed_field(d, "name", str, where), typed_list(d, "shape", int, where), typed_field(d, "dtype", str, where),
                float(typed_field(d, "scale", (int, float), where)), typed_field(d, "zero_point", int, where))
        if not t.shape or min(t.shape) < 1:
            raise ManifestError(f"{where}.shape must be a non-empty list of sizes >= 1, got {t.shape}")
        if t.dtype not in ("int8", "uint8", "float32"):
            raise IncompatibleBundleError(f"{where}.dtype {t.dtype!r} is not supported (int8, uint8, float32)")
        if t.dtype != "float32" and not t.scale > 0:
            raise ManifestError(f"{where}.scale must be > 0 for a quantized tensor")
        return t


def _tflite_fields(d, where) -> Dict[str, Any]:
    """The fields every TFLite model entry has: file, tensors, op list, Edge TPU verdict."""
    inputs = typed_field(d, "inputs", list, where)
    return {"file": typed_field(d, "file", str, where),
            "inputs": [TensorSpec.from_dict(x, f"{where}.inputs[{i}]") for i, x in enumerate(inputs)],
            "output": TensorSpec.from_dict(typed_field(d, "output", dict, where), f"{where}.output"),
            "ops": typed_list(d, "ops", str, where), "float_ops": typed_list(d, "float_ops", str, where),
            "edgetpu_compatible": typed_field(d, "edgetpu_compatible", bool, where)}


@dataclass
class ModelSpec:
    """The student: reads the last ``history_len`` item vectors (zero rows = padding), writes a query."""

    file: str
    architecture: str
    history_len: int
    dim: int
    inputs: List[TensorSpec]
    output: TensorSpec
    ops: List[str]
    float_ops: List[str]
    edgetpu_compatible: bool
    edgetpu_file: Optional[str] = None  # the same model compiled by edgetpu_compiler, if shipped

    @classmethod
    def from_dict(cls, d, where="manifest.model"):
        spec = cls(architecture=typed_field(d, "architecture", str, where), history_len=typed_field(d, "history_len", int, where),
                   dim=typed_field(d, "dim", int, where), edgetpu_file=typed_field(d, "edgetpu_file", str, where, optional=True),
                   **_tflite_fields(d, where))
        if not spec.inputs or spec.history_len <= 0 or spec.dim <= 0:
            raise ManifestError(f"{where}: needs at least one input and positive history_len and dim")
        return spec


@dataclass
class IndexSpec:
    """The hnswlib index: neither dim nor space is stored in hnswlib's file, so both are pinned here."""

    file: str
    space: str
    dim: int
    count: int
    M: int
    ef_construction: int     # of an index a delta grows (built_on_device): the width its items are added at
    ef_search: int
    # True when a delta sync made this version: the device grows the previous index itself (hnswlib add /
    # update / mark_deleted), so its bytes are not in the signed file list; the device records their
    # hash locally, and the signed golden cases check what it built.
    built_on_device: bool = False
    # Format 6, the compact store: the graph is built over the vectors times this (full dim, dim) float32
    # .npy matrix (a projection onto a few directions, fitted by the converter), and the best ``rerank`` rows it
    # finds are re-ranked exactly with the int8 table. None: the graph holds the vectors themselves.
    projection: Optional[str] = None
    rerank: int = 0
    # Format 8, the compact store with each vector stored once: the projection file is a (full dim, full
    # dim) orthonormal basis whose first ``dim`` columns are the graph's directions; the graph holds each
    # item's float32 coordinates along them, and the item table (int8, full dim - dim) its coordinates
    # along the other columns. A vector is the sum of the two parts (see :mod:`edge_rec.vectors`).
    residual: bool = False

    @classmethod
    def from_dict(cls, d, where="manifest.index"):
        s = cls(*(typed_field(d, k, t, where) for k, t in (("file", str), ("space", str), ("dim", int), ("count", int),
                                                      ("M", int), ("ef_construction", int), ("ef_search", int))),
                bool(typed_field(d, "built_on_device", bool, where, optional=True)),
                typed_field(d, "projection", str, where, optional=True),
                int(typed_field(d, "rerank", int, where, optional=True) or 0),
                bool(typed_field(d, "residual", bool, where, optional=True)))
        if (s.projection is None) != (s.rerank == 0) or s.rerank < 0:
            raise ManifestError(f"{where}: a projection needs rerank >= 1 (the rows re-ranked exactly), and rerank needs "
                                "a projection")
        if s.residual and s.projection is None:
            raise ManifestError(f"{where}: residual needs a projection (the basis the two parts of a vector are in)")
        if s.space not in ("ip", "cosine", "l2"):
            raise IncompatibleBundleError(f"{where}.space {s.space!r} is not one of ip, cosine, l2")
        if min(s.dim, s.M, s.ef_search) <= 0 or s.count < 0:
            raise ManifestError(f"{where}: dim, M and ef_search must be positive, count >= 0")
        return s


@dataclass
class ItemsSpec:
    """The item table: int8 vectors + per-row scales (rows = index labels), ids, metadata, popularity."""

    vectors: str       # .npy int8 (count, dim); a residual index's table: (count, dim - index.dim)
    scales: str        # .npy float32 (count,)
    ids: str           # .json list of item ids, one per row
    metadata: str      # .jsonl, one object per row (title, year, genres, ...)
    popularity: str    # .npy int32 rows, most popular first (for empty histories)
    count: int
    dim: int

    @classmethod
    def from_dict(cls, d, where="manifest.items"):
        return cls(*(typed_field(d, k, str, where) for k in ("vectors", "scales", "ids", "metadata", "popularity")),
                   typed_field(d, "count", int, where), typed_field(d, "dim", int, where))


@dataclass
class GoldenCase:
    """A history (item ids, oldest first) with the query vector and top-10 ids the converter computed."""

    history: List[str]
    query: List[float]
    top: List[str]

    @classmethod
    def from_dict(cls, d, where):
        return cls(typed_list(d, "history", str, where), [float(x) for x in typed_list(d, "query", (int, float), where)],
                   typed_list(d, "top", str, where))


@dataclass
class EncoderSpec:
    """The int8 query encoder: a text's feature vector (see :class:`TextFeatures`) in, a search vector out."""

    file: str
    architecture: str
    inputs: List[TensorSpec]
    output: TensorSpec
    ops: List[str]
    float_ops: List[str]
    edgetpu_compatible: bool

    @classmethod
    def from_dict(cls, d, where="manifest.search.encoder"):
        spec = cls(architecture=typed_field(d, "architecture", str, where), **_tflite_fields(d, where))
        if len(spec.inputs) != 1 or len(spec.inputs[0].shape) != 2 or spec.inputs[0].shape[0] != 1:
            raise ManifestError(f"{where}: the encoder reads one (1, features) input")
        return spec


@dataclass
class TextFeatures:
    """How a query becomes the encoder's input, defined once in :mod:`edge_rec.query`: counts of the
    SentencePiece pieces (feature = piece id) plus hashed piece bigrams (feature = vocab_size + bucket)."""

    vocab_size: int
    bigram_buckets: int
    max_pieces: int     # only the first pieces of a (long) query count
    max_count: float    # counts are clipped here

    @property
    def size(self) -> int:
        return self.vocab_size + self.bigram_buckets

    @classmethod
    def from_dict(cls, d, where="manifest.search.features"):
        f = cls(typed_field(d, "vocab_size", int, where), typed_field(d, "bigram_buckets", int, where),
                typed_field(d, "max_pieces", int, where), float(typed_field(d, "max_count", (int, float), where)))
        if f.vocab_size <= 0 or f.bigram_buckets < 0 or f.max_pieces <= 0 or not f.max_count > 0:
            raise ManifestError(f"{where}: vocab_size, max_pieces and max_count must be positive, bigram_buckets >= 0")
        return f


@dataclass
class SearchGoldenCase:
    """A query with the search vector and top-10 ids the converter computed (no history, no filter)."""

    query: str
    vector: List[float]
    top: List[str]

    @classmethod
    def from_dict(cls, d, where):
        return cls(typed_field(d, "query", str, where), [float(x) for x in typed_list(d, "vector", (int, float), where)],
                   typed_list(d, "top", str, where))


@dataclass
class SearchSpec:
    """On-device search: a SentencePiece tokenizer and an int8 query encoder map text into a search space
    where every item has an int8 vector (rows = item-table rows) and an hnswlib index."""

    tokenizer: str                  # SentencePiece model file
    encoder: EncoderSpec
    features: TextFeatures
    vectors: str                    # .npy int8 (count, dim)
    scales: str                     # .npy float32 (count,)
    index: IndexSpec
    blend: float                    # default weight of the user's taste when a search is personalised
    golden: List[SearchGoldenCase]
    title_weight: float = 0.0       # format 4: weight of title matching in the hybrid score (0: the encoder alone)
    facet_weight: float = 0.0       # format 5: weight of the genres and decades a query names (0: not read)

    @property
    def dim(self) -> int:
        return self.index.dim

    @classmethod
    def from_dict(cls, d, where="manifest.search"):
        s = cls(typed_field(d, "tokenizer", str, where), EncoderSpec.from_dict(typed_field(d, "encoder", dict, where)),
                TextFeatures.from_dict(typed_field(d, "features", dict, where)), typed_field(d, "vectors", str, where),
                typed_field(d, "scales", str, where), IndexSpec.from_dict(typed_field(d, "index", dict, where), f"{where}.index"),
                float(typed_field(d, "blend", (int, float), where)),
                [SearchGoldenCase.from_dict(g, f"{where}.golden[{i}]") for i, g in enumerate(typed_field(d, "golden", list, where))],
                float(typed_field(d, "title_weight", (int, float), where, optional=True) or 0.0),
                float(typed_field(d, "facet_weight", (int, float), where, optional=True) or 0.0))
        if not 0.0 <= s.blend <= 1.0:
            raise ManifestError(f"{where}.blend must be within [0, 1]")
        for name in ("title_weight", "facet_weight"):
            if not 0.0 <= getattr(s, name) <= 10.0:
                raise ManifestError(f"{where}.{name} must be within [0, 10]")
        if s.encoder.inputs[0].shape[1] != s.features.size or s.encoder.output.shape[-1] != s.dim:
            raise IncompatibleBundleError(f"{where}: the encoder reads {s.encoder.inputs[0].shape[1]} features and writes "
                                          f"{s.encoder.output.shape[-1]} values; the features are {s.features.size}, "
                                          f"the search index has dimension {s.dim}")
        return s


@dataclass
class Manifest(SignedDocument):
    """Everything a device needs to trust and use a bundle."""

    bundle_version: int
    created: str
    model: ModelSpec
    index: IndexSpec
    items: ItemsSpec
    files: Dict[str, FileEntry]
    golden: List[GoldenCase]
    info: Dict[str, Any] = field(default_factory=dict)
    search: Optional[SearchSpec] = None  # format 3: on-device search (absent: this bundle has none)
    seen_items: str = "exclude"          # format 7: one of SEEN_ITEMS (older formats: "exclude")
    signatures: List[Signature] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    signed_payload: Optional[bytes] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        w = "manifest"
        fmt = typed_field(d, "format", str, w)
        if fmt != FORMAT:
            raise IncompatibleBundleError(f"manifest.format is {fmt!r}, not an edge-rec bundle ({FORMAT!r})")
        version = typed_field(d, "format_version", int, w)
        if version not in READABLE_VERSIONS:
            raise IncompatibleBundleError(
                f"bundle format version {version}; this runtime reads version {FORMAT_VERSION}: "
                + ("upgrade edge-rec on the device" if version > FORMAT_VERSION else "re-convert the bundle"))
        files = typed_field(d, "files", dict, w)
        m = cls(bundle_version=typed_field(d, "bundle_version", int, w), created=typed_field(d, "created", str, w),
                model=ModelSpec.from_dict(typed_field(d, "model", dict, w)),
                index=IndexSpec.from_dict(typed_field(d, "index", dict, w)),
                items=ItemsSpec.from_dict(typed_field(d, "items", dict, w)),
                files={k: FileEntry.from_dict(v, f"manifest.files[{k!r}]") for k, v in files.items()},
                golden=[GoldenCase.from_dict(g, f"manifest.golden[{i}]")
                        for i, g in enumerate(typed_field(d, "golden", list, w))],
                info=typed_field(d, "info", dict, w, optional=True) or {},
                search=SearchSpec.from_dict(d["search"]) if d.get("search") is not None else None,
                seen_items=typed_field(d, "seen_items", str, w) if version >= 7 else "exclude",
                signatures=[Signature.from_dict(s, f"manifest.signatures[{i}]")
                            for i, s in enumerate(typed_field(d, "signatures", list, w, optional=True) or [])])
        m.check_consistency()
        return m

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        """Parse manifest.json. ``signed_payload`` keeps the canonical bytes of what was received (minus
        the signatures): signatures are checked against those, so fields this runtime does not know
        (added by a newer converter) stay covered."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest.json is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
        try:
            raw = json.loads(data.decode("utf-8"))
            manifest = cls.from_dict(raw)
            manifest.signed_payload = signed_payload_of(raw)
            return manifest
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"manifest.json is not valid UTF-8 JSON: {e}") from None
        except RecursionError:
            raise ManifestError("manifest.json is nested too deeply") from None
        except ValueError as e:  # e.g. NaN or Infinity, which canonical JSON does not allow
            raise ManifestError(f"manifest.json: {e}") from None

    @property
    def indexes(self) -> List[IndexSpec]:
        """The hnswlib indexes of this bundle: the item index, and the search index if it has search."""
        return [self.index] + ([self.search.index] if self.search else [])

    def check_consistency(self) -> None:
        """Cross-field checks: every referenced file is listed, and dims and counts agree."""
        if self.seen_items not in SEEN_ITEMS:
            raise IncompatibleBundleError(f"manifest.seen_items is {self.seen_items!r}; this runtime knows "
                                          f"{' and '.join(map(repr, SEEN_ITEMS))}: upgrade edge-rec on the device")
        referenced = ([self.model.file] + ([self.model.edgetpu_file] if self.model.edgetpu_file else [])
                      + [self.items.vectors, self.items.scales, self.items.ids, self.items.metadata, self.items.popularity])
        if self.search:
            referenced += [self.search.tokenizer, self.search.encoder.file, self.search.vectors, self.search.scales]
        referenced += [i.file for i in self.indexes if not i.built_on_device]
        referenced += [i.projection for i in self.indexes if i.projection]
        for name in referenced:
            if name not in self.files:
                raise ManifestError(f"manifest.files does not list {name!r}, which the manifest uses")
        for index in self.indexes:
            if index.built_on_device and index.file in self.files:
                raise ManifestError(f"manifest.files lists {index.file!r}, which the device builds itself")
            if index.file in (MANIFEST_NAME, LOCAL_NAME) or "/" in index.file or index.file.startswith("."):
                raise ManifestError(f"manifest index file {index.file!r} is not a plain file name")
        if self.search and (self.search.index.projection or self.search.index.residual):
            raise IncompatibleBundleError("the search index cannot be compact (a projection) in this format")
        if self.search and (self.search.index.count != self.items.count or self.search.index.file == self.index.file
                            or self.search.index.built_on_device != self.index.built_on_device):
            raise IncompatibleBundleError(f"the search index ({self.search.index.file}, {self.search.index.count} items) "
                                          f"does not match the item index ({self.index.file}, {self.items.count} items)")
        for name in self.files:
            if "/" in name or "\\" in name or name.startswith(".") or name in (MANIFEST_NAME, LOCAL_NAME):
                raise ManifestError(f"manifest.files: {name!r} is not a plain file name")
        if not (self.model.dim == self.items.dim and (self.index.dim == self.items.dim
                                                      or (self.index.projection and self.index.dim < self.items.dim))):
            raise IncompatibleBundleError(f"dimension mismatch: model {self.model.dim}, index {self.index.dim}"
                                          f"{' (projected)' if self.index.projection else ''}, items {self.items.dim}")
        if self.index.count != self.items.count:
            raise IncompatibleBundleError(f"the index holds {self.index.count} items, the item table {self.items.count}")
