"""The runtime's exceptions. Every message says what is wrong and, where it can, what to do."""


class EdgeRecError(Exception):
    """Base class of every error edge_rec raises on purpose."""


class BundleError(EdgeRecError):
    """A bundle cannot be used."""


class ManifestError(BundleError):
    """manifest.json is missing, not JSON, or lacks / mistypes a field."""


class SignatureError(BundleError):
    """The manifest's signature is missing, malformed, or not made by a trusted key."""


class IntegrityError(BundleError):
    """A file of the bundle is missing or its size / sha256 differs from the manifest."""


class IncompatibleBundleError(BundleError):
    """The bundle is intact but this runtime cannot use it (format version, dims, space, quantization)."""


class ModelError(EdgeRecError):
    """The TFLite model cannot be loaded or run."""


class ItemIndexError(EdgeRecError):
    """The item index cannot be loaded or queried."""


class HistoryError(EdgeRecError):
    """The on-device history store cannot be read or written."""


class SearchUnavailableError(EdgeRecError):
    """The bundle has no on-device search (no tokenizer and query encoder)."""
