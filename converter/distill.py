"""Distillation: train a student to reproduce the teacher's ranking over the catalog.

Loss = (1 - w) * KL(teacher || student) on temperature-softened scores + w * cross-entropy of the true
next item + c * (1 - cosine(student query, teacher user vector)): ranking by inner product depends only
on the query's direction, so matching the teacher's direction is matching its ranking. Each epoch visits every user with several prefixes of their training sequence (the teacher
scores all prefixes of one window in one pass). The student scores items against the same int8-dequantized item vectors the device holds.
Catalogs up to ``full_softmax_limit`` items use the full softmax; larger ones the teacher's top-K items
of the batch plus uniformly sampled negatives.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from edge_rec.model import history_window

from .data import Split
from .evaluate import evaluate
from .progress import progress, say
from .student import StudentConfig, build_student, teacher_window
from .teacher import Teacher
from .tf_env import keras, tf
from .trainlog import TrainLog


def history_inputs(histories: Sequence[np.ndarray], table: np.ndarray, history_len: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Stacked :func:`edge_rec.model.history_window` of each history (item rows of ``table``):
    (B, L, d) vectors and (B, L) masks, exactly as the device builds them."""
    windows = [history_window(table[np.asarray(h, dtype=np.int64)], history_len) for h in histories]
    if not windows:
        return np.zeros((0, history_len, table.shape[1]), np.float32), np.zeros((0, history_len), np.float32)
    return np.stack([w[0] for w in windows]), np.stack([w[1] for w in windows])


