"""Interaction logs and item catalogs: readers (MovieLens-1M, the generic CSV/TSV format) and the split."""
from .dataset import Dataset, Item, build_dataset
from .errors import DataError, DataFormatError, DatasetNotFoundError
from .generic import load_interactions, read_items
from .movielens import find_movielens_1m, load_movielens_1m
from .split import REPEAT_SHARE, EvalSet, Split, choose_seen_items, leave_one_out, repeat_share

__all__ = ["Dataset", "Item", "build_dataset", "DataError", "DataFormatError", "DatasetNotFoundError",
           "load_interactions", "read_items", "find_movielens_1m", "load_movielens_1m",
           "EvalSet", "Split", "leave_one_out", "REPEAT_SHARE", "choose_seen_items", "repeat_share"]
