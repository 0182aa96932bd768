"""Student architectures: small Keras models from the last L history item vectors to a query vector.

The student reads the history as the item vectors the device holds (int8, dequantized), right-aligned
(the most recent item in the last row, zero rows as padding), so items a delta sync adds work in
histories at once, without a new model. Every op is chosen to survive full-integer int8 conversion:
no DIV (sum pooling + L2_NORMALIZATION gives the mean's direction), no float-only normalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .tf_env import keras, tf

ARCHITECTURES = ("pool-mlp", "pool-recent", "attention", "teacher-encoder")
RECENT_ITEMS = 5  # pool-recent: the last items the MLP sees individually
# Distillation schedule (epochs, learning rate) per architecture. teacher-encoder starts at the teacher's own
# weights: 10 epochs at 5e-4 keep it near them (ML-1M validation, int8 top-10 overlap with the teacher 0.779
# copied, 0.792 after 3 epochs, 0.804 after 10; issue 16 notes); the others start from scratch.
SCHEDULES = {"teacher-encoder": (10, 5e-4)}
DEFAULT_SCHEDULE = (30, 2e-3)


@dataclass
class StudentConfig:
    """Architecture and distillation hyper-parameters."""

    architecture: str = "pool-mlp"
    history_len: int = 50
    hidden: int = 256
    temperature: float = 1.0       # softens the teacher's distribution
    truth_weight: float = 0.0      # weight of the ground-truth next-item loss (0: pure distillation, best overlap)
    direction_weight: float = 1.0  # weight of the cosine to the teacher's user vector
    epochs: Optional[int] = None          # None: the architecture's schedule (SCHEDULES)
    batch_size: int = 256
    prefixes_per_user: int = 8     # training cases per user and epoch (prefixes of the sequence)
    learning_rate: Optional[float] = None  # None: the architecture's schedule (SCHEDULES)
    full_softmax_limit: int = 20000  # above this many items: teacher top-K + sampled negatives
    top_k: int = 200
    negatives: int = 2000
    seed: int = 0

    def for_architecture(self, architecture: str, teacher_window: Optional[int] = None) -> "StudentConfig":
        """This config for ``architecture``, with what it leaves unset taken from that architecture's schedule.
        A teacher-encoder that reads the teacher's whole window (``teacher_window``) *is* the teacher: its
        schedule is 0 epochs (ML-1M, a 50-item teacher: int8 top-10 overlap 0.883 as copied, 0.803 after
        10 epochs, which trade the teacher's lists for validation NDCG)."""
        epochs, rate = SCHEDULES.get(architecture, DEFAULT_SCHEDULE)
        if architecture == "teacher-encoder" and teacher_window is not None and self.history_len >= teacher_window:
            epochs = 0
        return replace(self, architecture=architecture,
                       epochs=epochs if self.epochs is None else self.epochs,
                       learning_rate=rate if self.learning_rate is None else self.learning_rate)


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


class _CopiedEncoder:
    """One SASRec teacher's encoder, its weights copied into the student (see :class:`TeacherEncoderStudent`):
    maps the (B, L, dim) item vectors of a history to the teacher's user vector, not normalised."""

    def __init__(self, owner: keras.Model, history_len: int, net: Any, prefix: str) -> None:
        c = net.config
        if history_len > c.max_len:
            raise ValueError(f"teacher-encoder: the student reads {history_len} items, the teacher at most {c.max_len}")
        self.dim, self.heads = c.dim, c.heads

        def copy(value, name: str):
            value = np.asarray(value, np.float32)
            return owner.add_weight(shape=value.shape, initializer=keras.initializers.Constant(value), name=prefix + name)

        def ln(layer, name: str):
            return copy(layer.gamma, f"{name}_gamma"), copy(layer.beta, f"{name}_beta"), float(layer.epsilon)

        def dense(layer, name: str):  # a MultiHeadAttention projection as one (dim, dim) matrix
            return copy(np.reshape(layer.kernel, (c.dim, c.dim)), name), copy(np.reshape(layer.bias, (-1,)), f"{name}_bias")
        self.position = copy(net.pos_emb.embeddings.numpy()[:history_len], "position")
        self.blocks = []
        for i, b in enumerate(net.blocks):
            a = b.attn
            self.blocks.append({
                "ln_attn": ln(b.ln_attn, f"b{i}_ln_attn"), "ln_ffn": ln(b.ln_ffn, f"b{i}_ln_ffn"),
                "q": dense(a._query_dense, f"b{i}_q"), "k": dense(a._key_dense, f"b{i}_k"),
                "v": dense(a._value_dense, f"b{i}_v"), "o": dense(a._output_dense, f"b{i}_o"),
                "ffn_in": (copy(b.ffn_in.kernel, f"b{i}_ffn_in"), copy(b.ffn_in.bias, f"b{i}_ffn_in_bias")),
                "ffn_out": (copy(b.ffn_out.kernel, f"b{i}_ffn_out"), copy(b.ffn_out.bias, f"b{i}_ffn_out_bias"))})
        self.final_ln = ln(net.final_ln, "final_ln")

    @staticmethod
    def _dense(x, params):
        """``x @ w + b`` for (B, rows, d) ``x``; over more than one row as a 1 x 1 convolution (CONV_2D):
        tflite-runtime 2.14 on aarch64 dies with SIGSEGV in an int8 FULLY_CONNECTED over several rows."""
        w, b = params
        return (x @ w if x.shape[1] == 1 else tf.nn.conv1d(x, w[None], 1, "VALID")) + b

    @staticmethod
    def _norm(x, params, pad):
        gamma, beta, eps = params
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + eps + pad) * gamma + beta

    def _attend(self, q, k, v, penalty, training: bool):
        """Per head: softmax(q k^T / sqrt(hd) + penalty) v; matmuls in training, MUL + SUM otherwise."""
        hd = self.dim // self.heads
        outs = []
        for h in range(self.heads):
            qh, kh, vh = (t[..., h * hd:(h + 1) * hd] for t in (q, k, v))
            if training:
                logits = tf.matmul(qh, kh, transpose_b=True)
            else:
                logits = tf.reduce_sum(qh[:, :, None, :] * kh[:, None, :, :], axis=-1)
            p = tf.nn.softmax(logits * (1.0 / math.sqrt(hd)) + penalty, axis=-1)
            outs.append(tf.matmul(p, vh) if training else tf.reduce_sum(p[:, :, :, None] * vh[:, None, :, :], axis=2))
        return outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)

    def __call__(self, history, padding, first, penalty, training: bool):
        """``first``: (B, 2L - 1, 1), the one-hot of the first filled slot after L - 1 zeros (see
        :meth:`TeacherEncoderStudent._first_slot`); ``penalty``: (B, L, L) added to the attention logits, 0
        where a slot may attend, negative where not."""
        valid = padding[..., None]
        pad = 1.0 - valid
        # the teacher places a history of t items at positions 0..t-1; here it fills the last t slots, so with the
        # first filled slot i, slot j is at position j - i (none before i): a causal convolution of the one-hot
        # of i with the position table, reversed (CONV_2D: exact in int8, L x dim weights, no GATHER)
        positions = tf.nn.conv1d(first, tf.reverse(self.position, [0])[:, None, :], stride=1, padding="VALID")
        x = (history * math.sqrt(self.dim) + positions) * valid
        keys_values = x
        for i, b in enumerate(self.blocks):
            if i == len(self.blocks) - 1:  # only the last slot's output is read: its row alone attends from here on
                x, pad, valid, penalty = x[:, -1:], pad[:, -1:], valid[:, -1:], penalty[:, -1:]
            q = self._dense(self._norm(x, b["ln_attn"], pad), b["q"])
            k, v = self._dense(keys_values, b["k"]), self._dense(keys_values, b["v"])
            x = x + self._dense(self._attend(q, k, v, penalty, training), b["o"])
            h = tf.nn.relu(self._dense(self._norm(x, b["ln_ffn"], pad), b["ffn_in"]))
            x = keys_values = (x + self._dense(h, b["ffn_out"])) * valid
        return self._norm(x, self.final_ln, pad)[:, -1, :]