class StudentScorer:
    """The fp32 student as a ``Scorer``: query vectors dotted with the device's item vectors."""

    def __init__(self, model: keras.Model, table: np.ndarray, history_len: int) -> None:
        self.model, self.table, self.history_len = model, table.astype(np.float32), history_len
        d = table.shape[1]
        self._call = tf.function(lambda x, m: model(x, m, training=False),
                                 input_signature=[tf.TensorSpec([None, history_len, d], tf.float32),
                                                  tf.TensorSpec([None, history_len], tf.float32)])

    def queries(self, histories: Sequence[np.ndarray], batch_size: int = 512) -> np.ndarray:
        out = []
        for s in range(0, len(histories), batch_size):
            x, m = history_inputs(histories[s:s + batch_size], self.table, self.history_len)
            out.append(self._call(x, m).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.table.shape[1]), np.float32)

    def __call__(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.queries(histories) @ self.table.T


def sample_prefixes(seq: np.ndarray, n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct prefix lengths of ``seq`` that fit one teacher window ending at a random point."""
    end = int(rng.integers(min(len(seq), window), len(seq) + 1)) if len(seq) > window else len(seq)
    low = max(1, end - window + 1)
    return np.sort(rng.choice(np.arange(low, end + 1), size=min(n, end - low + 1), replace=False))


def distill(teacher: Teacher, split: Split, table: np.ndarray, config: Optional[StudentConfig] = None,
            eval_every: int = 5, log: Callable[[str], None] = say) -> Tuple[keras.Model, TrainLog]:
    """Train a student on ``split.train`` against ``teacher``; keep the best validation NDCG@10."""
    c = config or StudentConfig()
    window = teacher_window(teacher) or 200
    c = c.for_architecture(c.architecture, window)
    keras.utils.set_random_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    n_items, dim = table.shape
    student = build_student(c, dim, teacher)
    scorer = StudentScorer(student, table, c.history_len)
    log_scale = tf.Variable(math.log(10.0), dtype=tf.float32, name="logit_scale")
    variables = student.trainable_variables + [log_scale]
    opt = keras.optimizers.Adam(learning_rate=c.learning_rate)
    opt.build(variables)
    full = n_items <= c.full_softmax_limit
    table_tf = tf.constant(table, tf.float32)
    tau = float(c.temperature)

    @tf.function(input_signature=[tf.TensorSpec([None, c.history_len, dim], tf.float32),
                                  tf.TensorSpec([None, c.history_len], tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, None], tf.float32)])
    def step(x, m, candidates, teacher_logits, target_pos, teacher_users):
        with tf.GradientTape() as tape:
            q = student(x, m, training=True)
            logits = tf.exp(log_scale) * tf.matmul(q, tf.gather(table_tf, candidates), transpose_b=True)
            p_teacher = tf.nn.softmax(teacher_logits / tau, axis=-1)
            kd = tf.reduce_mean(tf.reduce_sum(
                p_teacher * (tf.math.log(p_teacher + 1e-12) - tf.nn.log_softmax(logits / tau, axis=-1)), axis=-1)) * tau ** 2
            has = target_pos >= 0
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(target_pos, 0), logits=logits)
            ce = tf.reduce_sum(tf.where(has, ce, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(has, tf.float32)), 1.0)
            cos = tf.reduce_mean(1.0 - tf.reduce_sum(q * tf.math.l2_normalize(teacher_users, axis=-1), axis=-1))
            loss = (1.0 - c.truth_weight) * kd + c.truth_weight * ce + c.direction_weight * cos
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    result = TrainLog()
    best = student.get_weights()
    start = time.time()
    all_items = np.arange(n_items)
    users = np.array([u for u, seq in enumerate(split.train) if len(seq) >= 2])
    per_batch = max(1, c.batch_size // c.prefixes_per_user)
    teacher_items = teacher.item_vectors().astype(np.float32)  # the teacher is frozen: compute once
    for epoch in range(1, c.epochs + 1):
        order = rng.permutation(users)
        losses = []
        starts = range(0, len(order), per_batch)
        for s in progress(starts, desc=f"distill epoch {epoch}", total=len(starts)):
            seqs = [split.train[u] for u in order[s:s + per_batch]]
            lengths = [sample_prefixes(seq, c.prefixes_per_user, window, rng) for seq in seqs]
            hist = [seq[:int(n)] for seq, ls in zip(seqs, lengths) for n in ls]
            tgt = np.array([int(seq[n]) if n < len(seq) else -1 for seq, ls in zip(seqs, lengths) for n in ls])
            t_users = teacher.prefix_user_vectors(seqs, lengths).astype(np.float32)
            t_scores = t_users @ teacher_items.T
            if full:
                cand, pos = all_items, tgt
            else:
                top = np.argpartition(-t_scores, c.top_k, axis=1)[:, :c.top_k]
                cand = np.unique(np.concatenate([top.ravel(), rng.integers(0, n_items, c.negatives), tgt[tgt >= 0]]))
                pos = np.where(tgt >= 0, np.searchsorted(cand, np.maximum(tgt, 0)), -1)
                t_scores = t_scores[:, cand]
            x, m = history_inputs(hist, table, c.history_len)
            losses.append(float(step(x, m, tf.constant(cand, tf.int32), t_scores, tf.constant(pos, tf.int32), t_users)))
        row: Dict[str, float] = {"epoch": epoch, "loss": float(np.mean(losses)), "minutes": (time.time() - start) / 60}
        if epoch % eval_every == 0 or epoch == c.epochs:
            valid = evaluate(scorer, split.valid, n_items, ks=(10,))
            row.update({f"valid_{k}": v for k, v in valid.items() if k != "users"})
            if valid["NDCG@10"] > result.best_valid.get("NDCG@10", -1.0):
                result.best_epoch, result.best_valid, best = epoch, valid, student.get_weights()
            log(f"distill epoch {epoch:3d}  loss {row['loss']:.4f}  valid NDCG@10 {valid['NDCG@10']:.4f}  "
                f"[{row['minutes']:.1f} min]")
        result.epochs.append(row)
    if not c.epochs:  # kept as built (a teacher-encoder copy): measured once, like an epoch
        result.best_valid = evaluate(scorer, split.valid, n_items, ks=(10,))
        log(f"distill: 0 epochs, the student kept as built: valid NDCG@10 {result.best_valid['NDCG@10']:.4f}")
    student.set_weights(best)
    result.seconds = time.time() - start
    return student, result

