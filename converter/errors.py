"""The converter's errors. Every error it raises on purpose derives from :class:`ConverterError` (itself
an :class:`edge_rec.errors.EdgeRecError`), which the ``edge-rec`` command reports in one line."""
from __future__ import annotations

from edge_rec.errors import EdgeRecError


class ConverterError(EdgeRecError):
    """Base class of every error the converter raises on purpose."""
