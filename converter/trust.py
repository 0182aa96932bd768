"""The publisher's side of the root of trust: write the channel's next root (``edge-rec root init / rotate``).

Each root names the keys that sign channels and bundles (signing keys) and the keys that sign the next
root (root keys). Root N+1 must carry a threshold of signatures by root N's root keys and by its own, so
a rotation is signed by the old root keys and the new ones; the first root (version 1) is signed by the
keys devices were provisioned with (their pinned keys act as root 0) unless it starts a new fleet.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

from edge_rec.errors import EdgeRecError
from edge_rec.root import Root, root_file
from edge_rec.signing import load_private_key, public_hex, sign

from .channel_store import ChannelStore, open_store
from .errors import ConverterError

PathLike = Union[str, Path]
MAX_ROOTS = 10_000


class TrustError(ConverterError):
    """A root cannot be written as asked (devices would reject it, or the channel's roots are damaged)."""


def latest_root(store: ChannelStore) -> Optional[Root]:
    """The channel's newest root (following root/1, root/2, ... until one is missing), or None."""
    root: Optional[Root] = None
    for version in range(1, MAX_ROOTS):
        data = store.read(root_file(version))
        if data is None:
            return root
        try:
            root = Root.from_bytes(data, root_file(version)) if root is None else root.verify_next(data)
        except EdgeRecError as e:
            raise TrustError(f"{store.location}: {e}") from None
    raise TrustError(f"{store.location} has over {MAX_ROOTS} roots")


def write_root(channel, signing_keys: Sequence[PathLike], signing_threshold: int, root_keys: Sequence[PathLike],
               root_threshold: int, root_pubs: Sequence[PathLike] = (), old_root_keys: Sequence[PathLike] = (),
               pinned: Sequence[PathLike] = (), endpoint_url: Optional[str] = None) -> Root:
    """Publish the channel's next root and return it.

    ``root_keys`` are private keys of the new root that sign now; ``root_pubs`` public keys of new root
    keys kept offline; ``old_root_keys`` private keys of the previous root that sign the hand-over (keys
    in both sets sign once). For the first root, ``pinned`` are the public keys devices were provisioned
    with: it is then checked as their root 0 would check it, and must be signed by ``old_root_keys``.
    """
    store = open_store(channel, endpoint_url)
    previous = latest_root(store)
    if previous is None and pinned:
        previous = Root.from_pinned(list(pinned), 1)
    new_root = [load_private_key(p) for p in root_keys]
    signers = {public_hex(k.public_key()): k for k in [*new_root, *(load_private_key(p) for p in old_root_keys)]}
    new = Root.make((previous.version if previous else 0) + 1, [*(k.public_key() for k in new_root), *root_pubs],
                    root_threshold, list(signing_keys), signing_threshold)
    new.signatures = [sign(new.canonical_bytes(), k) for k in signers.values()]
    data = new.to_json()
    try:
        checked = previous.verify_next(data) if previous else _self_signed(data)
    except EdgeRecError as e:
        raise TrustError(f"devices would reject root {new.version}: {e}") from None
    store.create(root_file(new.version), data)
    return checked


def _self_signed(data: bytes) -> Root:
    """A first root that devices receive by provisioning: signed by a threshold of its own root keys."""
    from edge_rec.signing import verify
    root = Root.from_bytes(data, root_file(1))
    verify(root.signed_payload, root.signatures, root.root_keys, root.root_threshold)
    return root


def check_signing_keys(store: ChannelStore, keys: List) -> None:
    """Refuse to publish with keys the channel's newest root does not name as signing keys (devices would
    reject the result)."""
    root = latest_root(store)
    if root is None:
        return
    allowed = set(root.signing_keys)
    stray = [public_hex(k.public_key()) for k in keys if public_hex(k.public_key()) not in allowed]
    if stray:
        raise TrustError(f"root {root.version} of {store.location} does not list signing key(s) "
                         f"{', '.join(s[:16] for s in stray)}: sign with its signing keys, or rotate the root first")
    if len(keys) < root.signing_threshold:
        raise TrustError(f"root {root.version} wants {root.signing_threshold} signatures, {len(keys)} key(s) given")
