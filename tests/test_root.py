"""Signing-key rotation, TUF-style: devices follow the channel's roots (root N+1 signed by root N's root keys
and its own), rotate and revoke signing keys, rotate root keys, 2-of-3 thresholds, and refuse a revoked key,
a replayed old root and a root minted with a stolen signing key. Real channels served on loopback."""
import json
import shutil

import numpy as np
import pytest

from converter.publish import changes_from_vectors, publish_bundle, publish_changes
from converter.trust import TrustError, write_root
from edge_rec import DeviceState, EdgeRecommender, LiveRecommender, Root, SyncClient
from edge_rec.channel import CHANNEL_NAME, ChannelManifest
from edge_rec.root import root_file
from edge_rec.serve import serve_in_thread
from edge_rec.signing import generate_keypair, load_private_key, sign


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(root, name) for name in ("k2", "s1", "s2", "s3", "r1", "r2", "r3", "r4")}


@pytest.fixture
def fleet(converted, tmp_path):
    """A channel at version 1 signed by the converter's key K1, served on loopback, and a device pinned to K1."""
    ch = tmp_path / "channel"
    publish_bundle(ch, converted["bundle"], converted["key"], name="roots")
    server, url = serve_in_thread(ch)
    device = tmp_path / "device"
    yield {"ch": ch, "url": url, "device": device, "k1": converted["key"], "k1pub": converted["pub"]}
    server.shutdown()


def sync(fleet, pinned=None):
    return SyncClient(fleet["device"], fleet["url"], pinned or fleet["k1pub"]).sync_once()


def change(converted, tag):
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        v = rec.items.dequantized(np.arange(1))[0]
        s = rec.search_retriever.vectors(np.arange(1))[0]
    return changes_from_vectors({tag: v}, {tag: {"title": tag}}, [], {tag: s})


def forge_channel(ch, private_keys, bump=1):
    """What an attacker holding ``private_keys`` can serve: the channel's manifest, newer, signed by them."""
    raw = json.loads((ch / CHANNEL_NAME).read_bytes())
    raw["version"] += bump
    raw["issued"] += 1
    raw["snapshot"]["to_version"] = raw["version"]
    m = ChannelManifest.from_bytes(json.dumps(raw).encode())
    raw["signatures"] = [s.__dict__ for s in (sign(m.canonical_bytes(), load_private_key(k)) for k in private_keys)]
    (ch / CHANNEL_NAME).write_text(json.dumps(raw))


def test_pinned_devices_follow_a_rotation_to_a_new_signing_key(converted, fleet, keys):
    assert sync(fleet).version == 1
    k2, k2pub = keys["k2"]
    # root 1: the new root key r1 takes over from the pinned key; K1 and K2 both sign for the hand-over
    write_root(fleet["ch"], [fleet["k1pub"], k2pub], 1, [keys["r1"][0]], 1, old_root_keys=[fleet["k1"]],
               pinned=[fleet["k1pub"]])
    publish_changes(fleet["ch"], change(converted, "by-k2"), k2)
    s = sync(fleet)
    assert (s.state, s.version) == ("updated", 2), s.line()
    assert DeviceState(fleet["device"]).trusted_root(fleet["k1pub"]).version == 1
    # root 2 retires K1: it is signed by r1 (the previous root's key and its own)
    write_root(fleet["ch"], [k2pub], 1, [keys["r1"][0]], 1)
    publish_changes(fleet["ch"], change(converted, "after-rotation"), k2)
    s = sync(fleet)
    assert (s.state, s.version) == ("updated", 3), s.line()
    with LiveRecommender(fleet["device"], fleet["k1pub"]) as live:  # the app still pins K1: the root decides
        assert live.version == 3 and "after-rotation" in live.refresh().items
    forge_channel(fleet["ch"], [fleet["k1"]])  # K1, retired, signs a newer channel
    s = sync(fleet)
    assert s.state == "rejected" and "signature" in s.message and s.version == 3, s.line()
    with pytest.raises(TrustError, match="does not list signing key"):
        publish_changes(fleet["ch"], change(converted, "x"), fleet["k1"])  # the tool refuses too


def test_a_compromised_key_is_revoked_at_once_and_its_signatures_fail_afterwards(converted, fleet, keys, tmp_path):
    assert sync(fleet).version == 1
    old_channel = (fleet["ch"] / CHANNEL_NAME).read_bytes()
    k2, k2pub = keys["k2"]
    write_root(fleet["ch"], [k2pub], 1, [keys["r1"][0]], 1, old_root_keys=[fleet["k1"]], pinned=[fleet["k1pub"]])
    publish_changes(fleet["ch"], change(converted, "re-signed"), k2)  # a small delta, signed by K2
    got = []
    s = SyncClient(fleet["device"], fleet["url"], fleet["k1pub"]).sync_once(log=got.append)
    assert (s.state, s.version) == ("updated", 2), s.line()
    assert any("delta 1 -> 2" in line for line in got)  # the base signed by K1 was vouched for by its hash
    # the attacker holds K1: a newer channel, the replayed old channel, and a root of their own all fail
    forge_channel(fleet["ch"], [fleet["k1"]], bump=5)
    assert sync(fleet).state == "rejected"
    (fleet["ch"] / CHANNEL_NAME).write_bytes(old_channel)
    s = sync(fleet)
    assert s.state == "rejected" and s.version == 2, s.line()
    evil = Root.make(2, [fleet["k1pub"]], 1, [fleet["k1pub"]], 1)
    evil.signatures = [sign(evil.canonical_bytes(), load_private_key(fleet["k1"]))]
    (fleet["ch"] / root_file(2)).write_bytes(evil.to_json())
    s = sync(fleet)
    assert s.state == "rejected" and "not signed by root 1's root keys" in s.message, s.line()
    assert DeviceState(fleet["device"]).trusted_root(fleet["k1pub"]).signing_keys == [k2pub.read_text().strip()]


