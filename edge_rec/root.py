"""The root of trust (TUF's root role): a signed document naming the keys that sign channels and bundles.

A device starts from a pinned root (or, for devices provisioned with a pinned public key, a version-0
root made from that key: root keys = signing keys = the pinned keys) and follows the channel's
``root/<N>.root.json`` files one version at a time. Root N+1 is accepted only when signed by a
threshold of root N's root keys *and* a threshold of its own, so signing keys rotate and revoke
without touching devices, root keys themselves can rotate, a stolen signing key cannot mint a root,
and an old root replayed later is refused (versions only go up by one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from .errors import ManifestError, SignatureError
from .signed import Signature, SignedDocument, json_document, signed_payload_of, typed_field, typed_list
from .signing import KeyLike, check_threshold, key_id, load_public_key, public_hex, trusted_keys, verify

ROOT_FORMAT = "edge-rec-root/1"
ROOT_DIR = "root"
MAX_ROOT_BYTES = 64 * 1024


def root_file(version: int) -> str:
    """Where root ``version`` lives in a channel."""
    return f"{ROOT_DIR}/{version}.root.json"


@dataclass
class Root(SignedDocument):
    version: int
    root_keys: List[str]        # hex ed25519 public keys that sign the next root
    root_threshold: int
    signing_keys: List[str]     # hex ed25519 public keys that sign channel.json and bundle manifests
    signing_threshold: int
    signatures: List[Signature] = field(default_factory=list)
    format: str = ROOT_FORMAT
    signed_payload: Optional[bytes] = field(default=None, repr=False, compare=False)

    @classmethod
    def make(cls, version: int, root_keys: Iterable[KeyLike], root_threshold: int, signing_keys: Iterable[KeyLike],
             signing_threshold: int) -> "Root":
        """An unsigned root from public keys (``.pub`` paths, hex, key objects)."""
        r = cls(version, sorted({public_hex(k) for k in trusted_keys(list(root_keys))}), root_threshold,
                sorted({public_hex(k) for k in trusted_keys(list(signing_keys))}), signing_threshold)
        r._check("root")
        return r

    @classmethod
    def from_pinned(cls, keys: Iterable[KeyLike], threshold: int = 1) -> "Root":
        """The version-0 root a device provisioned with pinned public keys starts from."""
        keys = list(trusted_keys(keys))
        return cls.make(0, keys, threshold, keys, threshold)

    def _check(self, where: str) -> None:
        if self.version < 0:
            raise ManifestError(f"{where}.version must be >= 0")
        for name, keys, threshold in (("root", self.root_keys, self.root_threshold),
                                      ("signing", self.signing_keys, self.signing_threshold)):
            if not keys:
                raise ManifestError(f"{where}: no {name} keys")
            try:
                for k in keys:
                    load_public_key(k)
                check_threshold(threshold, len(set(keys)))
            except SignatureError as e:
                raise ManifestError(f"{where}.{name}_keys: {e}") from None

    def key_ids(self, which: str = "signing") -> List[str]:
        return [key_id(load_public_key(k)) for k in (self.signing_keys if which == "signing" else self.root_keys)]

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "root") -> "Root":
        raw = json_document(data, where, MAX_ROOT_BYTES)
        if typed_field(raw, "format", str, where) != ROOT_FORMAT:
            raise ManifestError(f"{where}: format {raw['format']!r}, this runtime reads {ROOT_FORMAT!r}")
        r = cls(typed_field(raw, "version", int, where), typed_list(raw, "root_keys", str, where),
                typed_field(raw, "root_threshold", int, where), typed_list(raw, "signing_keys", str, where),
                typed_field(raw, "signing_threshold", int, where),
                [Signature.from_dict(s, f"{where}.signatures[{i}]") for i, s in enumerate(typed_list(raw, "signatures", dict, where))])
        r._check(where)
        r.signed_payload = signed_payload_of(raw)
        return r

    def verify_next(self, data: bytes) -> "Root":
        """Root ``version + 1`` from ``data``, if a threshold of this root's root keys and a threshold of its
        own root keys signed it; SignatureError or ManifestError otherwise."""
        where = root_file(self.version + 1)
        new = Root.from_bytes(data, where)
        if new.version != self.version + 1:
            raise SignatureError(f"{where} holds root version {new.version}, expected {self.version + 1} "
                                 "(an old root replayed, or a skipped one)")
        try:
            verify(new.signed_payload, new.signatures, self.root_keys, self.root_threshold)
        except SignatureError as e:
            raise SignatureError(f"{where} is not signed by root {self.version}'s root keys: {e}") from None
        try:
            verify(new.signed_payload, new.signatures, new.root_keys, new.root_threshold)
        except SignatureError as e:
            raise SignatureError(f"{where} is not signed by its own root keys: {e}") from None
        return new
