"""The bundle manifest format and its ed25519 signatures."""
import json

import numpy as np
import pytest

from edge_rec.errors import IncompatibleBundleError, ManifestError, SignatureError
from edge_rec.manifest import FileEntry, IndexSpec, ItemsSpec, Manifest, ModelSpec, TensorSpec
from edge_rec.quant import dequantize_rows, dequantize_tensor, quantize_rows, quantize_tensor
from edge_rec.signed import canonical_json
from edge_rec.signing import generate_keypair, load_private_key, load_public_key, sign, verify

SHA = "0" * 64


def make_manifest(**over) -> Manifest:
    files = {n: FileEntry(SHA, 1) for n in ("m.tflite", "i.hnsw", "v.npy", "s.npy", "ids.json", "meta.jsonl", "pop.npy")}
    t = TensorSpec("x", [1, 4, 8], "int8", 0.01, -3)
    m = Manifest(bundle_version=3, created="2026-01-01T00:00:00Z",
                 model=ModelSpec("m.tflite", "pool-mlp", 4, 8, [t], TensorSpec("q", [1, 8], "int8", 1 / 128, 0),
                                 ["FULLY_CONNECTED"], [], True),
                 index=IndexSpec("i.hnsw", "ip", 8, 5, 16, 200, 32),
                 items=ItemsSpec("v.npy", "s.npy", "ids.json", "meta.jsonl", "pop.npy", 5, 8), files=files, golden=[])
    for k, v in over.items():
        setattr(m, k, v)
    return m


def test_round_trip_through_json():
    m = make_manifest()
    again = Manifest.from_bytes(m.to_json())
    assert again == m and again.canonical_bytes() == m.canonical_bytes()


@pytest.mark.parametrize("mutate,error,needle", [
    (lambda d: d.pop("model"), ManifestError, "manifest.model: missing"),
    (lambda d: d["index"].update(dim="8"), ManifestError, "manifest.index.dim: expected int"),
    (lambda d: d["index"].update(dim=16), IncompatibleBundleError, "dimension mismatch"),
    (lambda d: d["index"].update(space="hamming"), IncompatibleBundleError, "space"),
    (lambda d: d.update(format_version=99), IncompatibleBundleError, "upgrade edge-rec"),
    (lambda d: d.update(format="zip"), IncompatibleBundleError, "not an edge-rec bundle"),
    (lambda d: d["files"].pop("v.npy"), ManifestError, "does not list 'v.npy'"),
    (lambda d: d["files"].update({"../x": {"sha256": SHA, "size": 1}}), ManifestError, "plain file name"),
    (lambda d: d["files"]["v.npy"].update(sha256="xyz"), ManifestError, "sha256"),
    (lambda d: d["model"].update(edgetpu_compatible=1), ManifestError, "expected bool"),
    (lambda d: d["model"]["inputs"][0].update(dtype="int4"), IncompatibleBundleError, "int4"),
    (lambda d: d.update(golden=[{"history": [1], "query": [], "top": []}]), ManifestError, "golden[0].history[0]"),
])
def test_bad_manifests_give_clear_errors(mutate, error, needle):
    d = json.loads(make_manifest().to_json())
    mutate(d)
    with pytest.raises(error, match=needle.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        Manifest.from_dict(d)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1, 2]", b"null", b"{" * 100000, b"x" * (17 * 1024 * 1024)])
def test_garbage_bytes_are_manifest_errors(data):
    with pytest.raises((ManifestError, IncompatibleBundleError)):
        Manifest.from_bytes(data)


def test_canonical_json_is_deterministic_and_ascii():
    assert canonical_json({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_signatures(tmp_path):
    k1, p1 = generate_keypair(tmp_path, "one")
    k2, p2 = generate_keypair(tmp_path, "two")
    assert oct(k1.stat().st_mode & 0o777) == "0o600"
    msg = make_manifest().canonical_bytes()
    s1, s2 = sign(msg, load_private_key(k1)), sign(msg, load_private_key(k2))
    assert verify(msg, [s1], [p1]) == [s1.key_id]
    with pytest.raises(SignatureError, match="0 valid signature"):
        verify(msg, [s1], [p2])                       # wrong key
    with pytest.raises(SignatureError, match="altered"):
        verify(msg + b" ", [s1], [p1])                # tampered message
    with pytest.raises(SignatureError, match="1 valid signature.*2 required"):
        verify(msg, [s1, s1], [p1, p2], threshold=2)  # one key twice does not make a threshold of 2
    assert verify(msg, [s1, s2], [p1, p2], threshold=2) == sorted([s1.key_id, s2.key_id])
    with pytest.raises(SignatureError, match="no trusted public key"):
        verify(msg, [s1], [])
    with pytest.raises(SignatureError, match="32 bytes"):
        load_public_key("abcd")
    assert load_public_key(p1.read_text().strip()) is not None


def test_row_quantization_error_is_bounded():
    v = np.random.default_rng(0).normal(size=(100, 16)).astype(np.float32)
    v[3] = 0
    q, s = quantize_rows(v)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s[3] == 1.0
    err = np.abs(dequantize_rows(q, s) - v)
    assert np.all(err <= s[:, None] / 2 + 1e-7)


def test_tensor_quantization_round_trip_and_clipping():
    x = np.array([-2.0, -0.5, 0.0, 0.37, 5.0], np.float32)
    q = quantize_tensor(x, 0.01, -3)
    assert q.dtype == np.int8 and q[0] == -128 and q[-1] == 127
    np.testing.assert_allclose(dequantize_tensor(q, 0.01, -3)[1:4], x[1:4], atol=0.005)


def test_seen_items_protocol_is_read_checked_and_defaults_for_older_formats():
    d = json.loads(make_manifest(seen_items="repeat").to_json())
    assert Manifest.from_dict(d).seen_items == "repeat"
    with pytest.raises(IncompatibleBundleError, match="seen_items is 'sometimes'"):
        Manifest.from_dict({**d, "seen_items": "sometimes"})
    with pytest.raises(ManifestError, match="manifest.seen_items: missing"):
        Manifest.from_dict({k: v for k, v in d.items() if k != "seen_items"})
    older = {k: v for k, v in d.items() if k != "seen_items"} | {"format_version": 6}
    assert Manifest.from_dict(older).seen_items == "exclude"  # what every bundle before format 7 did
