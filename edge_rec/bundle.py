"""Open a bundle directory and verify it before any byte reaches TFLite or hnswlib.

Order of checks: manifest size and JSON shape, the ed25519 signature(s) against pinned public keys,
then every listed file's size and sha256. A file is checked again right before it is used, so what
is loaded is exactly what was verified: hashed again unless its inode, size, mtime and ctime are still
those it had when it was hashed (any write changes its ctime, which no program can set), so a large
catalog is hashed once per open, not twice. An index a delta sync built on the device is checked
against the device's own record of it (``local.json``), written when it was built.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np

from .atomic import atomic_write_json
from .errors import IntegrityError, ManifestError
from .file_bytes import FileBytes
from .manifest import LOCAL_NAME, MANIFEST_NAME, MAX_MANIFEST_BYTES, FileEntry, Manifest
from .signing import KeyLike, trusted_keys, verify

CHUNK = 1 << 20


def sha256_file(path: Path) -> "tuple[str, int]":
    with open(path, "rb") as f:
        return _sha256_stream(f)


def _sha256_stream(f) -> "tuple[str, int]":
    h, size = hashlib.sha256(), 0
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            return h.hexdigest(), size
        h.update(chunk)
        size += len(chunk)


Fingerprint = Tuple[int, int, int, int, int]


def _fingerprint(st: os.stat_result) -> Fingerprint:
    """What any write to a file changes (ctime cannot be set back by a program)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_manifest(path: Path) -> Manifest:
    """Parse ``path/manifest.json`` (bounded size) without checking signatures."""
    file = path / MANIFEST_NAME
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(f"{file} not found: is {path} an edge-rec bundle?") from None
    except IsADirectoryError:
        raise ManifestError(f"{file} is a directory") from None
    return Manifest.from_bytes(data)


def read_local_record(path: Path, manifest: Manifest) -> Dict[str, FileEntry]:
    """The device's record of the files it built for this version (indexes grown by a delta sync)."""
    built = [i.file for i in manifest.indexes if i.built_on_device]
    if not built:
        return {}
    file = path / LOCAL_NAME
    try:
        raw = json.loads(file.read_text())
        return {name: FileEntry.from_dict(raw["files"][name], f"{LOCAL_NAME}.files") for name in built}
    except FileNotFoundError:
        raise IntegrityError(f"{file} is missing: the index this device built for version "
                             f"{manifest.bundle_version} is unaccounted for; re-sync") from None
    except (ValueError, KeyError, TypeError, ManifestError):
        raise IntegrityError(f"{file} is damaged; re-sync") from None


def write_local_record(path: Path, manifest: Manifest) -> None:
    """Record the hashes of the indexes the device built into ``path`` (part of applying a delta)."""
    files = {}
    for index in manifest.indexes:
        if index.built_on_device:
            digest, size = sha256_file(path / index.file)
            files[index.file] = {"sha256": digest, "size": size}
    atomic_write_json(path / LOCAL_NAME, {"files": files})


