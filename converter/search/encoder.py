"""The query encoder and the search space, distilled from the language model (all-MiniLM-L6-v2).

Query side (runs on the device, int8 TFLite): a bag of SentencePiece pieces and hashed piece bigrams,
embedded (rows initialised with the language model's vector of each piece's text), summed and
L2-normalised (the direction of the mean, without an int8 DIV), then a residual MLP that imitates the
language model's sentence vector, and a fixed projection into the search space. One FULLY_CONNECTED
over the feature vector is the embedding bag, so every op is int8 and Edge TPU mappable.

Training: the encoder imitates the language model's sentence vector (cosine) on the transfer set. The
search space is the language model's own space cut to its first principal directions over the training
items' texts (:class:`SearchSpace`): an item's search vector is its language-model vector projected, so
the publisher places a new item with one matrix product, and the space keeps the language model's
sense of genres and decades. Titles are matched exactly on the device (:mod:`edge_rec.titles`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np

from edge_rec.manifest import TextFeatures
from edge_rec.query import feature_counts

from ..progress import progress, say
from ..tf_env import keras, tf

LM_DIM = 384


@dataclass
class EncoderConfig:
    """One size of query encoder."""

    name: str = "large"
    vocab_size: int = 8000        # SentencePiece pieces
    bigram_buckets: int = 0       # hashed piece bigrams (0: none; 8,000 at 128 wide helped less than width)
    embed_dim: int = 256          # the pooled query's width: what limited overlap with the language model
    hidden: int = 512
    max_pieces: int = 32
    max_count: float = 3.0

    def features(self, vocab_size: int) -> TextFeatures:
        return TextFeatures(vocab_size, self.bigram_buckets, self.max_pieces, self.max_count)


SMALL = EncoderConfig(name="small", vocab_size=4000, bigram_buckets=0, embed_dim=96, hidden=256)
LARGE = EncoderConfig()


def sparse_features(pieces: Sequence[Sequence[int]], features: TextFeatures) -> Tuple[np.ndarray, np.ndarray]:
    """(n, width) feature indices and counts of many texts' pieces (padding: index 0 with count 0); width
    is the most features any of the texts has, so short texts cost little."""
    index, counts = np.zeros((len(pieces), 2 * features.max_pieces), np.int32), np.zeros((len(pieces), 2 * features.max_pieces), np.float32)
    width = 1
    for i, p in enumerate(pieces):
        idx, c = feature_counts(p, features)
        index[i, :len(idx)], counts[i, :len(idx)] = idx, c
        width = max(width, len(idx))
    return index[:, :width], counts[:, :width]


class QueryEncoderNet(keras.Model):
    """The query encoder: ``call(index, counts)`` trains on sparse features; :meth:`dense` is the same
    function over the dense feature vector, as the device feeds it."""

    def __init__(self, config: EncoderConfig, features: TextFeatures, piece_vectors: np.ndarray, space: "SearchSpace") -> None:
        super().__init__()
        self.config, self.features = config, features
        e = config.embed_dim
        # Rows: the language model's vectors of the pieces, reduced to embed_dim (PCA); bigram rows start at 0.
        _, _, vt = np.linalg.svd(piece_vectors, full_matrices=False)
        basis = vt[:e]
        table = np.zeros((features.size, e), np.float32)
        table[:len(piece_vectors)] = piece_vectors @ basis.T
        table[0] = 0.0  # the unknown piece is never counted
        self.table = self.add_weight(shape=table.shape, initializer=keras.initializers.Constant(table), name="table")
        self.hidden = keras.layers.Dense(config.hidden, activation="relu", name="hidden")
        self.out = keras.layers.Dense(LM_DIM, name="out")
        self.skip = keras.layers.Dense(LM_DIM, use_bias=False, name="skip",
                                       kernel_initializer=keras.initializers.Constant(basis.astype(np.float32)))
        self.hidden.build((None, e))
        self.out.build((None, config.hidden))
        self.skip.build((None, e))
        self.set_space(space)

    def set_space(self, space: "SearchSpace") -> None:
        """End the encoder in ``space``'s projection (fixed, not trained)."""
        # set past Keras's attribute tracking: a constant, swapped after the model is built
        object.__setattr__(self, "dim", space.dim)
        object.__setattr__(self, "projection", tf.constant(space.projection.astype(np.float32)))

    def lm_vector(self, pooled):
        """The encoder's imitation of the language model's sentence vector (before the search projection)."""
        x = tf.math.l2_normalize(pooled, axis=-1)
        return self.skip(x) + self.out(self.hidden(x))

    def call(self, index, counts):
        pooled = tf.reduce_sum(tf.gather(self.table, index) * counts[..., None], axis=1)
        return self.lm_vector(pooled)

    def search_vector(self, lm):
        return tf.math.l2_normalize(tf.matmul(lm, self.projection), axis=-1)

    def dense(self, features, training=False):
        """(1, features) dense feature vector -> unit search vector: the function converted to int8 TFLite
        (the embedding bag is one matmul, a FULLY_CONNECTED op)."""
        return self.search_vector(self.lm_vector(tf.matmul(features, self.table)))

    @property
    def parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in [self.table] + self.hidden.weights + self.out.weights
                       + self.skip.weights)) + int(np.prod(self.projection.shape))


