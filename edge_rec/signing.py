"""ed25519 keys and signatures over canonical manifest bytes.

Keys are stored as hex text: the private key (32 bytes, keep it secret, mode 0600) and the public key
(32 bytes) that devices pin. A key's id is the first 16 hex digits of the sha256 of its public bytes.
"""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Iterable, List, Sequence, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .atomic import atomic_write_bytes
from .errors import SignatureError, ThresholdError
from .signed import Signature

KeyLike = Union[str, bytes, Path, Ed25519PublicKey]


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def public_hex(key: KeyLike) -> str:
    """A public key as the 64 hex digits ``.pub`` files and root documents hold."""
    return _raw(load_public_key(key)).hex()


def _raw(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _hex32(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise SignatureError(f"{what} is not hex text") from None
    if len(raw) != 32:
        raise SignatureError(f"{what} must be 32 bytes (64 hex digits), got {len(raw)} bytes")
    return raw


def generate_keypair(directory: Union[str, Path], name: str = "edge-rec") -> "tuple[Path, Path]":
    """Write ``<name>.key`` (private, mode 0600) and ``<name>.pub`` (public) into ``directory``."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    directory = Path(directory)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    atomic_write_bytes(key_path, raw.hex().encode() + b"\n")
    os.chmod(key_path, 0o600)
    atomic_write_bytes(pub_path, _raw(private.public_key()).hex().encode() + b"\n")
    return key_path, pub_path


def load_private_key(path: Union[str, Path]) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_hex32(Path(path).read_text(), f"private key {path}"))


def load_public_key(key: KeyLike) -> Ed25519PublicKey:
    """A public key from a ``.pub`` file path, hex text, raw 32 bytes, or a key object."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes):
        raw = key if len(key) == 32 else _hex32(key.decode("ascii", "replace"), "public key")
    elif isinstance(key, Path) or (isinstance(key, str) and os.path.isfile(key)):
        try:
            raw = _hex32(Path(key).read_text(), f"public key file {key}")
        except OSError as e:
            raise SignatureError(f"cannot read the public key file {key}: {e.strerror}") from None
    elif isinstance(key, str) and ("/" in key or key.endswith(".pub")):
        raise SignatureError(f"public key file {key} not found")
    else:
        raw = _hex32(str(key), "public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def trusted_keys(keys: Union[KeyLike, Iterable[KeyLike]]) -> List[Ed25519PublicKey]:
    """Pinned public keys, normalised once: one key or several (``.pub`` paths, hex, raw bytes, key objects)."""
    many = not isinstance(keys, (str, bytes, Path, Ed25519PublicKey)) and isinstance(keys, Iterable)
    return [load_public_key(k) for k in (keys if many else [keys])]


def check_threshold(threshold: object, n_keys: int) -> int:
    """``threshold`` if it is an integer in [1, n_keys]; a threshold of 0 would accept unsigned documents."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= max(n_keys, 1):
        raise ThresholdError(f"the signature threshold must be an integer from 1 to the number of pinned keys "
                             f"({n_keys}), got {threshold!r}")
    return threshold


def sign(message: bytes, private: Ed25519PrivateKey) -> Signature:
    return Signature(key_id=key_id(private.public_key()), sig=base64.b64encode(private.sign(message)).decode())


def verify(message: bytes, signatures: Sequence[Signature], trusted: Union[KeyLike, Iterable[KeyLike]],
           threshold: int = 1) -> List[str]:
    """Check that at least ``threshold`` distinct trusted keys signed ``message``; return their ids.

    Signatures by unknown keys are ignored; several signatures by one key count once. The threshold
    must be from 1 to the number of distinct trusted keys (ThresholdError otherwise).
    """
    keys = {key_id(k): k for k in trusted_keys(trusted)}
    if not keys:
        raise SignatureError("no trusted public key given: pin the publisher's key (the .pub file)")
    check_threshold(threshold, len(keys))
    good = set()
    for s in signatures:
        if s.alg != "ed25519" or s.key_id not in keys or s.key_id in good:
            continue
        try:
            keys[s.key_id].verify(base64.b64decode(s.sig, validate=True), message)
        except (InvalidSignature, ValueError):
            raise SignatureError(f"the signature by key {s.key_id} does not match the manifest: it was "
                                 "altered after signing, or signed by another key with the same id") from None
        good.add(s.key_id)
    if len(good) < threshold:
        found = ", ".join(sorted({s.key_id for s in signatures})) or "none"
        raise SignatureError(f"{len(good)} valid signature(s) by trusted keys, {threshold} required "
                             f"(signed by: {found}; trusted: {', '.join(sorted(keys))})")
    return sorted(good)
