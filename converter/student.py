"""Student architectures: small Keras models from the last L history item vectors to a query vector.

The student reads the history as the item vectors the device holds (int8, dequantized), right-aligned
(the most recent item in the last row, zero rows as padding), so items a delta sync adds work in
histories at once, without a new model. Every op is chosen to survive full-integer int8 conversion:
no DIV (sum pooling + L2_NORMALIZATION gives the mean's direction), no float-only normalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

from .tf_env import keras, tf

ARCHITECTURES = ("pool-mlp", "pool-recent", "attention")
RECENT_ITEMS = 5  # pool-recent: the last items the MLP sees individually


@dataclass
class StudentConfig:
    """Architecture and distillation hyper-parameters."""

    architecture: str = "pool-mlp"
    history_len: int = 50
    hidden: int = 256
    temperature: float = 1.0       # softens the teacher's distribution
    truth_weight: float = 0.0      # weight of the ground-truth next-item loss (0: pure distillation, best overlap)
    direction_weight: float = 1.0  # weight of the cosine to the teacher's user vector
    epochs: int = 30
    batch_size: int = 256
    prefixes_per_user: int = 8     # training cases per user and epoch (prefixes of the sequence)
    learning_rate: float = 2e-3
    full_softmax_limit: int = 20000  # above this many items: teacher top-K + sampled negatives
    top_k: int = 200
    negatives: int = 2000
    seed: int = 0


def _l2(x):
    return tf.math.l2_normalize(x, axis=-1)


class PoolMLPStudent(keras.Model):
    """Recency-weighted sum of the history vectors, L2-normalised, plus the last ``recent`` item vectors
    in order (sequence order matters most at the end), through a residual MLP."""

    def __init__(self, history_len: int, dim: int, hidden: int, recent: int = 0) -> None:
        super().__init__()
        self.recent, self.dim = recent, dim
        self.recency = self.add_weight(shape=(history_len,), initializer="ones", name="recency")
        self.hidden = keras.layers.Dense(hidden, activation="relu")
        self.out = keras.layers.Dense(dim)
        self.skip = keras.layers.Dense(dim, use_bias=False)

    def call(self, history, padding=None):
        pooled = _l2(tf.reduce_sum(history * self.recency[None, :, None], axis=1))
        features = pooled
        if self.recent:
            last = tf.reshape(history[:, -self.recent:, :], (-1, self.recent * self.dim))
            features = tf.concat([pooled, last], axis=-1)
        return _l2(self.skip(pooled) + self.out(self.hidden(features)))


class AttentionStudent(keras.Model):
    """One single-head self-attention block with LayerNorm over the history, then masked sum pooling."""

    MASK_PENALTY = 16.0  # moderate, so the int8 scale of the attention logits stays fine-grained

    def __init__(self, history_len: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.pos = self.add_weight(shape=(history_len, dim), initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                   name="position")
        self.qkv = [keras.layers.Dense(dim, use_bias=False) for _ in range(3)]
        self.ln1 = keras.layers.LayerNormalization()
        self.ln2 = keras.layers.LayerNormalization()
        self.ffn_in = keras.layers.Dense(hidden, activation="relu")
        self.ffn_out = keras.layers.Dense(dim)
        self.out = keras.layers.Dense(dim)

    def call(self, history, padding=None):
        m = padding[..., None]
        x = (history + self.pos[None]) * m
        h = self.ln1(x)
        q, k, v = (layer(h) for layer in self.qkv)
        logits = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.dim))
        logits = logits + (padding[:, None, :] - 1.0) * self.MASK_PENALTY
        x = x + tf.matmul(tf.nn.softmax(logits, axis=-1), v)
        x = x + self.ffn_out(self.ffn_in(self.ln2(x)))
        return _l2(self.out(_l2(tf.reduce_sum(x * m, axis=1))))


def build_student(config: StudentConfig, dim: int) -> keras.Model:
    """A built student of ``config.architecture`` for ``dim``-dimensional item vectors."""
    builders = {"pool-mlp": lambda: PoolMLPStudent(config.history_len, dim, config.hidden),
                "pool-recent": lambda: PoolMLPStudent(config.history_len, dim, config.hidden, recent=RECENT_ITEMS),
                "attention": lambda: AttentionStudent(config.history_len, dim, config.hidden)}
    if config.architecture not in builders:
        raise ValueError(f"unknown student architecture {config.architecture!r}; choose from {ARCHITECTURES}")
    model = builders[config.architecture]()
    model(tf.zeros((1, config.history_len, dim)), tf.ones((1, config.history_len)))
    return model


def uses_mask(architecture: str) -> bool:
    """Whether the converted model takes the padding mask as a second input."""
    return architecture == "attention"


def input_shapes(config: StudentConfig, dim: int) -> Tuple[Tuple[int, ...], ...]:
    shapes: Tuple[Tuple[int, ...], ...] = ((1, config.history_len, dim),)
    return shapes + (((1, config.history_len),) if uses_mask(config.architecture) else ())
