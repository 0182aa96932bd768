"""Imports TensorFlow and Keras 3 quietly; the one place the converter gets them from."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

try:
    import keras
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("this part of edge-rec needs the converter extra: pip install 'edge-rec[converter]'") from e

__all__ = ["tf", "keras"]
