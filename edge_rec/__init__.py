"""edge-rec device runtime: numpy, hnswlib and a TFLite interpreter; never TensorFlow or the converter."""
__version__ = "0.1.0"

__all__ = ["__version__"]
