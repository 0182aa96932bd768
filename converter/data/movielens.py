"""Reader for MovieLens-1M (GroupLens): ``movies.dat`` and ``ratings.dat`` (optionally ``.xz``).

Every rating is one implicit interaction. The files may not be redistributed, so they are never part
of this project: point edge-rec at your copy with ``--data DIR`` or ``EDGE_REC_ML1M=DIR``.
"""
from __future__ import annotations

import lzma
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from .dataset import Dataset, Item, build_dataset
from .errors import DataFormatError, DatasetNotFoundError

ENV_VAR = "EDGE_REC_ML1M"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_TITLE_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)\s*$")
_DOWNLOAD_HINT = ("MovieLens-1M is not shipped with edge-rec (its licence forbids redistribution). Get "
                  "ml-1m.zip from GroupLens (https://grouplens.org/datasets/movielens/1m/), unzip it, "
                  f"and pass --data /path/to/ml-1m or set {ENV_VAR}=/path/to/ml-1m.")


def candidate_dirs(path: Union[str, Path, None] = None) -> List[Path]:
    """Where ML-1M is looked for, in order: the given path, $EDGE_REC_ML1M, ../shared/data, ./data."""
    if path is not None:
        return [Path(path)]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs += [_PROJECT_ROOT.parent / "shared" / "data" / "ml-1m", Path.cwd() / "data" / "ml-1m"]
    return dirs


def find_movielens_1m(path: Union[str, Path, None] = None) -> Path:
    """The first candidate directory holding ``movies.dat`` and ``ratings.dat[.xz]``."""
    searched = candidate_dirs(path)
    for d in searched:
        if (d / "movies.dat").is_file() and _ratings_file(d) is not None:
            return d
    raise DatasetNotFoundError("MovieLens-1M (movies.dat + ratings.dat or ratings.dat.xz)", searched,
                               _DOWNLOAD_HINT)


def _ratings_file(d: Path) -> Optional[Path]:
    for name in ("ratings.dat", "ratings.dat.xz"):
        if (d / name).is_file():
            return d / name
    return None


def _read_movies(path: Path) -> Dict[str, Item]:
    catalog: Dict[str, Item] = {}
    with open(path, encoding="latin-1", newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("::")
            if len(fields) != 3 or not fields[0].isdigit():
                raise DataFormatError(path, n, f"expected 'MovieID::Title::Genres', got {line[:80]!r}")
            movie_id, title, genres = fields
            if movie_id in catalog:
                raise DataFormatError(path, n, f"movie {movie_id} is listed twice")
            m = _TITLE_YEAR.match(title)
            catalog[movie_id] = Item(id=movie_id, title=m.group(1) if m else title.strip(),
                                     year=int(m.group(2)) if m else None,
                                     genres=tuple(g for g in genres.split("|") if g))
    return catalog


def _read_ratings(path: Path, catalog: Dict[str, Item]) -> Iterator[Tuple[str, str, float]]:
    opener = lzma.open if path.suffix == ".xz" else open
    n = 0
    try:
        with opener(path, "rt", encoding="ascii", newline="") as f:
            for n, line in enumerate(f, 1):
                fields = line.rstrip("\r\n").split("::")
                if (len(fields) != 4 or not all(x.isdigit() for x in fields)
                        or not 1 <= int(fields[2]) <= 5):
                    raise DataFormatError(path, n, "expected 'UserID::MovieID::Rating(1-5)::Timestamp' "
                                                   f"with integers, got {line.strip()[:80]!r}")
                if fields[1] not in catalog:
                    raise DataFormatError(path, n, f"movie {fields[1]} is not in movies.dat")
                yield fields[0], fields[1], float(fields[3])
    except (UnicodeDecodeError, lzma.LZMAError, EOFError) as e:
        raise DataFormatError(path, n + 1, f"cannot decode the file ({e})") from e


def load_movielens_1m(path: Union[str, Path, None] = None) -> Dataset:
    """Load ML-1M as implicit feedback: users' rated movies ordered by timestamp."""
    root = find_movielens_1m(path)
    catalog = _read_movies(root / "movies.dat")
    ratings = _ratings_file(root)
    assert ratings is not None
    return build_dataset("ml-1m", _read_ratings(ratings, catalog), catalog)
