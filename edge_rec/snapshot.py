"""Snapshots: a whole bundle version as one pack (every file the manifest lists, plus the manifest), the
one format both the publisher (writes) and devices (unpack) use."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

from .bundle import sha256_file
from .errors import PackError
from .manifest import LOCAL_NAME, MANIFEST_NAME, Manifest
from .pack import read_pack, write_pack

KIND = "snapshot"


def write_snapshot(path: Union[str, Path], bundle_dir: Union[str, Path], manifest_bytes: bytes) -> Tuple[str, int]:
    """Pack ``bundle_dir``'s files under the signed ``manifest_bytes`` into ``path`` (temp file, fsync,
    rename); returns the pack's (sha256, size)."""
    path, bundle_dir = Path(path), Path(bundle_dir)
    manifest = Manifest.from_bytes(manifest_bytes)
    sections = {name: (bundle_dir / name).read_bytes() for name in sorted(manifest.files)}
    sections[MANIFEST_NAME] = manifest_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_pack(tmp, KIND, {"version": manifest.bundle_version}, sections)
    os.replace(tmp, path)
    return sha256_file(path)


def unpack_snapshot(pack_path: Union[str, Path], out: Union[str, Path]) -> None:
    """Write a snapshot's files into the directory ``out``, each section hash-checked as it is copied;
    section names must be plain file names (and never the device's own record, local.json)."""
    pack = read_pack(pack_path, KIND)
    for name in pack.sections:
        if "/" in name or "\\" in name or name.startswith(".") or not name or name == LOCAL_NAME:
            raise PackError(f"snapshot {Path(pack_path).name} holds a file named {name!r}")
        with open(Path(out) / name, "wb") as f:
            pack.copy_to(name, f)


def snapshot_manifest(pack_path: Union[str, Path]) -> Manifest:
    """The (unverified) manifest inside a snapshot."""
    return Manifest.from_bytes(read_pack(pack_path, KIND).read(MANIFEST_NAME))
