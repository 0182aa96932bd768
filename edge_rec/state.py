"""The device's installed versions and trust state, switched atomically.

Layout of a state directory::

    state.json          current / previous version, the highest channel version and newest signing time
                        seen (anti-rollback, anti-freeze), versions that failed their health check
    root.json           the newest root of trust accepted (absent: the pinned keys are the root, version 0)
    last_sync.json      when the last sync ran and how it ended (for status displays)
    .sync.lock          held (flock) while a sync runs, so two syncs never overlap
    versions/<N>/       complete bundle directories (the current one and the previous one, for rollback)
    downloads/          partial downloads, resumed by the next sync

Every change of ``state.json`` is write-temp, fsync, rename, fsync-dir: after a crash the device is on
the old state or the new one. A version directory is complete (fsynced) before state.json names it.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from . import failpoints
from .atomic import atomic_write_bytes, atomic_write_json, fsync_dir, fsync_tree
from .bundle import read_manifest
from .errors import EdgeRecError, StateError
from .root import Root
from .signing import KeyLike

STATE_FORMAT = "edge-rec-device-state/1"
STATE_NAME = "state.json"
LAST_SYNC_NAME = "last_sync.json"
ROOT_NAME = "root.json"
LOCK_NAME = ".sync.lock"


@dataclass
class State:
    current: Optional[int] = None
    previous: Optional[int] = None
    channel: Optional[str] = None
    channel_version: int = 0          # highest channel version accepted: older ones are rejected
    trusted_time: int = 0             # newest 'issued' time accepted: the clock never counts as earlier
    bad_versions: List[int] = field(default_factory=list)
    format: str = STATE_FORMAT


class DeviceState:
    """One device's state directory (see the module docstring)."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.downloads = self.root / "downloads"
        for d in (self.root, self.versions, self.downloads):
            d.mkdir(parents=True, exist_ok=True)
        self.state = self.load()

    @property
    def state_file(self) -> Path:
        return self.root / STATE_NAME

    def load(self) -> State:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as e:
            raise StateError(f"{self.state_file} is unreadable ({e}); move it away to re-provision the device") from None
        if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
            raise StateError(f"{self.state_file} is not an edge-rec device state")
        try:
            state = State(**raw)
        except TypeError as e:
            raise StateError(f"{self.state_file}: {e}") from None
        if any(v is not None and (type(v) is not int or v < 0) for v in (state.current, state.previous)):
            raise StateError(f"{self.state_file}: current/previous must be version numbers")
        return state

    def save(self, state: State) -> None:
        try:
            atomic_write_json(self.state_file, asdict(state))
        finally:  # whether or not the rename (or the fsync after it) went through, the file is the truth
            self.state = self.load()

    def version_dir(self, version: int) -> Path:
        return self.versions / str(version)

    def current_dir(self) -> Optional[Path]:
        return None if self.state.current is None else self.version_dir(self.state.current)

    def staging(self, version: int) -> Path:
        """A fresh, empty staging directory for ``version`` (removed again by :meth:`recover` if abandoned)."""
        path = self.versions / f".{version}.staging"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        return path

    def provision(self, bundle_dir: Union[str, Path]) -> int:
        """Install a bundle directory shipped with the device (in its image, say) as the current version,
        from which syncs continue; returns its version. Its signature is checked when it is used."""
        version = read_manifest(Path(bundle_dir)).bundle_version
        stage = self.staging(version)
        shutil.copytree(bundle_dir, stage, dirs_exist_ok=True)
        self.install(stage, version)
        return version

    def ensure(self, bundle_dir: Optional[Union[str, Path]]) -> Optional[int]:
        """The current version; a device with none gets ``bundle_dir`` (the bundle shipped with it) first."""
        if self.state.current is None and bundle_dir is not None:
            return self.provision(bundle_dir)
        return self.state.current

    def install(self, staged: Path, version: int) -> None:
        """Make a validated staging directory version ``version`` and switch to it (previous kept)."""
        fsync_tree(staged)
        target = self.version_dir(version)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
        fsync_dir(self.versions)
        failpoints.reached("switch")
        old = self.state
        keep_previous = old.current if old.current != version else old.previous
        self.save(State(version, keep_previous, old.channel, old.channel_version, old.trusted_time, old.bad_versions))
        failpoints.reached("cleanup")
        self.cleanup()

    def rollback(self, reason: str, mark_bad: bool = True) -> Optional[int]:
        """Switch back to the previous version and (unless ``mark_bad`` is false) remember the current one
        as bad, so it is not installed again; returns the version now current."""
        s = self.state
        bad = sorted(set(s.bad_versions) | ({s.current} if s.current is not None and mark_bad else set()))
        self.save(State(s.previous, None, s.channel, s.channel_version, s.trusted_time, bad))
        self.cleanup()
        return self.state.current

    def cleanup(self) -> None:
        """Remove everything but the current and previous versions: staging leftovers, old versions."""
        self.state = self.load()
        keep = {str(v) for v in (self.state.current, self.state.previous) if v is not None}
        for entry in self.versions.iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                failpoints.reached("cleanup-removed")
        for entry in self.root.iterdir():
            if entry.name.startswith(f".{STATE_NAME}.") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    @contextmanager
    def sync_lock(self) -> Iterator[bool]:
        """An exclusive, non-blocking lock on this state directory for one sync: yields False when another
        process or thread holds it. Released on exit, and by the OS if the holder dies."""
        import fcntl
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def trusted_root(self, pinned: Union[KeyLike, List[KeyLike]], threshold: int = 1) -> Root:
        """The root this device trusts: the newest one a sync accepted, else the one its pinned keys make."""
        try:
            data = (self.root / ROOT_NAME).read_bytes()
        except FileNotFoundError:
            return Root.from_pinned(pinned if isinstance(pinned, list) else [pinned], threshold)
        try:
            return Root.from_bytes(data, str(self.root / ROOT_NAME))
        except EdgeRecError as e:
            raise StateError(f"the device's trusted root is damaged ({e}); re-provision the device") from None

    def save_root(self, data: bytes) -> None:
        """Trust ``data`` (a root already verified against the previous one) from now on."""
        atomic_write_bytes(self.root / ROOT_NAME, data)

    def record_sync(self, state: str, version: Optional[int], message: str, url: str) -> None:
        """Record how a sync ended (atomically), for :meth:`last_sync`."""
        atomic_write_json(self.root / LAST_SYNC_NAME, {"time": time.time(), "state": state, "version": version,
                                                       "message": message, "url": url})

    def last_sync(self) -> Optional[Dict[str, Any]]:
        """The last recorded sync ({"time", "state", "version", "message", "url"}), or None."""
        try:
            value = json.loads((self.root / LAST_SYNC_NAME).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def clear_downloads(self) -> None:
        for entry in self.downloads.iterdir():
            entry.unlink(missing_ok=True)

    def recover(self) -> None:
        """After a crash: drop half-built versions and temporary files; a current version whose directory
        is gone (cannot happen with intact storage) falls back to the previous one."""
        failpoints.reached("recover")
        s = self.state
        if s.current is not None and not (self.version_dir(s.current) / "manifest.json").is_file():
            self.rollback(f"version {s.current}'s directory is missing", mark_bad=False)
        self.cleanup()
