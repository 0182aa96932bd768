"""Reader for the generic format: an interactions file and an items file, CSV or TSV with a header.

interactions: columns ``user``, ``item``, ``timestamp`` and optionally ``weight``. Timestamps are
numbers (e.g. Unix seconds) or ISO-8601 dates. Events with ``weight <= 0`` are dropped (negative
or no feedback); every other event is one implicit interaction.
items: column ``item`` and optionally ``title``, ``year``, ``genres`` (``|``-separated); every other
column is extra text the language model embeds (e.g. ``description``). Every interacted item must
be listed.
"""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

from .dataset import Dataset, Item, build_dataset
from .errors import DataFormatError, DatasetNotFoundError

PathLike = Union[str, Path]


def _delimiter(path: Path, delimiter: Optional[str]) -> str:
    if delimiter:
        return delimiter
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _rows(path: Path, delimiter: Optional[str], required: Tuple[str, ...]) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Yield (line number, row) with the header checked and every row's field count checked."""
    if not path.is_file():
        raise DatasetNotFoundError(f"file {path.name}", [path])
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=_delimiter(path, delimiter))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataFormatError(path, 1, "the file is empty; expected a header line") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, 1, f"header {header} lacks column(s) {missing}")
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    raise DataFormatError(path, reader.line_num,
                                          f"expected {len(header)} fields, got {len(row)}: {row[:6]}")
                yield reader.line_num, dict(zip(header, (v.strip() for v in row)))
        except UnicodeDecodeError as e:
            raise DataFormatError(path, reader.line_num + 1, f"not UTF-8 ({e})") from e
        except csv.Error as e:
            raise DataFormatError(path, reader.line_num, f"malformed CSV ({e})") from e


def _timestamp(value: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DataFormatError(path, line, f"timestamp {value!r} is neither a number nor ISO-8601") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def read_items(path: PathLike, delimiter: Optional[str] = None) -> Dict[str, Item]:
    """Read an items file into ``{item id: Item}``, in file order."""
    path = Path(path)
    catalog: Dict[str, Item] = {}
    for line, row in _rows(path, delimiter, ("item",)):
        item_id = row.pop("item")
        if not item_id:
            raise DataFormatError(path, line, "empty item id")
        if item_id in catalog:
            raise DataFormatError(path, line, f"item {item_id!r} is listed twice")
        year = row.pop("year", "")
        if year and not year.lstrip("-").isdigit():
            raise DataFormatError(path, line, f"year {year!r} is not an integer")
        genres = tuple(g.strip() for g in row.pop("genres", "").split("|") if g.strip())
        catalog[item_id] = Item(id=item_id, title=row.pop("title", ""), year=int(year) if year else None,
                                genres=genres, extra=row)
    return catalog


def _events(path: Path, delimiter: Optional[str], catalog: Dict[str, Item]) -> Iterator[Tuple[str, str, float]]:
    for line, row in _rows(path, delimiter, ("user", "item", "timestamp")):
        if not row["user"] or not row["item"]:
            raise DataFormatError(path, line, "empty user or item id")
        if row["item"] not in catalog:
            raise DataFormatError(path, line, f"item {row['item']!r} is not in the items file")
        weight = row.get("weight", "")
        if weight:
            try:
                w = float(weight)
            except ValueError:
                raise DataFormatError(path, line, f"weight {weight!r} is not a number") from None
            if w <= 0:
                continue
        yield row["user"], row["item"], _timestamp(row["timestamp"], path, line)


def load_interactions(interactions: PathLike, items: PathLike, delimiter: Optional[str] = None,
                      name: Optional[str] = None) -> Dataset:
    """Load the generic format. ``delimiter`` defaults to tab for .tsv/.tab files, comma otherwise."""
    interactions, items = Path(interactions), Path(items)
    catalog = read_items(items, delimiter)
    return build_dataset(name or interactions.stem, _events(interactions, delimiter, catalog), catalog)
