"""`edge-rec` end to end on a slice of real MovieLens-1M in the generic format: demo, reuse, eval, errors."""
import json
import re
import subprocess
import sys

import pytest


def edge_rec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_rec.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def demo_run(ml1m_slice, tmp_path_factory):
    art = tmp_path_factory.mktemp("artifacts")
    args = ["--interactions", ml1m_slice["interactions"], "--items", ml1m_slice["items"],
            "--artifacts", art, "--epochs", "4", "--dim", "32", "--max-len", "50",
            "--student-epochs", "3", "--history-len", "20", "--architectures", "pool-mlp",
            "--no-search"]  # search has its own end-to-end tests (test_convert, test_search)
    first = edge_rec("demo", *args)
    return art, args, first


def test_demo_trains_evaluates_and_writes_json(demo_run):
    art, _, r = demo_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| teacher |" in r.stdout and "| popularity |" in r.stdout
    assert "[updated] version" in r.stdout and "  1. " in r.stdout  # synced to a device and recommended there
    report = json.loads((art / "eval-test.json").read_text())
    assert report["split"] == "test" and set(report["results"]) == {"popularity", "teacher"}
    for m in report["results"].values():
        assert m["users"] == 300 and 0 <= m["NDCG@10"] <= m["HR@10"] <= m["HR@20"] <= 1
    assert (art / "teacher" / "model.weights.h5").is_file()
    assert any((art / "cache").glob("all-MiniLM-L6-v2-*.npz"))


def test_demo_reuses_the_saved_teacher(demo_run):
    _, args, first = demo_run
    assert first.returncode == 0
    again = edge_rec("demo", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the teacher" in again.stdout
    assert not re.search(r"^epoch\s+\d+", again.stdout, re.M), "the teacher must not be trained again"


def test_eval_command(demo_run, tmp_path):
    art, args, first = demo_run
    assert first.returncode == 0
    r = edge_rec("eval", *args[:4], "--teacher", art / "teacher", "--split", "valid", "--json", tmp_path / "v.json",
                 "--cold-start", "0.1", "--epochs", "2", "--dim", "16", "--max-len", "20")
    assert r.returncode == 0, r.stderr[-3000:]
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["split"] == "valid" and v["seen_items"] == "exclude" and v["repeat_share"] == 0.0  # nobody rates a film twice
    assert "Protocol `seen_items = exclude`" in r.stdout
    cold = json.loads((tmp_path / "eval-cold-start.json").read_text())  # held-out items shipped by a delta, measured
    assert cold["sync"].startswith("[updated]") and cold["metrics"]["cold_events"] > 0
    assert "| device (text-placed vectors, through the delta) |" in r.stdout


def test_clear_errors_for_bad_input(tmp_path):
    r = edge_rec("eval", "--data", tmp_path / "nowhere")
    assert r.returncode == 1 and "MovieLens-1M" in r.stderr and "nowhere" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "items.csv").write_text("item\na\n")
    (tmp_path / "log.csv").write_text("user,item,timestamp\nu,b,1\n")
    r = edge_rec("eval", "--interactions", tmp_path / "log.csv", "--items", tmp_path / "items.csv")
    assert r.returncode == 1 and "log.csv, line 2" in r.stderr
    r = edge_rec("eval", "--interactions", tmp_path / "log.csv")
    assert r.returncode == 1 and "both --interactions and --items" in r.stderr
    r = edge_rec("convert", "--architectures", "pool-recent,transformer", "--data", tmp_path / "nowhere")
    assert r.returncode == 1 and "unknown transformer; choose from pool-mlp" in r.stderr  # before any data or training
    assert "Traceback" not in r.stderr


def test_search_dim_fixes_the_search_space():
    from converter.cli import _search_config
    from edge_rec.cli import build_parser
    assert _search_config(build_parser().parse_args(["convert"])).dims == (96, 128, 192)  # chosen on validation
    args = build_parser().parse_args(["convert", "--search-dim", "128"])
    assert _search_config(args).dims == (128,)
    args.search_preset = {"dims": (96,), "epochs": 5}  # the quick demo's preset: --search-dim still wins
    assert (_search_config(args).dims, _search_config(args).epochs) == ((128,), 5)
    assert _search_config(build_parser().parse_args(["convert", "--no-search"])) is None