@dataclass
class SearchSpace:
    """The search space: the language model's space cut to its first ``dim`` principal directions over the
    training items' texts. Plain numpy, saved beside the teacher: the publisher places every new item
    with it (:meth:`vectors`), and the query encoder ends in the same projection."""

    projection: np.ndarray   # (384, dim)

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    def vectors(self, lm_vectors: np.ndarray) -> np.ndarray:
        """(n, dim) unit search vectors of language-model vectors."""
        v = np.asarray(lm_vectors, np.float32) @ self.projection
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.save(buf, self.projection.astype(np.float32), allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SearchSpace":
        projection = np.load(io.BytesIO(data), allow_pickle=False)
        if projection.ndim != 2 or projection.shape[0] != LM_DIM:
            raise ValueError(f"a search-space projection is ({LM_DIM}, dim), not {projection.shape}")
        return cls(projection)


def principal_space(item_lm: np.ndarray, dim: int) -> SearchSpace:
    """The first ``dim`` principal directions (uncentred) of the items' language-model vectors."""
    _, _, vt = np.linalg.svd(np.asarray(item_lm, np.float32), full_matrices=False)
    return SearchSpace(np.ascontiguousarray(vt[:dim].T.astype(np.float32)))


def _batches(n: int, size: int, rng: np.random.Generator) -> List[np.ndarray]:
    order = rng.permutation(n)
    return [order[s:s + size] for s in range(0, n, size)]


def train_imitation(net: QueryEncoderNet, index: np.ndarray, counts: np.ndarray, targets: np.ndarray, epochs: int,
                    batch_size: int = 512, learning_rate: float = 1e-3, seed: int = 0,
                    log: Callable[[str], None] = say) -> List[float]:
    """Stage 1: fit the encoder's language-model vector to the language model's (mean cosine distance)."""
    rng = np.random.default_rng(seed)
    variables = [net.table] + net.hidden.trainable_variables + net.out.trainable_variables + net.skip.trainable_variables
    opt = keras.optimizers.Adam(learning_rate)
    opt.build(variables)

    @tf.function(reduce_retracing=True)
    def step(i, c, t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(1.0 - tf.reduce_sum(tf.math.l2_normalize(net(i, c), -1) * t, -1))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    history = []
    for epoch in range(1, epochs + 1):
        batches = _batches(len(index), batch_size, rng)
        losses = [float(step(index[b], counts[b], targets[b]))
                  for b in progress(batches, desc=f"query encoder {net.config.name} epoch {epoch}", total=len(batches))]
        history.append(float(np.mean(losses)))
        log(f"  query encoder {net.config.name}: epoch {epoch}/{epochs}, mean cosine to the language model "
            f"{1 - history[-1]:.4f}")
    return history


def lm_vectors_of(net: QueryEncoderNet, index: np.ndarray, counts: np.ndarray, batch: int = 4096) -> np.ndarray:
    out = [net(index[s:s + batch], counts[s:s + batch]).numpy() for s in range(0, len(index), batch)]
    return np.concatenate(out) if out else np.zeros((0, LM_DIM), np.float32)


def piece_texts(tokenizer) -> List[str]:
    """Each piece's text (the word-boundary mark dropped), to embed with the language model."""
    return [tokenizer.id_to_piece(i).replace("\u2581", " ").strip() or "_" for i in range(tokenizer.get_piece_size())]


def encode_pieces(tokenizer, texts: Sequence[str]) -> List[List[int]]:
    return [tokenizer.encode(t, out_type=int) for t in texts]


def search_vectors(net: QueryEncoderNet, index: np.ndarray, counts: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Float search vectors of texts (fp32 encoder), for evaluation and parity."""
    out = [net.search_vector(net(index[s:s + batch], counts[s:s + batch])).numpy() for s in range(0, len(index), batch)]
    return np.concatenate(out) if out else np.zeros((0, net.dim), np.float32)

