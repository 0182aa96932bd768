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
            "--student-epochs", "3", "--history-len", "20", "--architectures", "pool-mlp"]
    first = edge_rec("demo", *args)
    return art, args, first


def test_demo_trains_evaluates_and_writes_json(demo_run):
    art, _, r = demo_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| teacher |" in r.stdout and "| popularity |" in r.stdout
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
    r = edge_rec("eval", *args[:4], "--teacher", art / "teacher", "--split", "valid", "--json", tmp_path / "v.json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "v.json").read_text())["split"] == "valid"


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
