"""Provenance of a measurement: the code (git commit), the machine, the interpreter, the bundle, recorded
in every results file and conversion report so two results can be compared."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

ROOT = Path(__file__).resolve().parents[1]  # the checkout (git commit of the code that measured)


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """HEAD's commit, with "+changes" when the work tree differs from it, as it was when this process first
    asked (at import of this module, or where a converter command starts): a long run records the code it
    started with, not a later commit."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


git_commit()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_record(bundle: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """The facts a reader needs to compare this result with another."""
    import numpy

    from edge_rec.model import load_backend
    backend, _ = load_backend()
    record: Dict[str, Any] = {
        "commit": git_commit(), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": numpy.__version__, "interpreter": f"{backend} {_version(backend)}",
        "hnswlib": _version("hnswlib"), "argv": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv)),
    }
    if bundle is not None:
        from edge_rec.bundle import read_manifest, sha256_file
        record["bundle_manifest_sha256"] = sha256_file(Path(bundle) / "manifest.json")[0]
        record["bundle_version"] = read_manifest(Path(bundle)).bundle_version
    return record


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    for dist in (module.replace("_", "-"), module):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"
