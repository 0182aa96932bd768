"""Where a channel's files live: a local directory or S3-compatible object storage.

A channel is static files. Packs (snapshots and deltas) are content-addressed and immutable, so they
can be uploaded at any time and cached forever; ``channel.json`` is the one mutable file. Publishing
uploads the new packs first and replaces ``channel.json`` last, with a compare-and-swap on the version
the publisher started from: of two publishers working at once, the second to finish gets a
:class:`ChannelConflict` and the channel stays as the first one left it (S3 conditional writes,
``If-Match`` / ``If-None-Match``; a lock file and a content check for a local directory).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Union
from urllib.parse import urlparse

from edge_rec.atomic import atomic_write_bytes, fsync_dir
from edge_rec.channel import CHANNEL_NAME

from .errors import ConverterError

# Cache-Control for a CDN in front of the store: packs never change once written, channel.json does.
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
CHANNEL_CACHE = "public, max-age=60"
PACK_FOLDERS = ("snapshots", "deltas")


class ChannelStoreError(ConverterError):
    """The channel's storage cannot be read or written."""


class ChannelConflict(ChannelStoreError):
    """channel.json changed while this publisher worked (another publisher finished first)."""


@dataclass(frozen=True)
class StoredFile:
    """A pack in the store: its name inside the channel and when it was written (unix seconds)."""

    name: str
    modified: float
    size: int


@dataclass(frozen=True)
class ChannelRead:
    """channel.json as read, and the tag a compare-and-swap must present (None: there was none)."""

    data: Optional[bytes]
    tag: Optional[str]


