"""The reference teacher: a SASRec-style causal transformer over item histories (Keras 3 / TensorFlow).

An item's representation is a learned ID embedding plus a linear projection of its language-model
text embedding, so items with text but no interactions still get a meaningful vector. The same item
table embeds the history and scores the catalog (tied weights), trained with full softmax
cross-entropy over all items at every position.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge_rec.atomic import atomic_write_json, replace_dir, staging_dir

from ..tf_env import keras, tf
from .base import Teacher, TextHead

FORMAT = "edge-rec-sasrec-teacher/1"


@dataclass
class SASRecConfig:
    """Architecture and training hyper-parameters of the reference teacher."""

    max_len: int = 50           # the last 50 items: same test quality as 200 in 60% of the time (README ablation)
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.1
    positions: str = "start"     # "start": position 0 = oldest item in the window; "end": last item = last position
    use_text: bool = True
    id_dropout: float = 0.0      # training: share of items scored by their text alone in each step (cold start)
    learning_rate: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    eval_every: int = 2          # epochs between validation runs
    patience: int = 10           # validation runs without improvement before stopping
    refit_epochs: int = 3        # after selection: epochs on train + validation items (0: none) ...
    refit_lr_scale: float = 0.3  # ... at this fraction of the learning rate
    random_windows: bool = True  # long histories: a random window per epoch instead of always the last
    max_minutes: float = 55.0    # wall-clock budget for training
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SASRecConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class CausalBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer block with causal self-attention (as in SASRec)."""

    def __init__(self, dim: int, heads: int, dropout: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.ln_attn = keras.layers.LayerNormalization(epsilon=1e-8)
        self.attn = keras.layers.MultiHeadAttention(heads, dim // heads, dropout=dropout)
        self.ln_ffn = keras.layers.LayerNormalization(epsilon=1e-8)
        self.ffn_in = keras.layers.Dense(dim, activation="relu")
        self.ffn_out = keras.layers.Dense(dim)
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x, attention_mask, valid, training=False):
        q = self.ln_attn(x)
        x = x + self.drop(self.attn(q, x, x, attention_mask=attention_mask, training=training), training=training)
        h = self.ffn_out(self.drop(self.ffn_in(self.ln_ffn(x)), training=training))
        return (x + self.drop(h, training=training)) * valid


class SASRecNet(keras.Model):
    """Embeds left-padded histories of internal item ids (1..n_items, 0 = padding)."""

    def __init__(self, n_items: int, config: SASRecConfig, text_vectors: Optional[np.ndarray] = None) -> None:
        super().__init__()
        c = self.config = config
        if c.positions not in ("start", "end"):
            raise ValueError(f"positions must be 'start' or 'end', not {c.positions!r}")
        self.n_items = n_items
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.id_emb = keras.layers.Embedding(n_items + 1, c.dim, embeddings_initializer=init)
        self.pos_emb = keras.layers.Embedding(c.max_len, c.dim, embeddings_initializer=init)
        if c.use_text:
            if text_vectors is None:
                raise ValueError("use_text=True needs the items' text vectors")
            if text_vectors.shape[0] != n_items:
                raise ValueError(f"text vectors cover {text_vectors.shape[0]} items, the catalog has {n_items}")
            padded = np.concatenate([np.zeros((1, text_vectors.shape[1]), np.float32), text_vectors])
            self.text_table = self.add_weight(shape=padded.shape, trainable=False, name="text_table",
                                              initializer=keras.initializers.Constant(padded))
            self.text_proj = keras.layers.Dense(c.dim, use_bias=False, name="text_proj")
        self.blocks = [CausalBlock(c.dim, c.heads, c.dropout, name=f"block{i}") for i in range(c.blocks)]
        self.final_ln = keras.layers.LayerNormalization(epsilon=1e-8)
        self.drop = keras.layers.Dropout(c.dropout)
        self.id_emb.build((None,))
        if c.use_text:
            self.text_proj.build((None, padded.shape[1]))
        self(tf.zeros((1, 2), tf.int32))  # build the remaining weights (and mark the model built)

    def item_table(self, training=False):
        """(n_items + 1, dim): row i represents internal item i (row 0 is padding). In training with
        ``id_dropout``, a random share of the items lose their ID part for the step, so the text part
        learns to place an item alone, as it must for items added after training (cold start)."""
        table = self.id_emb.embeddings
        if self.config.use_text:
            if training and self.config.id_dropout > 0:
                keep = tf.random.uniform((self.n_items + 1, 1)) >= self.config.id_dropout
                table = table * tf.cast(keep, table.dtype)
            table = table + self.text_proj(self.text_table)
        return table

    def encode(self, seqs, training=False, table=None):
        """(B, T) int32 left-padded ids -> (B, T, dim) hidden states (causal: position t sees <= t); ``table``:
        the item table to embed with (default: :meth:`item_table`)."""
        c = self.config
        length = tf.shape(seqs)[1]
        valid = tf.cast(seqs > 0, tf.float32)[..., None]
        x = tf.gather(self.item_table() if table is None else table, seqs) * math.sqrt(c.dim)
        if c.positions == "start":  # a prefix of t items has positions 0..t-1, in training and at inference alike
            pos = tf.maximum(tf.cumsum(tf.cast(seqs > 0, tf.int32), axis=1) - 1, 0)
            x = x + self.pos_emb(pos)
        else:
            x = x + self.pos_emb(tf.range(c.max_len - length, c.max_len))[None]
        x = self.drop(x, training=training) * valid
        causal = tf.linalg.band_part(tf.ones((length, length), tf.bool), -1, 0)
        mask = tf.logical_and(causal[None], (seqs > 0)[:, None, :])
        for block in self.blocks:
            x = block(x, mask, valid, training=training)
        return self.final_ln(x)

    def call(self, seqs, training=False):
        return self.encode(seqs, training=training)


def pad_left(histories: Sequence[np.ndarray], max_len: int, offset: int = 1, multiple: int = 1) -> np.ndarray:
    """Stack the last ``max_len`` items of each history, shifted by ``offset``, left-padded with 0.

    The width is the longest history rounded up to ``multiple`` (capped at ``max_len``), so batches
    of short histories stay cheap and the number of distinct shapes stays small.
    """
    longest = max((min(len(h), max_len) for h in histories), default=1)
    width = min(max_len, max(1, -(-longest // multiple) * multiple))
    out = np.zeros((len(histories), width), dtype=np.int32)
    for r, h in enumerate(histories):
        h = np.asarray(h)[-width:]
        if len(h):
            out[r, width - len(h):] = h + offset
    return out


class SASRecTeacher(Teacher):
    """A trained :class:`SASRecNet` behind the :class:`Teacher` interface."""

    def __init__(self, net: SASRecNet, item_ids: List[str], info: Optional[Dict[str, Any]] = None) -> None:
        if len(item_ids) != net.n_items:
            raise ValueError(f"{len(item_ids)} item ids for a model of {net.n_items} items")
        self.net, self.item_ids, self.info = net, list(item_ids), dict(info or {})
        self._hidden = tf.function(lambda s: self.net.encode(s, training=False),
                                   input_signature=[tf.TensorSpec([None, None], tf.int32)], reduce_retracing=True)

    @property
    def config(self) -> SASRecConfig:
        return self.net.config

    @property
    def n_items(self) -> int:
        return self.net.n_items

    def item_vectors(self) -> np.ndarray:
        return self.net.item_table()[1:].numpy()

    def text_head(self) -> TextHead:
        """Known ids: their learned ID embedding plus the projected text; new ids: the projected text alone
        (the ID part of an item never seen in training is untrained, so it is left out)."""
        if not self.config.use_text:
            raise NotImplementedError("this teacher was trained without text (--no-text): it cannot embed new items")
        return TextHead(self.net.text_proj.kernel.numpy(), self.item_ids, self.net.id_emb.embeddings.numpy()[1:])

    def user_vectors(self, histories: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        out = [self._hidden(pad_left(histories[s:s + batch_size], self.config.max_len, multiple=25))[:, -1, :].numpy()
               for s in range(0, len(histories), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.config.dim), np.float32)

    def scores(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.user_vectors(histories) @ self.item_vectors().T

    def prefix_user_vectors(self, sequences: Sequence[np.ndarray], lengths: Sequence[np.ndarray]) -> np.ndarray:
        """One causal pass per sequence window yields the user vector of every prefix inside it."""
        windows, picks = [], []
        for seq, ls in zip(sequences, lengths):
            ls = np.asarray(ls, dtype=np.int64)
            end = int(ls.max())
            start = max(0, end - self.config.max_len)
            if ls.min() <= start:
                raise ValueError(f"prefix lengths {ls.min()}..{end} do not fit one window of {self.config.max_len}")
            windows.append(np.asarray(seq[start:end]))
            picks.append(ls - 1 - start)  # index of each prefix's last item inside the window
        padded = pad_left(windows, self.config.max_len, multiple=25)
        hidden = self._hidden(padded).numpy()
        width = padded.shape[1]
        rows = [hidden[i, width - len(w) + p] for i, (w, p) in enumerate(zip(windows, picks))]
        return np.concatenate(rows)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the teacher to directory ``path`` atomically (config.json + model.weights.h5)."""
        path = Path(path)
        stage = staging_dir(path)
        self.net.save_weights(str(stage / "model.weights.h5"))
        atomic_write_json(stage / "config.json", {
            "format": FORMAT, "config": asdict(self.config), "n_items": self.n_items,
            "text_dim": int(self.net.text_table.shape[1]) if self.config.use_text else None,
            "item_ids": self.item_ids, "info": self.info})
        replace_dir(stage, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SASRecTeacher":
        """Load a teacher written by :meth:`save`; no language model is needed (text vectors are saved)."""
        path = Path(path)
        try:
            meta = json.loads((path / "config.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no saved teacher at {path} (config.json missing)") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}/config.json: format {meta.get('format')!r}, expected {FORMAT!r}")
        meta["config"].setdefault("positions", "end")  # teachers saved before the option existed
        config = SASRecConfig.from_dict(meta["config"])
        text = np.zeros((meta["n_items"], meta["text_dim"]), np.float32) if config.use_text else None
        net = SASRecNet(meta["n_items"], config, text)
        net.load_weights(str(path / "model.weights.h5"))
        return cls(net, meta["item_ids"], meta.get("info"))
