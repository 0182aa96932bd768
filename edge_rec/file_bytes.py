"""A file's bytes read where they are asked for (one positional read per slice), for data looked up a few
bytes at a time: the process holds none of it, and the kernel's page cache keeps what it reads only while
memory is free. A mapping would do the same work but count every page it touched (and the pages the
kernel maps around each one) in the process's resident memory."""
from __future__ import annotations

import os
from typing import BinaryIO


class FileBytes:
    """``len()`` and ``[a:b]`` slices of an open file, as ``bytes`` would give them (thread-safe: ``pread``)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file  # kept open (and closed with this object): its descriptor serves every read
        self._fd = file.fileno()
        self._size = os.fstat(self._fd).st_size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, span: slice) -> bytes:
        if not isinstance(span, slice) or span.step not in (None, 1):
            raise TypeError("FileBytes reads contiguous slices only")
        start, stop, _ = span.indices(self._size)
        return os.pread(self._fd, stop - start, start) if stop > start else b""

    def close(self) -> None:
        self._file.close()
