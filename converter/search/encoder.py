"""The query encoder and the search space, distilled from the language model (all-MiniLM-L6-v2).

Query side (runs on the device, int8 TFLite): a bag of SentencePiece pieces and hashed piece bigrams,
embedded (rows initialised with the language model's vector of each piece's text), summed and
L2-normalised (the direction of the mean, without an int8 DIV), then a residual MLP and a projection
into the search space. One FULLY_CONNECTED over the feature vector is the embedding bag, so every op
is int8 and Edge TPU mappable.

Training, stage 1: the encoder imitates the language model's sentence vector (cosine) on the transfer
set. Stage 2: the search space. A projection of the encoder's output and an item tower (the language
model's vector of the item text plus the item's title pieces, computed by the publisher) are fitted so
that the encoder's ranking of catalog items follows the language model's (KL to its softmax). The
title pieces are what makes a typed title find its item.
"""
from __future__ import annotations

import io
import math
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
    bigram_buckets: int = 8000    # hashed piece bigrams (0: none)
    embed_dim: int = 128
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

    def __init__(self, config: EncoderConfig, features: TextFeatures, piece_vectors: np.ndarray, dim: int) -> None:
        super().__init__()
        self.config, self.features, self.dim = config, features, dim
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
        self.project = keras.layers.Dense(dim, use_bias=False, name="project")
        self.hidden.build((None, e))
        self.out.build((None, config.hidden))
        self.skip.build((None, e))
        self.project.build((None, LM_DIM))

    def lm_vector(self, pooled):
        """The encoder's imitation of the language model's sentence vector (before the search projection)."""
        x = tf.math.l2_normalize(pooled, axis=-1)
        return self.skip(x) + self.out(self.hidden(x))

    def call(self, index, counts):
        pooled = tf.reduce_sum(tf.gather(self.table, index) * counts[..., None], axis=1)
        return self.lm_vector(pooled)

    def search_vector(self, lm):
        return tf.math.l2_normalize(self.project(lm), axis=-1)

    def dense(self, features, training=False):
        """(1, features) dense feature vector -> unit search vector: the function converted to int8 TFLite
        (the embedding bag is one matmul, a FULLY_CONNECTED op)."""
        return self.search_vector(self.lm_vector(tf.matmul(features, self.table)))

    @property
    def parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in [self.table] + self.hidden.weights + self.out.weights
                       + self.skip.weights + self.project.weights))


@dataclass
class ItemTower:
    """The publisher's side of the search space: an item's search vector from its language-model text
    vector and its title's pieces. Plain numpy, saved beside the teacher, used for every delta."""

    lm_projection: np.ndarray   # (384, dim)
    title_table: np.ndarray     # (features, dim)
    features: TextFeatures

    def vectors(self, lm_vectors: np.ndarray, title_pieces: Sequence[Sequence[int]]) -> np.ndarray:
        """(n, dim) unit search vectors."""
        v = np.asarray(lm_vectors, np.float32) @ self.lm_projection
        for i, pieces in enumerate(title_pieces):
            idx, c = feature_counts(pieces, self.features)
            v[i] += c @ self.title_table[idx]
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        f = self.features
        np.savez(buf, lm_projection=self.lm_projection, title_table=self.title_table,
                 features=np.array([f.vocab_size, f.bigram_buckets, f.max_pieces, f.max_count], np.float64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ItemTower":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            v, b, p, c = z["features"].tolist()
            return cls(z["lm_projection"], z["title_table"], TextFeatures(int(v), int(b), int(p), float(c)))


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


def fit_search_space(net: QueryEncoderNet, query_lm: np.ndarray, targets: np.ndarray, item_lm: np.ndarray,
                     title_index: np.ndarray, title_counts: np.ndarray, epochs: int, temperature: float = 0.03,
                     batch_size: int = 512, learning_rate: float = 1e-3, max_items: int = 20000, seed: int = 0,
                     log: Callable[[str], None] = say) -> ItemTower:
    """Stage 2: fit the encoder's projection and the item tower so that search-space scores rank the
    (training) items as the language model does: KL(softmax(lm_q . lm_i / T) || softmax(s * q . i)).
    ``query_lm`` are the frozen encoder's language-model vectors of the training texts, ``targets`` the
    language model's; items beyond ``max_items`` are sampled per batch."""
    rng = np.random.default_rng(seed)
    dim = net.dim
    _, _, vt = np.linalg.svd(item_lm, full_matrices=False)
    start = vt[:dim].T.astype(np.float32)  # both sides start at the items' principal directions
    net.project.set_weights([start])
    lm_projection = tf.Variable(start, name="item_lm_projection")
    title_table = tf.Variable(np.zeros((net.features.size, dim), np.float32), name="item_title_table")
    log_scale = tf.Variable(math.log(30.0), dtype=tf.float32)
    variables = net.project.trainable_variables + [lm_projection, title_table, log_scale]
    opt = keras.optimizers.Adam(learning_rate)
    opt.build(variables)
    n_items = len(item_lm)

    @tf.function(reduce_retracing=True)
    def step(q_lm, t, items_lm, t_index, t_counts):
        with tf.GradientTape() as tape:
            q = net.search_vector(q_lm)
            i = tf.matmul(items_lm, lm_projection) + tf.reduce_sum(tf.gather(title_table, t_index) * t_counts[..., None], 1)
            i = tf.math.l2_normalize(i, -1)
            p = tf.nn.softmax(tf.matmul(t, items_lm, transpose_b=True) / temperature, -1)
            log_q = tf.nn.log_softmax(tf.exp(log_scale) * tf.matmul(q, i, transpose_b=True), -1)
            loss = tf.reduce_mean(tf.reduce_sum(p * (tf.math.log(p + 1e-12) - log_q), -1))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for epoch in range(1, epochs + 1):
        batches = _batches(len(query_lm), batch_size, rng)
        losses = []
        for b in progress(batches, desc=f"search space epoch {epoch}", total=len(batches)):
            cand = np.arange(n_items) if n_items <= max_items else np.sort(rng.choice(n_items, max_items, replace=False))
            losses.append(float(step(query_lm[b], targets[b], item_lm[cand], title_index[cand], title_counts[cand])))
        log(f"  search space: epoch {epoch}/{epochs}, KL to the language model's ranking {np.mean(losses):.4f}")
    return ItemTower(lm_projection.numpy(), title_table.numpy(), net.features)


def piece_texts(tokenizer) -> List[str]:
    """Each piece's text (the word-boundary mark dropped), to embed with the language model."""
    return [tokenizer.id_to_piece(i).replace("\u2581", " ").strip() or "_" for i in range(tokenizer.get_piece_size())]


def encode_pieces(tokenizer, texts: Sequence[str]) -> List[List[int]]:
    return [tokenizer.encode(t, out_type=int) for t in texts]


def search_vectors(net: QueryEncoderNet, index: np.ndarray, counts: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Float search vectors of texts (fp32 encoder), for evaluation and parity."""
    out = [net.search_vector(net(index[s:s + batch], counts[s:s + batch])).numpy() for s in range(0, len(index), batch)]
    return np.concatenate(out) if out else np.zeros((0, net.dim), np.float32)

