"""The device suite needs only the runtime (edge_rec, numpy, hnswlib, a TFLite interpreter) and a kit
written on the workstation by device_tests/prepare.py.

    python -m pytest device_tests --kit KIT [--report report.json]

Without --kit, $EDGE_REC_DEVICE_KIT is used; a missing kit skips the suite, or fails it when CI=true.
"""
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--kit", default=os.environ.get("EDGE_REC_DEVICE_KIT"), help="device kit directory (prepare.py)")
    parser.addoption("--report", default=None, help="write the latency / memory / parity report here (JSON)")


RUNTIME_MODULES = ("numpy", "ai_edge_litert", "tflite_runtime", "hnswlib", "sentencepiece", "cryptography", "cffi",
                   "_cffi_backend", "pycparser", "edge_rec")


def installed_sizes() -> dict:
    """MB on disk of each runtime package found (the device's install, without test tools)."""
    import importlib.util
    sizes = {}
    for name in RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        origin = Path(spec.origin)
        root = origin.parent if origin.name == "__init__.py" else origin
        files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
        libs = root.parent / f"{name}.libs"  # auditwheel's bundled shared libraries
        files += [f for f in libs.rglob("*") if f.is_file()] if libs.is_dir() else []
        sizes[name] = round(sum(f.stat().st_size for f in files) / 1e6, 2)
    sizes["total"] = round(sum(sizes.values()), 1)
    return sizes


@pytest.fixture(scope="session")
def kit(request) -> Path:
    path = request.config.getoption("--kit")
    if not path or not (Path(path) / "reference.json").is_file():
        msg = f"no device kit at {path!r}: run device_tests/prepare.py --out KIT, then pass --kit KIT"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return Path(path)


@pytest.fixture(scope="session")
def report(request):
    """Figures the tests measure; written as JSON at the end of the session."""
    data = {"machine": platform.machine(), "python": platform.python_version(),
            "emulated": os.environ.get("EDGE_REC_EMULATED", "") or None, "started": time.time()}
    yield data
    import numpy
    data["numpy"] = numpy.__version__
    data["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data["installed_mb"] = installed_sizes()
    data["seconds"] = time.time() - data.pop("started")
    out = request.config.getoption("--report")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(data, indent=1))
        print(f"\ndevice report written to {out}", file=sys.stderr)
