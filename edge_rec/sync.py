"""Pull updates from a channel: verify, download, apply to a staging copy, validate, switch atomically.

The client implements a TUF-style subset: a root of trust (pinned keys, or a root document followed
version by version, see :mod:`edge_rec.root`) naming the signing keys and threshold, a channel version
that only moves forward (persisted), expiry checked against max(system clock, newest trusted signing
time), size caps and deadlines on every download, resumable downloads checked against signed hashes,
deltas that apply only to their base, validation (load + golden cases) before the switch, and
automatic rollback when a switched-to version fails its health check.
"""
from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Union

from . import failpoints
from .bundle import Bundle, sha256_file
from .channel import CHANNEL_NAME, MAX_CHANNEL_BYTES, Artifact, ChannelManifest
from .delta import KIND as DELTA_KIND
from .delta import apply_delta, read_delta
from .errors import DeltaError, DownloadError, EdgeRecError, MissingFile, StaleChannel, SyncError
from .golden import check_version
from .manifest import Manifest
from .pack import intact_prefix
from .root import MAX_ROOT_BYTES, root_file
from .signing import KeyLike, check_threshold, key_id, trusted_keys, verify
from .snapshot import KIND as SNAPSHOT_KIND
from .snapshot import unpack_snapshot
from .state import DeviceState, State

CHUNK = 64 * 1024
MAX_ROOT_STEPS = 64  # newer roots accepted in one sync (each one is a small signed file)


@dataclass
class Limits:
    """Bounds on every network operation."""

    connect_timeout: float = 10.0     # seconds for the connection and each read
    min_rate: float = 16 * 1024       # bytes per second a download must average ...
    grace: float = 30.0               # ... after this many seconds (the deadline is grace + size / min_rate)
    max_file_bytes: int = 2 * 1024 ** 3
    attempts: int = 3                 # tries per file (each resumes what the last one got)


@dataclass
class SyncStatus:
    state: str            # "updated", "current", "stale", "rejected", "failed", "rolled-back", "busy"
    version: Optional[int]
    message: str

    def line(self) -> str:
        return f"[{self.state}] version {self.version if self.version is not None else '-'}: {self.message}"