class LocalStore:
    """A channel in a local directory (served by ``edge-rec serve``, nginx, or synced to a host)."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def read_channel(self) -> ChannelRead:
        try:
            data = (self.root / CHANNEL_NAME).read_bytes()
        except FileNotFoundError:
            return ChannelRead(None, None)
        except OSError as e:
            raise ChannelStoreError(f"cannot read {self.root / CHANNEL_NAME}: {e}") from None
        return ChannelRead(data, hashlib.sha256(data).hexdigest())

    def read(self, name: str) -> Optional[bytes]:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ChannelStoreError(f"cannot read {self.root / name}: {e}") from None

    def create(self, name: str, data: bytes) -> None:
        """Write a new immutable file; ChannelConflict if it exists (another publisher wrote it first)."""
        with self._lock():
            if (self.root / name).exists():
                raise ChannelConflict(f"{self.root / name} exists already (another publisher wrote it first)")
            atomic_write_bytes(self.root / name, data)

    def download(self, name: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.root / name, dest)
        except OSError as e:
            raise ChannelStoreError(f"cannot read {self.root / name}: {e}") from None

    def upload(self, name: str, src: Path) -> None:
        """Place an immutable pack (written to a temporary sibling, fsynced, renamed)."""
        target = self.root / name
        if target.is_file():
            return  # content-addressed: the same name is the same bytes
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)

    def commit_channel(self, data: bytes, expected: ChannelRead) -> None:
        with self._lock():
            if self.read_channel().tag != expected.tag:
                raise ChannelConflict(f"{self.root / CHANNEL_NAME} changed while publishing (another publisher "
                                      "finished first); publish again on top of it")
            atomic_write_bytes(self.root / CHANNEL_NAME, data)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        import fcntl
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def packs(self) -> List[StoredFile]:
        out = []
        for folder in PACK_FOLDERS:
            for f in sorted((self.root / folder).glob("*.pack")) if (self.root / folder).is_dir() else []:
                st = f.stat()
                out.append(StoredFile(f"{folder}/{f.name}", st.st_mtime, st.st_size))
        return out

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


class S3Store:
    """A channel under ``s3://bucket/prefix`` on AWS S3 or any S3-compatible store (``endpoint_url``).

    Devices read it over plain HTTP(S) (GET with Range) from the bucket's endpoint or a CDN in front of
    it; only the publisher holds credentials (boto3's usual sources: environment, profile, role).
    """

    def __init__(self, url: str, endpoint_url: Optional[str] = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ChannelStoreError(f"{url!r} is not an s3://bucket[/prefix] address")
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.location = url
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ChannelStoreError("publishing to S3 needs boto3: pip install 'edge-rec[converter]'") from None
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url,
                                config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        from botocore.exceptions import BotoCoreError, ClientError
        self._errors = (BotoCoreError, ClientError)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _code(self, e: Exception) -> str:
        return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))

    def read_channel(self) -> ChannelRead:
        try:
            r = self._s3.get_object(Bucket=self.bucket, Key=self._key(CHANNEL_NAME))
            return ChannelRead(r["Body"].read(), r["ETag"])
        except self._errors as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return ChannelRead(None, None)
            raise ChannelStoreError(f"cannot read {self.location}/{CHANNEL_NAME}: {e}") from None

    def read(self, name: str) -> Optional[bytes]:
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except self._errors as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return None
            raise ChannelStoreError(f"cannot read {self.location}/{name}: {e}") from None

    def create(self, name: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*",
                                CacheControl=IMMUTABLE_CACHE, ContentType="application/json")
        except self._errors as e:
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise ChannelConflict(f"{self.location}/{name} exists already (another publisher wrote it first)") from None
            raise ChannelStoreError(f"cannot write {self.location}/{name}: {e}") from None

    def download(self, name: str, dest: Path) -> None:
        try:
            self._s3.download_file(self.bucket, self._key(name), str(dest))
        except self._errors as e:
            raise ChannelStoreError(f"cannot download {self.location}/{name}: {e}") from None

    def upload(self, name: str, src: Path) -> None:
        try:
            self._s3.upload_file(str(src), self.bucket, self._key(name), ExtraArgs={
                "CacheControl": IMMUTABLE_CACHE, "ContentType": "application/octet-stream"})
        except self._errors as e:
            raise ChannelStoreError(f"cannot upload {self.location}/{name}: {e}") from None

    def commit_channel(self, data: bytes, expected: ChannelRead) -> None:
        condition = {"IfMatch": expected.tag} if expected.tag else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(CHANNEL_NAME), Body=data, CacheControl=CHANNEL_CACHE,
                                ContentType="application/json", **condition)
        except self._errors as e:
            if self._code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise ChannelConflict(f"{self.location}/{CHANNEL_NAME} changed while publishing (another publisher "
                                      "finished first); publish again on top of it") from None
            raise ChannelStoreError(f"cannot write {self.location}/{CHANNEL_NAME}: {e}") from None

    def packs(self) -> List[StoredFile]:
        out = []
        try:
            for folder in PACK_FOLDERS:
                pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                           Prefix=self._key(f"{folder}/"))
                for page in pages:
                    for obj in page.get("Contents", []):
                        name = obj["Key"][len(self._key("")):]
                        if name.endswith(".pack"):
                            out.append(StoredFile(name, obj["LastModified"].timestamp(), obj["Size"]))
        except self._errors as e:
            raise ChannelStoreError(f"cannot list {self.location}: {e}") from None
        return out

    def delete(self, name: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))
        except self._errors as e:
            raise ChannelStoreError(f"cannot delete {self.location}/{name}: {e}") from None


ChannelStore = Union[LocalStore, S3Store]


def open_store(location: Union[str, Path, LocalStore, S3Store], endpoint_url: Optional[str] = None) -> ChannelStore:
    """``s3://bucket/prefix`` (with an optional S3-compatible ``endpoint_url``) or a local directory."""
    if isinstance(location, (LocalStore, S3Store)):
        return location
    if str(location).startswith("s3://"):
        return S3Store(str(location), endpoint_url)
    if endpoint_url:
        raise ChannelStoreError("--endpoint-url is for s3:// channels")
    return LocalStore(location)


@dataclass
class PruneResult:
    kept: List[str]
    removed: List[str]


def prune(store: ChannelStore, keep_days: float, named: List[str], now: Optional[float] = None) -> PruneResult:
    """Remove packs older than ``keep_days`` that ``named`` (the current channel.json's files) does not list.

    A device, or a CDN, may still be fetching a pack the previous channel.json named: the retention
    window is how long after a newer channel.json that stays possible (its max-age plus the longest sync).
    """
    if keep_days < 0:
        raise ChannelStoreError("the retention window must be >= 0 days")
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    kept, removed = [], []
    for f in store.packs():
        if f.name in named or f.modified > cutoff:
            kept.append(f.name)
        else:
            store.delete(f.name)
            removed.append(f.name)
    return PruneResult(kept, removed)