def test_root_keys_rotate_with_2_of_3_thresholds(converted, fleet, keys):
    sync(fleet)
    s1, s2, s3 = (keys[n] for n in ("s1", "s2", "s3"))
    r1, r2, r3, r4 = (keys[n] for n in ("r1", "r2", "r3", "r4"))
    write_root(fleet["ch"], [s1[1], s2[1], s3[1]], 2, [r1[0], r2[0]], 2, root_pubs=[r3[1]],
               old_root_keys=[fleet["k1"]], pinned=[fleet["k1pub"]])
    with pytest.raises(TrustError, match="wants 2 signatures"):
        publish_changes(fleet["ch"], change(converted, "one"), [s1[0]])
    publish_changes(fleet["ch"], change(converted, "two"), [s1[0], s3[0]])
    assert sync(fleet).version == 2
    with pytest.raises(TrustError, match="devices would reject root 2"):  # one old root key of three, threshold 2
        write_root(fleet["ch"], [s1[1], s2[1], s3[1]], 2, [r2[0], r4[0]], 2, old_root_keys=[])
    write_root(fleet["ch"], [s1[1], s2[1], s3[1]], 2, [r2[0], r3[0], r4[0]], 2)  # r1 retired, r4 joins
    publish_changes(fleet["ch"], change(converted, "three"), [s2[0], s3[0]])
    s = sync(fleet)
    assert (s.state, s.version) == ("updated", 3), s.line()
    root = DeviceState(fleet["device"]).trusted_root(fleet["k1pub"])
    assert root.version == 2 and root.root_threshold == 2 and len(root.root_keys) == 3
    forge_channel(fleet["ch"], [s1[0]])  # one signing key of the 2 required
    assert sync(fleet).state == "rejected"


def test_a_replayed_old_root_is_refused(converted, fleet, keys):
    sync(fleet)
    k2, k2pub = keys["k2"]
    write_root(fleet["ch"], [fleet["k1pub"], k2pub], 1, [keys["r1"][0]], 1, old_root_keys=[fleet["k1"]],
               pinned=[fleet["k1pub"]])
    write_root(fleet["ch"], [k2pub], 1, [keys["r1"][0]], 1)
    publish_changes(fleet["ch"], change(converted, "v2"), k2)
    assert sync(fleet).version == 2
    shutil.copy(fleet["ch"] / root_file(1), fleet["ch"] / root_file(3))  # root 1 (K1 still trusted) replayed as 3
    forge_channel(fleet["ch"], [fleet["k1"]])
    s = sync(fleet)
    assert s.state == "rejected" and "expected 3" in s.message, s.line()
    assert DeviceState(fleet["device"]).trusted_root(fleet["k1pub"]).version == 2


def test_a_device_provisioned_with_a_root_file_and_old_devices_without_roots(converted, fleet, keys, tmp_path):
    k2, k2pub = keys["k2"]
    root = write_root(tmp_path / "fresh-fleet", [k2pub], 1, [keys["r1"][0]], 1)  # a new fleet: no pinned key
    assert root.version == 1
    DeviceState(tmp_path / "new-device").save_root((tmp_path / "fresh-fleet" / root_file(1)).read_bytes())
    assert DeviceState(tmp_path / "new-device").trusted_root(fleet["k1pub"]).signing_keys == [k2pub.read_text().strip()]
    assert sync(fleet).state == "updated"  # the channel has no roots: the pinned key is root 0
    assert DeviceState(fleet["device"]).trusted_root(fleet["k1pub"]).version == 0
    with pytest.raises(TrustError, match="devices would reject"):
        write_root(fleet["ch"], [k2pub], 1, [keys["r1"][0]], 1, pinned=[fleet["k1pub"]])  # K1 did not sign


def test_root_commands(converted, fleet, keys):
    import subprocess
    import sys
    cli = [sys.executable, "-m", "edge_rec.cli", "root"]
    k2, k2pub = keys["k2"]
    r = subprocess.run(cli + ["rotate", str(fleet["ch"]), "--root-key", str(keys["r1"][0]), "--signing-pub", str(k2pub)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no root yet" in r.stderr, r.stderr
    r = subprocess.run(cli + ["init", str(fleet["ch"]), "--pinned", str(fleet["k1pub"]), "--root-key", str(keys["r1"][0]),
                              "--signing-pub", str(k2pub)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "devices would reject root 1" in r.stderr, r.stderr  # the pinned key did not sign
    r = subprocess.run(cli + ["init", str(fleet["ch"]), "--pinned", str(fleet["k1pub"]), "--old-root-key", str(fleet["k1"]),
                              "--root-key", str(keys["r1"][0]), "--signing-pub", str(k2pub)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "root 1 written" in r.stdout, r.stderr
    publish_changes(fleet["ch"], change(converted, "cli"), k2)
    s = sync(fleet)
    assert (s.state, s.version) == ("updated", 2), s.line()
