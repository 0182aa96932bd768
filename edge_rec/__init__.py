"""edge-rec device runtime: numpy, hnswlib and a TFLite interpreter; never TensorFlow or the converter.

    from edge_rec import EdgeRecommender
    rec = EdgeRecommender.open("bundle/", "edge-rec.pub", history="history.db")
    rec.recommend(k=10)
"""
__version__ = "0.1.0"

from .bundle import Bundle
from .errors import (
                     BundleError,
                     EdgeRecError,
                     HistoryError,
                     IncompatibleBundleError,
                     IntegrityError,
                     ItemIndexError,
                     ManifestError,
                     ModelError,
                     SearchUnavailableError,
                     SignatureError,
)
from .golden import GoldenResult
from .history import HistoryStore
from .manifest import FORMAT_VERSION, Manifest
from .query import QueryError
from .recommender import EdgeRecommender, Recommendation
from .retrieval import RetrievalPolicy

__all__ = ["__version__", "EdgeRecommender", "Recommendation", "GoldenResult", "HistoryStore", "Bundle", "Manifest",
           "FORMAT_VERSION", "EdgeRecError", "BundleError", "ManifestError", "SignatureError", "IntegrityError",
           "IncompatibleBundleError", "ModelError", "ItemIndexError", "HistoryError", "SearchUnavailableError", "QueryError",
           "RetrievalPolicy"]