class TeacherEncoderStudent(keras.Model):
    """The SASRec teacher's own encoder, its weights copied (then distilled like any student): positions,
    causal pre-LayerNorm blocks and the final LayerNorm, reading the device's item vectors of the last L
    items (the teacher's item table is its input embedding too), each at the position the teacher gives it.
    A teacher that reads L items is then copied exactly; one that reads 200, cut to 50, keeps 0.83 of its
    own top-10 (ML-1M), where students learnt from scratch reach ~0.72. An ensemble teacher's members are
    copied side by side: each reads its own columns of the item vectors, and the user vector is their
    outputs concatenated (as the ensemble's is).

    Written for full-int8 conversion and the Edge TPU: attention as MUL + SUM (no BATCH_MATMUL) when not
    training, an additive mask penalty instead of -inf, LayerNorm whose padded rows see a variance of 1 (a
    zero row's 1/sqrt(1e-8) would take the whole int8 range), positions shifted by a convolution, per-slot
    projections as 1 x 1 convolutions (see ``_CopiedEncoder._dense``)."""

    # small, so the softmax input's int8 scale stays fine (ML-1M, copied teacher: int8 top-10 overlap with
    # the teacher 0.757 at 16, 0.779 at 5); a masked slot keeps e^-5 of a weight, which distillation absorbs
    MASK_PENALTY = 5.0

    def __init__(self, history_len: int, nets: Sequence[Any]) -> None:
        super().__init__()
        self.encoders = [_CopiedEncoder(self, history_len, net, f"m{i}_" if len(nets) > 1 else "")
                         for i, net in enumerate(nets)]
        self.columns = [int(c) for c in np.cumsum([0] + [e.dim for e in self.encoders])]
        self.causal = tf.constant(np.tril(np.ones((history_len, history_len), np.float32)))
        self.first_slot = tf.constant(np.eye(history_len, dtype=np.float32) - np.eye(history_len, k=1, dtype=np.float32))

    def _first_slot(self, padding):
        """(B, 2L - 1, 1): the one-hot of the first filled slot (``padding`` x a difference matrix: exact in
        int8) after L - 1 zeros, the input of every encoder's position convolution."""
        n = self.causal.shape[0]
        return tf.pad((padding @ self.first_slot)[..., None], [[0, 0], [n - 1, 0], [0, 0]])

    def call(self, history, padding=None, training=False):
        penalty = (self.causal[None] * padding[:, None, :] - 1.0) * self.MASK_PENALTY
        first = self._first_slot(padding)
        if len(self.encoders) == 1:
            return _l2(self.encoders[0](history, padding, first, penalty, training))
        return _l2(tf.concat([e(history[..., a:b], padding, first, penalty, training)
                              for e, a, b in zip(self.encoders, self.columns[:-1], self.columns[1:])], axis=-1))