class Bundle:
    """A verified bundle: its manifest, the key ids that signed it, and checked access to its files."""

    def __init__(self, path: Path, manifest: Manifest, signers: List[str]) -> None:
        self.path, self.manifest, self.signers = path, manifest, signers
        self.local: Dict[str, FileEntry] = read_local_record(path, manifest)
        self._verified: Dict[str, Fingerprint] = {}  # name -> the file's fingerprint when its hash matched

    @classmethod
    def open(cls, path: Union[str, Path], public_keys: Union[KeyLike, Iterable[KeyLike]], threshold: int = 1) -> "Bundle":
        """Verify signature(s) and every file; raise a :class:`~edge_rec.errors.BundleError` subclass if anything is off."""
        path = Path(path)
        manifest = read_manifest(path)
        signers = verify(manifest.signed_payload, manifest.signatures, trusted_keys(public_keys), threshold)
        return cls._files_checked(path, manifest, signers)

    @classmethod
    def open_installed(cls, path: Union[str, Path]) -> "Bundle":
        """An installed version whose manifest a newer signed document names by its sha256 (a delta's base):
        every file checked against the manifest, the manifest's own signatures not re-checked, so a
        version signed by a key the root has since revoked can still be the base of its re-signed successor."""
        path = Path(path)
        return cls._files_checked(path, read_manifest(path), [])

    @classmethod
    def _files_checked(cls, path: Path, manifest: Manifest, signers: List[str]) -> "Bundle":
        bundle = cls(path, manifest, signers)
        for name in list(manifest.files) + list(bundle.local):
            bundle.verify_file(name)
        return bundle

    def entry(self, name: str) -> FileEntry:
        entry = self.manifest.files.get(name) or self.local.get(name)
        if entry is None:
            raise IntegrityError(f"{name} is not listed in the manifest")
        return entry

    def verify_file(self, name: str) -> Path:
        """Check one file's size and sha256 against the manifest (once: again only if it changed since);
        return its path."""
        entry = self.entry(name)
        file = self.path / name
        try:
            if self._verified.get(name) == _fingerprint(file.stat()):
                return file
            with open(file, "rb") as f:
                before = _fingerprint(os.fstat(f.fileno()))
                if before[2] != entry.size:
                    raise IntegrityError(f"{name}: {before[2]} bytes, the manifest says {entry.size}; the bundle "
                                         "is damaged or was altered")
                digest, _ = _sha256_stream(f)
                after = _fingerprint(os.fstat(f.fileno()))
        except (FileNotFoundError, IsADirectoryError):
            raise IntegrityError(f"{file} is missing; re-install or re-sync the bundle") from None
        if after != before:
            raise IntegrityError(f"{name} changed while it was being verified")
        if digest != entry.sha256:
            raise IntegrityError(f"{name}: sha256 {digest[:16]}... differs from the manifest's "
                                 f"{entry.sha256[:16]}...; the bundle is damaged or was altered")
        self._verified[name] = after
        return file

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes, exactly the verified ones: hashed after reading unless the file is unchanged
        since it was verified (same fingerprint before and after the read)."""
        entry = self.entry(name)
        with open(self.path / name, "rb") as f:
            before = _fingerprint(os.fstat(f.fileno()))
            data = f.read()
            unchanged = self._verified.get(name) == before == _fingerprint(os.fstat(f.fileno()))
        if len(data) != entry.size or not (unchanged or hashlib.sha256(data).hexdigest() == entry.sha256):
            raise IntegrityError(f"{name} changed after the bundle was verified")
        return data

    def _open_verified(self, name: str):
        """The verified file, open for reading, refused if it is not the file that was verified (same inode,
        size, mtime and ctime). A bundle's files are never rewritten in place (a sync writes a new version
        beside it), so a mapping of it keeps the verified bytes."""
        self.verify_file(name)
        f = open(self.path / name, "rb")
        if self._verified.get(name) != _fingerprint(os.fstat(f.fileno())):
            f.close()
            raise IntegrityError(f"{name} changed after the bundle was verified")
        return f

    def reader(self, name: str) -> FileBytes:
        """A verified file kept open for positional reads (see :mod:`edge_rec.file_bytes`): for data read a
        few bytes at a time, such as the ids of a request's items."""
        return FileBytes(self._open_verified(name))

    def map_array(self, name: str) -> np.ndarray:
        """A verified ``.npy`` file memory-mapped read-only: its pages are read when touched and are the kernel's
        to drop when memory is short, so a large table costs the device only the rows it uses."""
        try:
            with self._open_verified(name) as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(f))
                if dtype.hasobject or fortran:
                    raise ValueError(f"a {'Fortran-ordered' if fortran else 'object'} array")
                if not np.prod(shape):
                    return np.zeros(shape, dtype)  # nothing to map (an empty file cannot be mapped)
                # a plain ndarray view of the mapping: indexing an np.memmap runs Python code on every call
                return np.asarray(np.memmap(f, dtype=dtype, mode="r", offset=f.tell(), shape=shape))
        except ValueError as e:
            raise IntegrityError(f"{name} is not a valid .npy array: {e}") from None

    def load_array(self, name: str) -> np.ndarray:
        """A verified ``.npy`` file (no pickles)."""
        import io
        try:
            return np.load(io.BytesIO(self.read_bytes(name)), allow_pickle=False)
        except ValueError as e:
            raise IntegrityError(f"{name} is not a valid .npy array: {e}") from None
