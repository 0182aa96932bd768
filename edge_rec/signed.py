"""Signed JSON documents (the bundle manifest, the channel manifest): canonical JSON, ed25519 signatures
over it, and the typed field checks their parsers share."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from .errors import ManifestError


def _kind_names(kinds: tuple) -> str:
    return "/".join(k.__name__ for k in kinds)


def _is(value: Any, kinds: tuple) -> bool:
    """isinstance, except that a JSON true/false is not a number."""
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def typed_field(d: Dict[str, Any], key: str, kind, where: str, optional: bool = False):
    """``d[key]`` if it has type ``kind`` (a type or a tuple of them), else a ManifestError naming the field."""
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d or (optional and d[key] is None):
        if optional:
            return None
        raise ManifestError(f"{where}.{key}: missing")
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not _is(value, kinds):
        raise ManifestError(f"{where}.{key}: expected {_kind_names(kinds)}, got {type(value).__name__}")
    return value


def typed_list(d, key, kind, where, optional=False) -> Optional[list]:
    """``d[key]`` if it is a list whose every element has type ``kind`` (a type or a tuple of them)."""
    value = typed_field(d, key, list, where, optional)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for i, v in enumerate(value):
        if not _is(v, kinds):
            raise ManifestError(f"{where}.{key}[{i}]: expected {_kind_names(kinds)}, got {type(v).__name__}")
    return value


@dataclass
class Signature:
    key_id: str
    sig: str
    alg: str = "ed25519"

    @classmethod
    def from_dict(cls, d, where):
        return cls(typed_field(d, "key_id", str, where), typed_field(d, "sig", str, where), typed_field(d, "alg", str, where))


class SignedDocument:
    """Shared by the signed JSON documents (bundle manifest, channel manifest): dataclasses with
    ``signatures`` and ``signed_payload`` fields, signed over their canonical JSON minus the signatures."""

    def to_dict(self, signed: bool = True) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("signed_payload")
        if not signed:
            d.pop("signatures")
        return d

    def canonical_bytes(self) -> bytes:
        """The bytes a signer signs: the canonical JSON of this document without its signatures."""
        return canonical_json(self.to_dict(signed=False))

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")


def json_document(data: bytes, where: str, limit: int) -> Any:
    """A signed JSON document's raw value: at most ``limit`` bytes of UTF-8 JSON, else a ManifestError."""
    if len(data) > limit:
        raise ManifestError(f"{where} is {len(data)} bytes, over the {limit} byte limit")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(f"{where} is not UTF-8 JSON ({type(e).__name__})") from None


def signed_payload_of(raw: Dict[str, Any]) -> bytes:
    """The canonical bytes of a received document minus its signatures: what its signatures cover, fields
    this runtime does not know (added by a newer publisher) included."""
    return canonical_json({k: v for k, v in raw.items() if k != "signatures"})


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
