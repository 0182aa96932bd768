"""On-device search, workstation side: generated queries, the SentencePiece tokenizer, the int8 query
encoder distilled from the language model, the search space (the publisher's search model), measurements.

Importing this package imports nothing heavy; ``build_search`` and the encoder import TensorFlow.
"""
from .queries import Query, make_queries, split_items

__all__ = ["Query", "make_queries", "split_items", "SearchConfig", "SearchBuild", "build_search", "SearchModel"]


def __getattr__(name: str):
    if name in ("SearchConfig", "SearchBuild", "build_search"):
        from . import build
        return getattr(build, name)
    if name == "SearchModel":
        from .model import SearchModel
        return SearchModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
