"""The publisher's search model: what places a new or re-described item in the search space (the
projection of the language model's space), saved beside the teacher by `edge-rec convert`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from edge_rec.atomic import atomic_write_bytes, atomic_write_json, replace_dir, staging_dir

from ..data import Item
from ..errors import ConverterError
from .encoder import SearchSpace

FORMAT = "edge-rec-search-model/2"  # 1 (edge-rec 0.2): an item tower over titles; re-run `edge-rec convert`


@dataclass
class SearchModel:
    space: SearchSpace

    @property
    def dim(self) -> int:
        return self.space.dim

    def item_vectors(self, items: Sequence[Item], lm_vectors: np.ndarray) -> np.ndarray:
        """(n, dim) unit search vectors of ``items`` from their language-model text vectors."""
        if len(lm_vectors) != len(items):
            raise ConverterError(f"{len(items)} items but {len(lm_vectors)} language-model vectors")
        return self.space.vectors(lm_vectors)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        stage = staging_dir(path)
        atomic_write_bytes(stage / "projection.npy", self.space.to_bytes())
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
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ConverterError(f"{path}/search.json: format {found!r}, expected {FORMAT!r} (a search model "
                                 "from an older edge-rec: re-run `edge-rec convert` to make the bundle and its model)")
        try:
            return cls(SearchSpace.from_bytes((path / "projection.npy").read_bytes()))
        except (OSError, ValueError) as e:
            raise ConverterError(f"{path}/projection.npy: {e}") from None
