"""The channel manifest (``channel.json``): what a server publishes and a device trusts, signed and expiring.

It names the latest version, the chain of deltas that leads to it (file, sha256 and length of each)
and a full snapshot, and carries an expiry so a frozen or replayed channel is noticed. Devices accept
it only when signed by ``threshold`` distinct pinned keys, not expired, and not older than what they
have seen (TUF's timestamp + snapshot roles in one file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .errors import ManifestError
from .signed import Signature, SignedDocument, json_document, signed_payload_of, typed_field

CHANNEL_FORMAT = "edge-rec-channel/1"
CHANNEL_NAME = "channel.json"
MAX_CHANNEL_BYTES = 1024 * 1024


@dataclass
class Artifact:
    """A file of the channel (a delta or a snapshot) and the version(s) it connects."""

    file: str
    sha256: str
    size: int
    to_version: int
    from_version: Optional[int] = None  # None for a snapshot

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Artifact":
        a = cls(typed_field(d, "file", str, where), typed_field(d, "sha256", str, where), typed_field(d, "size", int, where),
                typed_field(d, "to_version", int, where), typed_field(d, "from_version", int, where, optional=True))
        if len(a.sha256) != 64 or any(c not in "0123456789abcdef" for c in a.sha256):
            raise ManifestError(f"{where}.sha256: not a lowercase hex sha256")
        if a.size < 0 or a.to_version < 1:
            raise ManifestError(f"{where}: size must be >= 0 and to_version >= 1")
        if a.from_version is not None and a.from_version + 1 != a.to_version:
            raise ManifestError(f"{where}: a delta goes from version N to N + 1")
        parts = a.file.split("/")
        if a.file.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in a.file:
            raise ManifestError(f"{where}.file: {a.file!r} is not a relative path inside the channel")
        return a


@dataclass
class ChannelManifest(SignedDocument):
    channel: str
    version: int            # the latest bundle version
    issued: int             # unix seconds when signed (a device's clock never trusts less than this)
    expires: int            # unix seconds after which devices treat the channel as stale
    snapshot: Artifact
    deltas: List[Artifact]
    signatures: List[Signature] = field(default_factory=list)
    format: str = CHANNEL_FORMAT
    signed_payload: Optional[bytes] = field(default=None, repr=False, compare=False)

    def chain(self, installed: int) -> Optional[List[Artifact]]:
        """The deltas from ``installed`` to the latest version, or None when the chain has a gap."""
        by_from = {d.from_version: d for d in self.deltas}
        out, v = [], installed
        while v < self.version:
            step = by_from.get(v)
            if step is None:
                return None
            out.append(step)
            v += 1
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> "ChannelManifest":
        raw = json_document(data, CHANNEL_NAME, MAX_CHANNEL_BYTES)
        w = CHANNEL_NAME
        if typed_field(raw, "format", str, w) != CHANNEL_FORMAT:
            raise ManifestError(f"{w}: format {raw['format']!r}, this runtime reads {CHANNEL_FORMAT!r}")
        m = cls(channel=typed_field(raw, "channel", str, w), version=typed_field(raw, "version", int, w),
                issued=typed_field(raw, "issued", int, w), expires=typed_field(raw, "expires", int, w),
                snapshot=Artifact.from_dict(typed_field(raw, "snapshot", dict, w), f"{w}.snapshot"),
                deltas=[Artifact.from_dict(d, f"{w}.deltas[{i}]") for i, d in enumerate(typed_field(raw, "deltas", list, w))],
                signatures=[Signature.from_dict(s, f"{w}.signatures[{i}]")
                            for i, s in enumerate(typed_field(raw, "signatures", list, w))])
        if m.snapshot.from_version is not None or m.snapshot.to_version != m.version:
            raise ManifestError(f"{w}: the snapshot must be a full copy of version {m.version}")
        if any(d.from_version is None or d.to_version > m.version for d in m.deltas):
            raise ManifestError(f"{w}: every delta needs from_version and must not pass version {m.version}")
        try:
            m.signed_payload = signed_payload_of(raw)
        except ValueError as e:
            raise ManifestError(f"{w}: {e}") from None
        return m
