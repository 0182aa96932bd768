"""The runtime package keeps to its lane: it never imports the converter or a heavy ML framework."""
import ast
import subprocess
import sys
from pathlib import Path

import edge_rec

FORBIDDEN = {"converter", "tensorflow", "keras", "transformers", "torch", "tf_keras"}


def test_runtime_sources_import_nothing_heavy():
    root = Path(edge_rec.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_cli_help_does_not_load_heavy_frameworks():
    code = ("import sys; from edge_rec.cli import build_parser; build_parser().format_help(); "
            "bad = sorted(m for m in ('tensorflow', 'torch', 'transformers') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
