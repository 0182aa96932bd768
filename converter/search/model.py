"""The publisher's search model: what turns a new or re-described item into its search vector (the item
tower and the tokenizer it reads titles with), saved beside the teacher by `edge-rec convert`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from edge_rec.atomic import atomic_write_bytes, atomic_write_json, replace_dir, staging_dir
from edge_rec.query import load_tokenizer

from ..data import Item
from ..errors import ConverterError
from .encoder import ItemTower, encode_pieces
from .queries import spoken_title, typed

FORMAT = "edge-rec-search-model/1"


@dataclass
class SearchModel:
    tokenizer: bytes
    tower: ItemTower

    @property
    def dim(self) -> int:
        return int(self.tower.lm_projection.shape[1])

    def item_vectors(self, items: Sequence[Item], lm_vectors: np.ndarray) -> np.ndarray:
        """(n, dim) unit search vectors of items from their language-model text vectors and titles."""
        tokenizer = load_tokenizer(self.tokenizer, self.tower.features.vocab_size)
        return self.tower.vectors(lm_vectors, encode_pieces(tokenizer, [typed(spoken_title(it.title)) for it in items]))

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        stage = staging_dir(path)
        atomic_write_bytes(stage / "tokenizer.model", self.tokenizer)
        atomic_write_bytes(stage / "item_tower.npz", self.tower.to_bytes())
        atomic_write_json(stage / "search.json", {"format": FORMAT, "dim": self.dim})
        replace_dir(stage, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SearchModel":
        path = Path(path)
        try:
            meta = json.loads((path / "search.json").read_text())
        except FileNotFoundError:
            raise ConverterError(f"no search model at {path} (search.json missing): `edge-rec convert` writes "
                                 "one beside the teacher; pass --search-model DIR") from None
        if meta.get("format") != FORMAT:
            raise ConverterError(f"{path}/search.json: format {meta.get('format')!r}, expected {FORMAT!r}")
        return cls((path / "tokenizer.model").read_bytes(), ItemTower.from_bytes((path / "item_tower.npz").read_bytes()))
