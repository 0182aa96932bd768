"""Errors raised while reading interaction logs and item catalogs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ConverterError


class DataError(ConverterError):
    """Base class for every data-loading problem."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A data set is not where it was looked for."""

    def __init__(self, what: str, searched: Sequence[Path], hint: str = "") -> None:
        places = "\n".join(f"  - {p}" for p in searched)
        super().__init__(f"{what} not found. Looked in:\n{places}" + (f"\n{hint}" if hint else ""))
        self.searched = list(searched)


class DataFormatError(DataError, ValueError):
    """A line of an input file does not follow its format; names the file and line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}, line {line}: {problem}")
        self.path, self.line, self.problem = Path(path), line, problem
