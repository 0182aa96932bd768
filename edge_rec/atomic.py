"""Crash-safe file writes: write to a temporary sibling, fsync, rename over the target, fsync the directory.

A reader (or a device after a power cut) sees either the old file or the new one, never a torn write.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """Flush a directory entry (a rename or a new file) to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as indented, key-sorted UTF-8 JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def fsync_tree(root: PathLike) -> None:
    """fsync every file and directory under ``root`` (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def replace_dir(staged: PathLike, target: PathLike) -> None:
    """Move a fully written directory ``staged`` to ``target``, replacing any previous one.

    The staged tree is fsynced first. An existing target is renamed aside, then removed, so at every
    moment ``target`` is either the complete old tree or the complete new one (or briefly absent).
    """
    staged, target = Path(staged), Path(target)
    fsync_tree(staged)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staged, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(target: PathLike) -> Path:
    """A new empty directory beside ``target`` (same filesystem, so the final rename is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
