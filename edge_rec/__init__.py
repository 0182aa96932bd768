"""edge-rec device runtime: numpy, hnswlib, sentencepiece and a TFLite interpreter; never TensorFlow or
the converter.

    from edge_rec import EdgeRecommender
    with EdgeRecommender.open("bundle/", "edge-rec.pub", history="history.db") as rec:
        rec.recommend(k=10)
        rec.search("a 90s comedy", k=10)

On a device that follows a channel: ``SyncClient`` pulls new versions into a ``DeviceState`` directory,
``LiveRecommender`` serves whichever version is current; both trust the keys of the device's ``Root``.
"""
__version__ = "0.2.0"

from .bundle import Bundle
from .errors import (
                     BundleError,
                     DeltaError,
                     DownloadError,
                     EdgeRecError,
                     HealthCheckError,
                     HistoryError,
                     IncompatibleBundleError,
                     IntegrityError,
                     ItemIndexError,
                     ManifestError,
                     MissingFile,
                     ModelError,
                     PackError,
                     QueryError,
                     SearchUnavailableError,
                     SignatureError,
                     StaleChannel,
                     StateError,
                     SyncError,
                     ThresholdError,
)
from .golden import GoldenResult
from .history import HistoryStore
from .live import LiveRecommender
from .manifest import FORMAT_VERSION, Manifest
from .recommender import EdgeRecommender, Recommendation
from .retrieval import RetrievalPolicy
from .root import Root
from .state import DeviceState
from .sync import SyncClient, SyncStatus

__all__ = ["__version__", "EdgeRecommender", "Recommendation", "LiveRecommender", "SyncClient", "SyncStatus",
           "DeviceState", "Root", "HistoryStore", "Bundle", "Manifest", "FORMAT_VERSION", "RetrievalPolicy", "GoldenResult",
           "EdgeRecError", "BundleError", "ManifestError", "SignatureError", "ThresholdError", "IntegrityError",
           "IncompatibleBundleError", "ModelError", "ItemIndexError", "HistoryError", "SearchUnavailableError",
           "QueryError", "PackError", "StateError", "SyncError", "DownloadError", "MissingFile", "StaleChannel", "HealthCheckError",
           "DeltaError"]