def teacher_window(teacher: Any) -> Optional[int]:
    """How many history items ``teacher`` reads (its ``config.max_len``; an ensemble: its members' shortest), if it says."""
    members = getattr(teacher, "members", None)
    if members is not None:
        windows = [teacher_window(m) for m in members]
        return None if None in windows else min(windows)
    return getattr(getattr(teacher, "config", None), "max_len", None)


def teacher_encoders(teacher: Any) -> Optional[List[Any]]:
    """The SASRec encoders (networks with positions and blocks) the teacher-encoder student copies: the
    teacher's own, or each member's of an ensemble; None if ``teacher`` has none."""
    members = getattr(teacher, "members", None)
    if members is not None:
        nets = [teacher_encoders(m) for m in members]
        return None if any(n is None for n in nets) else [net for n in nets for net in n]
    net = getattr(teacher, "net", None)
    return [net] if net is not None and hasattr(net, "blocks") and hasattr(net, "pos_emb") else None


def has_encoder(teacher: Any) -> bool:
    """Whether ``teacher`` has SASRec encoders that the teacher-encoder student copies."""
    return teacher_encoders(teacher) is not None


def build_student(config: StudentConfig, dim: int, teacher: Optional[Any] = None) -> keras.Model:
    """A built student of ``config.architecture`` for ``dim``-dimensional item vectors (``teacher``: the
    trained teacher, which "teacher-encoder" copies: a SASRec teacher or an ensemble of them)."""
    def teacher_encoder() -> keras.Model:
        nets = teacher_encoders(teacher)
        if nets is None:
            raise ValueError("the teacher-encoder student copies a SASRec teacher's encoder; this teacher "
                             f"({type(teacher).__name__}) has none: choose another architecture")
        if sum(net.config.dim for net in nets) != dim:
            raise ValueError(f"teacher-encoder: the teacher's encoders make {sum(net.config.dim for net in nets)}-d "
                             f"user vectors, its item vectors are {dim}-d")
        return TeacherEncoderStudent(config.history_len, nets)
    builders = {"pool-mlp": lambda: PoolMLPStudent(config.history_len, dim, config.hidden),
                "pool-recent": lambda: PoolMLPStudent(config.history_len, dim, config.hidden, recent=RECENT_ITEMS),
                "attention": lambda: AttentionStudent(config.history_len, dim, config.hidden),
                "teacher-encoder": teacher_encoder}
    if config.architecture not in builders:
        raise ValueError(f"unknown student architecture {config.architecture!r}; choose from {ARCHITECTURES}")
    model = builders[config.architecture]()
    model(tf.zeros((1, config.history_len, dim)), tf.ones((1, config.history_len)))
    return model


def uses_mask(architecture: str) -> bool:
    """Whether the converted model takes the padding mask as a second input."""
    return architecture in ("attention", "teacher-encoder")


def input_shapes(config: StudentConfig, dim: int) -> Tuple[Tuple[int, ...], ...]:
    shapes: Tuple[Tuple[int, ...], ...] = ((1, config.history_len, dim),)
    return shapes + (((1, config.history_len),) if uses_mask(config.architecture) else ())
