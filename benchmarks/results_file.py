"""The one way a benchmark writes its results: a JSON file and its plot beside it (same name, .png)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Union


def write_results(result: Dict[str, Any], out: Union[str, Path], plot: Callable[[Dict[str, Any], Path], None]) -> Path:
    """Write ``result`` to ``out`` (folders made as needed), draw ``plot(result, out.png)``, say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    plot(result, out.with_suffix(".png"))
    print(f"written to {out}")
    return out
