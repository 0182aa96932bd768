"""Defects an outside review found (issue 13), each with a test that failed before its fix: signature
thresholds, one-line CLI errors, leaked files on version swaps, a truly drifted int8 model."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_rec.atomic import atomic_write_json
from edge_rec.bundle import Bundle
from edge_rec.live import LiveRecommender
from edge_rec.manifest import MANIFEST_NAME, Manifest
from edge_rec.signing import ThresholdError, generate_keypair, load_private_key, sign, verify
from edge_rec.state import STATE_NAME, DeviceState
from edge_rec.sync import SyncClient


def edge_rec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_rec.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def one_line_error(r, needle):
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip() and "WARNING" not in line and "warn" not in line]
    assert len(lines) == 1 and "error:" in lines[0] and needle in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("threshold", [0, -1, 3, 1.0, True])
def test_signature_thresholds_outside_1_to_the_pinned_keys_are_refused(converted, tmp_path, threshold):
    m = Manifest.from_bytes((converted["bundle"] / MANIFEST_NAME).read_bytes())
    _, other = generate_keypair(tmp_path)
    keys = [converted["pub"], other]
    with pytest.raises(ThresholdError, match="threshold"):
        verify(m.signed_payload, [], keys, threshold)  # an unsigned document, whatever the threshold
    with pytest.raises(ThresholdError):
        verify(m.signed_payload, m.signatures, keys, threshold)
    with pytest.raises(ThresholdError):
        Bundle.open(converted["bundle"], keys, threshold)
    with pytest.raises(ThresholdError):
        SyncClient(tmp_path / "device", "http://127.0.0.1:9", keys, threshold)
    DeviceState(tmp_path / "live").provision(converted["bundle"])
    with pytest.raises(ThresholdError):
        LiveRecommender(tmp_path / "live", keys, threshold)
    assert Bundle.open(converted["bundle"], keys, 1).signers  # 1 of 2 pinned keys: fine


def test_sync_threshold_0_on_the_command_line(converted, tmp_path):
    one_line_error(edge_rec("sync", "--state", tmp_path / "d", "--url", "http://127.0.0.1:9", "--key", converted["pub"],
                            "--threshold", "0"), "threshold")


def test_publish_changes_that_are_not_an_object(converted, tmp_path):
    from converter.publish import publish_bundle
    publish_bundle(tmp_path / "ch", converted["bundle"], converted["key"], name="t")
    for content in ('["not", "an", "object"]', '"text"', "{not json"):
        (tmp_path / "changes.json").write_text(content)
        one_line_error(edge_rec("publish", tmp_path / "ch", "--changes", tmp_path / "changes.json", "--key",
                                converted["key"], "--teacher", tmp_path / "no-teacher"), "changes.json")


def test_converter_errors_are_one_line(converted, tmp_path, ml1m_slice):
    (tmp_path / "bad.csv").write_text("user,item,timestamp\nu1,i1,not-a-time\n")
    one_line_error(edge_rec("train-teacher", "--interactions", tmp_path / "bad.csv", "--items", ml1m_slice["items"],
                            "--artifacts", tmp_path / "a"), "bad.csv")
    (tmp_path / "ok.json").write_text('{"upsert": [], "delete": []}')
    one_line_error(edge_rec("publish", tmp_path / "empty-channel", "--changes", tmp_path / "ok.json", "--key",
                            converted["key"]), "channel.json")
    one_line_error(edge_rec("train-teacher", "--data", tmp_path / "nowhere", "--artifacts", tmp_path / "a"),
                   "MovieLens-1M")


def test_parity_errors_are_converter_errors_reported_in_one_line(monkeypatch, capsys):
    from converter import cli as converter_cli
    from converter.quantize import ParityError
    from edge_rec.cli import main

    def drifted(args):
        raise ParityError("int8 model out of parity with fp32: mean cosine 0.41\n(need >= 0.98)")
    monkeypatch.setattr(converter_cli, "cmd_convert", drifted)
    assert main(["convert"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mean cosine 0.41 (need >= 0.98)" in err[0]


def test_a_really_drifted_model_is_refused(converted, monkeypatch):
    """Representative data far off the real inputs: int8 ranges 1000x too wide, so the int8 model drifts."""
    from converter import quantize
    from converter.distill import distill
    from converter.student import StudentConfig
    split, teacher = converted["split"], converted["teacher"]
    table = teacher.item_vectors()
    config = StudentConfig(epochs=1, history_len=20, hidden=16)
    student, _ = distill(teacher, split, table, config, log=lambda m: None)
    honest = quantize.representative_inputs
    monkeypatch.setattr(quantize, "representative_inputs",
                        lambda h, t, c: [[x * 1000.0 for x in sample] for sample in honest(h, t, c)])
    with pytest.raises(quantize.ParityError, match=r"mean cosine 0\.[0-8]\d* \(need >= 0\.98\)"):
        quantize.quantize_student(student, config, table, split.valid.histories[:50], split.valid.histories[:50])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_a_thousand_version_swaps_leak_no_file_descriptors(converted, tmp_path):
    device = DeviceState(tmp_path / "device")
    device.provision(converted["bundle"])
    second = tmp_path / "v2"
    shutil.copytree(converted["bundle"], second)
    raw = json.loads((second / MANIFEST_NAME).read_text())
    raw["bundle_version"] = 2
    m = Manifest.from_dict(raw)
    m.signatures = [sign(m.canonical_bytes(), load_private_key(converted["key"]))]
    (second / MANIFEST_NAME).write_bytes(m.to_json())
    device.provision(second)
    state = json.loads((device.root / STATE_NAME).read_text())
    live = LiveRecommender(device.root, converted["pub"])
    history = [converted["data"].items[i].id for i in converted["split"].test.histories[0][-10:]]
    live.recommend(k=5, history=history, filter={"genres": "Drama"})  # opens the metadata file
    before, versions = open_fds(), []
    for i in range(1000):
        state["current"], state["previous"] = (1, 2) if i % 2 else (2, 1)
        atomic_write_json(device.root / STATE_NAME, state)
        live.recommend(k=5, history=history, filter={"genres": "Drama"})
        versions.append(live.version)
    assert set(versions) == {1, 2} and versions[:4] == [2, 1, 2, 1]
    assert open_fds() <= before + 2, (before, open_fds())
    live.close()
    assert np.isfinite([r.score for r in live.recommend(k=3, history=history)]).all()  # reopened after close()


def test_a_sync_that_finds_nothing_new_does_not_make_the_device_reload(converted, tmp_path):
    """Each sync used to rewrite state.json, and LiveRecommender reopened (and re-verified) the version on
    every rewrite: a kiosk syncing every few seconds spent its time reloading."""
    from converter.publish import publish_bundle
    from edge_rec.serve import serve_in_thread
    publish_bundle(tmp_path / "ch", converted["bundle"], converted["key"], name="t")
    server, url = serve_in_thread(tmp_path / "ch")
    try:
        client = SyncClient(tmp_path / "device", url, converted["pub"])
        assert client.sync_once().state == "updated"
        with LiveRecommender(tmp_path / "device", converted["pub"]) as live:
            rec = live.refresh()
            stamp = (tmp_path / "device" / STATE_NAME).stat().st_mtime_ns
            assert client.sync_once().state == "current"
            assert (tmp_path / "device" / STATE_NAME).stat().st_mtime_ns == stamp
            state = json.loads((tmp_path / "device" / STATE_NAME).read_text())
            state["trusted_time"] += 1  # e.g. a re-signed channel.json: state.json changes, the version does not
            atomic_write_json(tmp_path / "device" / STATE_NAME, state)
            assert live.refresh() is rec
    finally:
        server.shutdown()
