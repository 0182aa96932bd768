"""Open a bundle directory and verify it before any byte reaches TFLite or hnswlib.

Order of checks: manifest size and JSON shape, the ed25519 signature(s) against pinned public keys,
then every listed file's size and sha256. A file is hashed again right before it is used, so what
is loaded is exactly what was verified. An index a delta sync built on the device is checked against
the device's own record of it (``local.json``), written when it was built.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Iterable, List, Union

import numpy as np

from .atomic import atomic_write_json
from .errors import IntegrityError, ManifestError
from .manifest import LOCAL_NAME, MANIFEST_NAME, MAX_MANIFEST_BYTES, FileEntry, Manifest
from .signing import KeyLike, trusted_keys, verify

CHUNK = 1 << 20


def sha256_file(path: Path) -> "tuple[str, int]":
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return h.hexdigest(), size
            h.update(chunk)
            size += len(chunk)


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
        """Check one file's size and sha256 against the manifest; return its path."""
        entry = self.entry(name)
        file = self.path / name
        if not file.is_file():
            raise IntegrityError(f"{file} is missing; re-install or re-sync the bundle")
        if file.stat().st_size != entry.size:
            raise IntegrityError(f"{name}: {file.stat().st_size} bytes, the manifest says {entry.size}; the bundle "
                                 "is damaged or was altered")
        digest, _ = sha256_file(file)
        if digest != entry.sha256:
            raise IntegrityError(f"{name}: sha256 {digest[:16]}... differs from the manifest's "
                                 f"{entry.sha256[:16]}...; the bundle is damaged or was altered")
        return file

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes, hashed after reading so they are exactly the verified ones."""
        entry = self.entry(name)
        data = (self.path / name).read_bytes()
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(f"{name} changed after the bundle was verified")
        return data

    def load_array(self, name: str) -> np.ndarray:
        """A verified ``.npy`` file (no pickles)."""
        import io
        try:
            return np.load(io.BytesIO(self.read_bytes(name)), allow_pickle=False)
        except ValueError as e:
            raise IntegrityError(f"{name} is not a valid .npy array: {e}") from None
