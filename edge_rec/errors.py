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


class DeltaError(EdgeRecError):
    """A delta is malformed, or does not apply to this base, or does not produce the version it claims."""


class HealthCheckError(EdgeRecError):
    """A version fails its health check (golden cases not reproduced)."""


class PackError(EdgeRecError):
    """A pack file is truncated, malformed, or a section's bytes do not match its hash."""


class QueryError(EdgeRecError, ValueError):
    """A query that cannot be searched: not text, empty, or without a single letter or digit."""


class ThresholdError(SignatureError, ValueError):
    """A signature threshold that is not an integer between 1 and the number of pinned keys."""


class StateError(EdgeRecError):
    """The device state directory is damaged or inconsistent."""


class SyncError(EdgeRecError):
    """A sync step failed; the device stays on the version it had."""


class DownloadError(SyncError):
    """A download failed, exceeded its cap or deadline, or its bytes do not match the signed hash."""


class MissingFile(DownloadError):
    """The server has no such file (HTTP 404, or 403 from a bucket that hides missing keys)."""


class StaleChannel(SyncError):
    """The channel manifest has expired: the device keeps what it has and reports 'stale'."""