def test_publish_serve_sync_with_a_cold_start_item(demo_run, tmp_path):
    """A new item with text only (no interactions) is embedded by the teacher, published as a delta,
    served over HTTP by `edge-rec serve`, pulled by `edge-rec sync`, and found by `edge-rec similar`."""
    import socket
    import time
    art, _, first = demo_run
    assert first.returncode == 0
    key = next(art.parent.glob("**/keys/edge-rec.key"))
    pub = key.with_suffix(".pub")
    channel, device = tmp_path / "channel", tmp_path / "device"
    r = edge_rec("publish", channel, "--bundle", art / "bundle", "--key", key, "--name", "slice")
    assert r.returncode == 0 and "published as a snapshot" in r.stdout, r.stderr[-2000:]
    first_version = int(re.search(r"version (\d+) published", r.stdout).group(1))
    gone = json.loads((art / "bundle" / "item_ids.json").read_text())[0]
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"upsert": [{"id": "cold-1", "title": "A Brand New Space Comedy", "year": 2026,
                                               "genres": ["Comedy", "Sci-Fi"]}], "delete": [gone]}))
    r = edge_rec("publish", channel, "--changes", changes, "--teacher", art / "teacher", "--key", key, "--insert-width", "0")
    assert r.returncode != 0 and "insertion width must be at least 1" in r.stderr, r.stderr[-2000:]
    r = edge_rec("publish", channel, "--changes", changes, "--teacher", art / "teacher", "--key", key, "--insert-width", "64")
    assert r.returncode == 0 and "1 upserted, 1 deleted" in r.stdout, r.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "edge_rec.cli", "serve", str(channel), "--port", str(port), "--quiet"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        r = edge_rec("sync", "--state", device, "--url", f"http://127.0.0.1:{port}", "--key", pub)
        assert r.returncode == 0 and f"[updated] version {first_version + 1}" in r.stdout, r.stdout + r.stderr[-2000:]
        r = edge_rec("sync", "--state", device, "--url", f"http://127.0.0.1:{port}", "--key", pub)
        assert r.returncode == 0 and "[current]" in r.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
    installed = device / "versions" / str(first_version + 1)
    r = edge_rec("similar", installed, "cold-1", "--key", pub, "-k", "5", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads(r.stdout)) == 5
    r = edge_rec("similar", installed, gone, "--key", pub)
    assert r.returncode == 1 and "unknown item id" in r.stderr


def test_an_ensemble_teacher_trains_converts_and_publishes(ml1m_slice, tmp_path):
    """`--ensemble`: teachers trained in turn and saved as one; the teacher-encoder student copies each (the
    item vectors are theirs side by side), and a delta's new item is placed by every member's text head."""
    art, key = tmp_path / "art", tmp_path / "keys" / "edge-rec.key"
    data = ["--interactions", ml1m_slice["interactions"], "--items", ml1m_slice["items"]]
    r = edge_rec("convert", *data, "--artifacts", art, "--key", key, "--ensemble", "default,dim=16+blocks=1",
                 "--epochs", "2", "--dim", "32", "--max-len", "20", "--history-len", "20",
                 "--architectures", "teacher-encoder", "--no-search")
    assert r.returncode == 1 and "private key" in r.stderr  # a named key must exist: nothing trained yet
    assert not (art / "teacher").exists()
    r = edge_rec("keygen", "--out", key.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    r = edge_rec("convert", *data, "--artifacts", art, "--key", key, "--ensemble", "default,dim=16+blocks=1",
                 "--epochs", "2", "--dim", "32", "--max-len", "20", "--history-len", "20",
                 "--architectures", "teacher-encoder", "--no-search")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ensemble member 2/2: dim 16, 1 blocks, window 20" in r.stdout
    saved = json.loads((art / "teacher" / "config.json").read_text())
    assert saved["format"] == "edge-rec-ensemble-teacher/1" and saved["members"] == ["member0", "member1"]
    model = json.loads((art / "bundle" / "manifest.json").read_text())["model"]
    assert (model["architecture"], model["dim"]) == ("teacher-encoder", 48)
    channel = tmp_path / "channel"
    assert edge_rec("publish", channel, "--bundle", art / "bundle", "--key", key).returncode == 0
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"upsert": [{"id": "cold-1", "title": "A Brand New Space Comedy", "genres": ["Comedy"]}]}))
    r = edge_rec("publish", channel, "--changes", changes, "--teacher", art / "teacher", "--key", key)
    assert r.returncode == 0 and "1 upserted" in r.stdout, r.stderr[-2000:]
