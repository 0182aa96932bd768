"""The query encoder and the search space, distilled from the language model (all-MiniLM-L6-v2).

Query side (runs on the device, int8 TFLite): a bag of SentencePiece pieces (and optionally hashed piece
bigrams), embedded (rows initialised with the language model's vector of each piece's text), summed and
L2-normalised (the direction of the mean, without an int8 DIV), then a residual MLP that imitates the
language model's sentence vector, ending in the search space. The embedding bag is one FULLY_CONNECTED
over the feature vector, or two when rare pieces get narrow rows (``head_pieces``: the vocabulary's
size, not the rows' width, is what most limited agreement with the language model, and narrow rows pay
for a large one), so every op is int8 and Edge TPU mappable.

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
    vocab_size: int = 24000       # SentencePiece pieces: 8,000 split common words ("junk mail": jun k mai l)
    bigram_buckets: int = 0       # hashed piece bigrams (0: none; 8,000 at 128 wide helped less than width)
    embed_dim: int = 256          # the pooled query's width
    hidden: int = 512
    max_pieces: int = 32
    max_count: float = 3.0
    head_pieces: int = 3000       # the most frequent pieces get embed_dim-wide rows ...
    tail_dim: int = 64            # ... the others (and bigrams) tail_dim-wide rows, widened by one shared matrix

    def split(self, rows: int) -> int:
        """How many of ``rows`` feature rows are full width (all of them when the tail would be empty)."""
        return self.head_pieces if 0 < self.head_pieces < rows else rows

    def features(self, vocab_size: int) -> TextFeatures:
        return TextFeatures(vocab_size, self.bigram_buckets, self.max_pieces, self.max_count)


SMALL = EncoderConfig(name="small", vocab_size=4000, bigram_buckets=0, embed_dim=96, hidden=256, head_pieces=0)
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
        self.head_rows = config.split(features.size)
        self.table = self.add_weight(shape=(self.head_rows, e), initializer=keras.initializers.Constant(table[:self.head_rows]),
                                     name="table")
        self.embedding = [self.table]
        if self.head_rows < features.size:  # narrow rows: the tail's own principal directions, widened back
            tail = table[self.head_rows:]
            _, _, tail_basis = np.linalg.svd(tail, full_matrices=False)
            widen = np.zeros((config.tail_dim, e), np.float32)
            widen[:len(tail_basis)] = tail_basis[:config.tail_dim]
            self.tail = self.add_weight(shape=(len(tail), config.tail_dim), name="tail",
                                        initializer=keras.initializers.Constant(tail @ widen.T))
            self.widen = self.add_weight(shape=widen.shape, initializer=keras.initializers.Constant(widen), name="widen")
            self.embedding += [self.tail, self.widen]
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

    def rows(self):
        """Every feature row at full width (training gathers from it)."""
        if not self.narrow:
            return self.table
        return tf.concat([self.table, tf.matmul(self.tail, self.widen)], 0)

    def call(self, index, counts):
        pooled = tf.reduce_sum(tf.gather(self.rows(), index) * counts[..., None], axis=1)
        return self.lm_vector(pooled)

    def search_vector(self, lm):
        return tf.math.l2_normalize(tf.matmul(lm, self.projection), axis=-1)

    def dense(self, features, training=False):
        """(1, features) dense feature vector -> unit search vector: the function converted to int8 TFLite.
        The embedding bag is one matmul (two with narrow rows), a FULLY_CONNECTED op each; the search
        projection is folded into the last layers, so the device never computes the 384-d vector."""
        if not self.narrow:
            pooled = tf.matmul(features, self.table)
        else:
            pooled = (tf.matmul(features[:, :self.head_rows], self.table)
                      + tf.matmul(tf.matmul(features[:, self.head_rows:], self.tail), self.widen))
        x = tf.math.l2_normalize(pooled, axis=-1)
        p = self.projection
        y = (tf.matmul(x, tf.matmul(self.skip.kernel, p)) + tf.matmul(self.hidden(x), tf.matmul(self.out.kernel, p))
             + tf.matmul(self.out.bias[None, :], p))
        return tf.math.l2_normalize(y, axis=-1)

    @property
    def narrow(self) -> bool:
        """Whether the rarer pieces have narrow rows (a tail table and its widening matrix)."""
        return self.head_rows < self.features.size

    @property
    def training_variables(self) -> list:
        """What imitation training updates."""
        return self.embedding + self.hidden.trainable_variables + self.out.trainable_variables + self.skip.trainable_variables

    @property
    def parameters(self) -> int:
        """Weights on the device: the embedding, the MLP, and its last layers folded into the search space."""
        e, h, dim = self.config.embed_dim, self.config.hidden, self.dim
        return int(sum(np.prod(v.shape) for v in self.embedding)) + e * h + h + (h + e + 1) * dim


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
    variables = net.training_variables
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

