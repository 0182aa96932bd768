"""Text queries on the device: normalise, tokenize (SentencePiece), featurise, encode (int8 TFLite).

The converter trains the encoder on exactly these functions (it imports them), so a query is read the
same way on the workstation and on every device. Nothing here needs torch, transformers or TensorFlow.
"""
from __future__ import annotations

import re
import unicodedata
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import IncompatibleBundleError, ModelError, QueryError
from .manifest import SearchSpec, TextFeatures
from .model import TFLiteModel

MAX_QUERY_CHARS = 256   # longer queries are cut here (after normalisation): a search box, not a document
_NOT_WORD = re.compile(r"[^\w\s']")
_BIGRAM_PRIME = 1_000_003


def normalize_query(query: object) -> str:
    """Lower case, accents folded, punctuation and control characters turned into spaces, single spaces,
    at most MAX_QUERY_CHARS characters. Raises QueryError for non-text and for queries with no words."""
    if isinstance(query, (bytes, bytearray, memoryview)):
        raise QueryError("the query must be text (str), not bytes: decode it first")
    if not isinstance(query, str):
        raise QueryError(f"the query must be text (str), not {type(query).__name__}")
    text = query[:8 * MAX_QUERY_CHARS].casefold()  # bound the work on huge input
    if not text.isascii():  # accents folded (ASCII text is its own NFKD form)
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = " ".join(_NOT_WORD.sub(" ", text).replace("_", " ").split())[:MAX_QUERY_CHARS].strip()
    if not text.replace("'", "").strip():
        raise QueryError("the query is empty" if not query.strip() else
                         f"the query {query[:40]!r} has no words to search for (letters or digits)")
    return text


def bigram_feature(a: int, b: int, features: TextFeatures) -> int:
    """The feature index of the piece bigram (a, b): a hashed bucket after the piece features."""
    return features.vocab_size + (a * _BIGRAM_PRIME + b) % features.bigram_buckets


def feature_counts(pieces: Sequence[int], features: TextFeatures) -> Tuple[np.ndarray, np.ndarray]:
    """(feature indices, counts) of a query's pieces: the known pieces (id 0 = unknown is skipped) and
    their bigrams, counts clipped at ``max_count``. The sparse form of :func:`text_features`."""
    ids = [p for p in pieces if 0 < p < features.vocab_size][:features.max_pieces]
    if features.bigram_buckets:
        ids += [bigram_feature(a, b, features) for a, b in zip(ids, ids[1:])]
    index, counts = np.unique(np.asarray(ids, np.int64), return_counts=True)
    return index, np.minimum(counts.astype(np.float32), features.max_count)


def text_features(pieces: Sequence[int], features: TextFeatures) -> np.ndarray:
    """(features.size,) float32: the encoder's input for a query's pieces (see :func:`feature_counts`)."""
    x = np.zeros(features.size, np.float32)
    index, counts = feature_counts(pieces, features)
    x[index] = counts
    return x


def load_tokenizer(model_proto: bytes, vocab_size: Optional[int] = None):
    """A SentencePiece processor from verified bytes; its vocabulary must be the manifest's (if given)."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(model_proto)
    except (RuntimeError, OSError, TypeError) as e:
        raise ModelError(f"the tokenizer cannot be loaded: {e}") from None
    if (vocab_size is not None and sp.get_piece_size() != vocab_size) or sp.unk_id() != 0:
        raise IncompatibleBundleError(f"the tokenizer has {sp.get_piece_size()} pieces (unknown id {sp.unk_id()}), "
                                      f"the manifest says {vocab_size} (unknown id 0 expected)")
    return sp


class QueryEncoder:
    """Text -> unit search vector: normalise, SentencePiece pieces, features, the int8 encoder."""

    def __init__(self, tokenizer_bytes: bytes, encoder_bytes: bytes, spec: SearchSpec, num_threads: int = 1,
                 backend: Optional[str] = None) -> None:
        self.spec = spec
        self.tokenizer = load_tokenizer(tokenizer_bytes, spec.features.vocab_size)
        e = spec.encoder
        self.model = TFLiteModel(encoder_bytes, e.file, e.inputs, e.output, num_threads, backend)
        self._not_words = {0, self.tokenizer.piece_to_id("\u2581")}  # unknown, and the bare word boundary

    def pieces(self, query: str) -> List[int]:
        """Piece ids of a query (normalised first); unknown pieces are 0."""
        return self.tokenizer.encode(normalize_query(query), out_type=int)

    def encode(self, query: str) -> Optional[np.ndarray]:
        """The query's unit search vector, or None when none of its words' pieces is in the vocabulary
        (e.g. a script the catalog never uses): there is then nothing to search for."""
        pieces = self.pieces(query)
        if all(p in self._not_words for p in pieces):
            return None
        v = self.model.run(text_features(pieces, self.spec.features)[None, :])
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else None