def _fetch(url: str, out: Path, size: int, limits: Limits, expected_sha256: Optional[str] = None,
           exact: bool = True, progress: Callable[[int, int], None] = lambda have, size: None,
           keep_on_mismatch: Callable[[Path], int] = lambda out: 0) -> None:
    """Download ``url`` into ``out`` (appending to a partial file with a Range request), never more than
    ``size`` bytes, within the deadline; check the sha256 if given. With ``exact=False`` ``size`` is only
    a cap (for the channel manifest, whose length nothing signed announces). When the hash fails,
    ``keep_on_mismatch`` says how many leading bytes are worth keeping for the next attempt's Range request."""
    deadline = time.monotonic() + limits.grace + size / limits.min_rate
    have = out.stat().st_size if out.exists() and exact else 0
    if have > size:
        out.unlink()
        have = 0
    if have < size or size == 0 or not exact:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=limits.connect_timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # our partial file is not a prefix the server knows: start over
                out.unlink()
            raise (MissingFile if e.code in (403, 404) else DownloadError)(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
        with resp:
            mode = "ab"
            if have and resp.status == 206:
                total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
                if total != str(size) or not (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
                    out.unlink()  # the file changed on the server or the range is not ours: restart cleanly
                    raise DownloadError(f"{url}: the server's length or range changed; restarting the download")
            elif have:
                mode, have = "wb", 0  # the server ignored Range: take the whole body from the start
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and have + int(declared) > size:
                raise DownloadError(f"{url}: the server announces {have + int(declared)} bytes, the signed length is {size}")
            with open(out, mode if exact else "wb") as f:
                while True:
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{url}: too slow, gave up after {limits.grace + size / limits.min_rate:.0f} s "
                                            f"with {have} of {size} bytes (kept for resuming)")
                    try:
                        chunk = resp.read1(CHUNK)
                    except (OSError, ValueError) as e:
                        raise DownloadError(f"{url}: connection lost after {have} of {size} bytes ({e}); will resume") from None
                    if not chunk:
                        break
                    if have + len(chunk) > size:
                        f.truncate(0)
                        raise DownloadError(f"{url}: the body is longer than the {'signed' if exact else 'allowed'} "
                                            f"{size} bytes; aborted at the cap")
                    f.write(chunk)
                    if (have + len(chunk)) * 4 // max(size, 1) > have * 4 // max(size, 1):
                        progress(have + len(chunk), size)  # at each quarter
                    have += len(chunk)
                f.flush()
                os.fsync(f.fileno())
    if have != size and exact:
        raise DownloadError(f"{url}: got {have} of {size} bytes; will resume")
    if expected_sha256 is not None:
        digest, _ = sha256_file(out)
        if digest != expected_sha256:
            keep = keep_on_mismatch(out)
            if keep > 0:
                with open(out, "r+b") as f:
                    f.truncate(keep)
                    os.fsync(f.fileno())
            else:
                out.unlink()
            raise DownloadError(f"{url}: sha256 {digest[:12]}... differs from the signed {expected_sha256[:12]}...; "
                                + (f"re-fetching from byte {keep:,}" if keep > 0 else "starting over"))


class SyncClient:
    """Keeps the state directory ``root`` in step with the channel at ``url``. A query string on ``url``
    (a CDN's signed-URL policy and signature, a token) is sent with every file the channel names."""

    def __init__(self, root: Union[str, Path], url: str, keys: Union[KeyLike, Iterable[KeyLike]], threshold: int = 1,
                 limits: Optional[Limits] = None, clock: Callable[[], float] = time.time) -> None:
        self.device = DeviceState(root)
        base, _, self.query = url.partition("?")  # e.g. a CDN's signed-URL parameters, sent with every file
        self.url = base.rstrip("/")
        self.pinned = trusted_keys(keys)
        self.pinned_threshold = check_threshold(threshold, len({key_id(k) for k in self.pinned}))
        self.keys, self.threshold = self.pinned, self.pinned_threshold  # until the device's root says otherwise
        self.limits, self.clock = limits or Limits(), clock

    def sync_once(self, log: Callable[[str], None] = lambda s: None) -> SyncStatus:
        """One pull. Never raises for network or content problems: they become the returned status, which
        is also recorded in the state directory (:meth:`DeviceState.last_sync`). A sync already running on
        the same state directory (another process, a timer) makes this one return "busy" at once."""
        with self.device.sync_lock() as locked:
            if not locked:
                return SyncStatus("busy", self.device.state.current, "another sync of this device is running")
            status = self._sync(log)
            try:
                self.device.record_sync(status.state, status.version, status.message, self.url)
            except OSError as e:  # e.g. a full disk: the sync's outcome stands, only its record is stale
                log(f"could not record this sync ({e})")
            return status

    def _sync(self, log: Callable[[str], None]) -> SyncStatus:
        self.device.recover()
        try:
            self._follow_root(log)
            channel = self._channel()
            return self._update(channel, log)
        except StaleChannel as e:
            return SyncStatus("stale", self.device.state.current, str(e))
        except SyncError as e:
            return SyncStatus("failed" if isinstance(e, DownloadError) else "rejected", self.device.state.current, str(e))
        except EdgeRecError as e:
            return SyncStatus("rejected", self.device.state.current, f"{type(e).__name__}: {e}")
        except OSError as e:  # e.g. a full disk: drop what was half done, stay on the current version
            try:
                self.device.cleanup()
            except OSError:
                pass
            return SyncStatus("failed", self.device.state.current, f"I/O error: {e}")

    def _file_url(self, name: str) -> str:
        return f"{self.url}/{name}" + (f"?{self.query}" if self.query else "")

    def _follow_root(self, log: Callable[[str], None]) -> None:
        """Accept the channel's newer roots one version at a time, then trust the newest one's signing keys."""
        root = self.device.trusted_root(self.pinned, self.pinned_threshold)
        part = self.device.downloads / "root.part"
        for _ in range(MAX_ROOT_STEPS):
            try:
                _fetch(self._file_url(root_file(root.version + 1)), part, MAX_ROOT_BYTES, self.limits, exact=False)
                data = part.read_bytes()
            except MissingFile:
                break
            finally:
                part.unlink(missing_ok=True)
            root = root.verify_next(data)
            self.device.save_root(data)
            log(f"root {root.version}: signing keys {', '.join(root.key_ids())} (threshold {root.signing_threshold})")
        self.keys, self.threshold = trusted_keys(root.signing_keys), root.signing_threshold

    def _channel(self) -> ChannelManifest:
        part = self.device.downloads / f"{CHANNEL_NAME}.part"
        part.unlink(missing_ok=True)
        try:
            _fetch(self._file_url(CHANNEL_NAME), part, MAX_CHANNEL_BYTES, self.limits, exact=False)
            data = part.read_bytes()
        finally:
            part.unlink(missing_ok=True)
        failpoints.reached("verify")
        channel = ChannelManifest.from_bytes(data)
        verify(channel.signed_payload, channel.signatures, self.keys, self.threshold)
        s = self.device.state
        if s.channel is not None and channel.channel != s.channel:
            raise SyncError(f"the server offers channel {channel.channel!r}, this device follows {s.channel!r}")
        if channel.version < s.channel_version:
            raise SyncError(f"the channel offers version {channel.version}, older than version {s.channel_version} "
                            "this device already trusted (rollback or replay); ignored")
        now = max(self.clock(), s.trusted_time)
        if channel.expires <= now:
            raise StaleChannel(f"the channel manifest expired at {_utc(channel.expires)} (device time {_utc(now)}); "
                               "the server may be frozen or replayed: nothing installed")
        trusted = State(s.current, s.previous, channel.channel, max(s.channel_version, channel.version),
                        max(s.trusted_time, channel.issued), s.bad_versions)
        if trusted != s:  # a channel seen before changes nothing: state.json stays as it is
            self.device.save(trusted)
        return channel

    def _update(self, channel: ChannelManifest, log: Callable[[str], None]) -> SyncStatus:
        s = self.device.state
        if s.current is not None and channel.version <= s.current:
            self.device.clear_downloads()  # e.g. left behind when a crash came right after a switch
            return SyncStatus("current", s.current, f"up to date (channel version {channel.version})")
        if channel.version in s.bad_versions:
            return SyncStatus("failed", s.current, f"version {channel.version} failed its health check before; "
                              "waiting for a newer one")
        chain = channel.chain(s.current) if s.current is not None else None
        if chain is None or sum(d.size for d in chain) >= channel.snapshot.size:
            log(f"snapshot of version {channel.version} ({channel.snapshot.size} bytes)")
            self._install_snapshot(channel.snapshot, log)
        else:
            for step in chain:
                log(f"delta {step.from_version} -> {step.to_version} ({step.size} bytes)")
                try:
                    self._install_delta(step, log)
                except DeltaError as e:  # e.g. a delta made for another copy of this version: take the snapshot
                    log(f"{step.file}: {e}; taking the snapshot of version {channel.version} instead")
                    self._install_snapshot(channel.snapshot, log)
                    break
        return self._health_check_current(channel.version)

    def _download(self, artifact: Artifact, log: Callable[[str], None]) -> Path:
        if artifact.size > self.limits.max_file_bytes:
            raise DownloadError(f"{artifact.file} is {artifact.size} bytes, over this device's cap of "
                                f"{self.limits.max_file_bytes}")
        out = self.device.downloads / f"{artifact.sha256}.part"
        kind = SNAPSHOT_KIND if artifact.from_version is None else DELTA_KIND
        kept: List[int] = []

        def keep_on_mismatch(path: Path) -> int:
            """Keep the sections that match the pack's header; start over if that made no progress last time."""
            keep = intact_prefix(path, kind)
            keep = 0 if kept and keep <= kept[-1] else keep
            kept.append(keep)
            return keep

        last: Optional[DownloadError] = None
        for _ in range(self.limits.attempts):
            try:
                _fetch(self._file_url(artifact.file), out, artifact.size, self.limits, artifact.sha256,
                       progress=lambda have, size: log(f"{artifact.file}: {have:,} of {size:,} bytes"),
                       keep_on_mismatch=keep_on_mismatch)
                failpoints.reached("download")
                return out
            except DownloadError as e:
                last = e
                log(f"{artifact.file}: {e}")
        assert last is not None
        raise last

    def _install_snapshot(self, artifact: Artifact, log: Callable[[str], None]) -> None:
        file = self._download(artifact, log)
        stage = self.device.staging(artifact.to_version)
        unpack_snapshot(file, stage)
        self._validate_and_switch(stage, artifact.to_version)
        file.unlink(missing_ok=True)

    def _install_delta(self, artifact: Artifact, log: Callable[[str], None]) -> None:
        file = self._download(artifact, log)
        delta = read_delta(file)
        base = Bundle.open_installed(self.device.current_dir())  # vouched for by the delta's signed base hash
        target = Manifest.from_bytes(delta.manifest)
        verify(target.signed_payload, target.signatures, self.keys, self.threshold)
        if delta.to_version != artifact.to_version:
            raise SyncError(f"{artifact.file} holds version {delta.to_version}, the channel says {artifact.to_version}")
        stage = self.device.staging(artifact.to_version)
        apply_delta(base, delta, stage, target)
        self._validate_and_switch(stage, artifact.to_version)
        file.unlink(missing_ok=True)

    def _validate_and_switch(self, stage: Path, version: int) -> None:
        try:
            with check_version(stage, self.keys, self.threshold) as rec:
                got = rec.bundle.manifest.bundle_version
            if got != version:
                raise SyncError(f"the files for version {version} hold version {got}")
        except EdgeRecError as e:
            shutil.rmtree(stage, ignore_errors=True)
            bad = self.device.state
            self.device.save(State(bad.current, bad.previous, bad.channel, bad.channel_version, bad.trusted_time,
                                   sorted(set(bad.bad_versions) | {version})))
            raise SyncError(f"version {version} rejected before install: {e}") from None
        self.device.install(stage, version)

    def _health_check_current(self, version: int) -> SyncStatus:
        current = self.device.current_dir()
        try:
            check_version(current, self.keys, self.threshold).close()
        except EdgeRecError as e:
            back = self.device.rollback(str(e))
            return SyncStatus("rolled-back", back, f"version {version} failed its health check after the switch ({e}); "
                              f"rolled back to version {back}")
        return SyncStatus("updated", self.device.state.current, f"installed version {self.device.state.current}")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
