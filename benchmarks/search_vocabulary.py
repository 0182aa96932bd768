"""How large a vocabulary the query encoder needs, measured: SentencePiece vocabularies of 8,000 to 32,000
pieces, with every row full width or with narrow rows for the rarer pieces, trained by the same build as
`edge-rec convert` and compared on validation items' queries the way the device searches (encoder plus
title matching), with their size on the device (tokenizer + int8 encoder; int8 weights are one byte each).

An 8,000-piece vocabulary splits everyday words into fragments ("junk mail": jun k mai l), which a bag of
pieces cannot put back together; this is the measurement behind the shipped vocabulary (24,000 pieces,
3,000 full-width rows). Writes results/search_vocabulary.json and .png.

    python benchmarks/search_vocabulary.py --data ... --cache artifacts/ml-1m/cache
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def candidates():
    from converter.search.encoder import LARGE, EncoderConfig
    # names: pieces / row widths ("3k x 256 + 64": the 3,000 most frequent pieces 256 wide, the rest 64)
    return (EncoderConfig("8k / 256", 8000, head_pieces=0),
            EncoderConfig("16k / 128", 16000, embed_dim=128, head_pieces=0),
            EncoderConfig("16k / 3k x 256 + 64", 16000),
            EncoderConfig(f"24k / 3k x 256 + 64 (shipped {LARGE.name})", 24000),
            EncoderConfig("32k / 3k x 256 + 48", 32000, tail_dim=48))


def redraw(result: dict, path: Path) -> None:
    """The plot of a results file: validation quality per vocabulary, the device bytes in each label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from converter.report import search_size_plot
    rows = [{**r, "name": f"{r['name']}: {r['device_bytes'] / 1e6:.2f} MB"} for r in result["candidates"]]
    search_size_plot(rows, result["chosen_by_the_build"], path.parent, plt, path.name,
                     title="query encoder: vocabulary (pieces / row widths) and size on the device")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--cache", default="artifacts/ml-1m/cache", help="language-model vector cache")
    p.add_argument("--out", default=str(HERE / "results" / "search_vocabulary.json"))
    args = p.parse_args()
    from results_file import write_results

    from converter.provenance import machine_record
    from converter.search.build import SearchConfig, build_search
    from converter.text import TextEncoder
    from converter.workflow import load_dataset
    t0 = time.time()
    build = build_search(load_dataset(args.data), TextEncoder(cache_dir=args.cache),
                         SearchConfig(encoders=candidates(), dims=(192,)))
    rows = [{**e, "device_bytes": e["parameters"] + e["tokenizer_bytes"]} for e in build.report["encoders"]]
    result = {"machine": machine_record(None), "what": __doc__.splitlines()[0], "candidates": rows,
              "chosen_by_the_build": build.report["chosen"], "device_bytes_floor": 3_000_000,
              "minutes": (time.time() - t0) / 60}
    for r in rows:
        v = r["validation"]
        print(f"{r['name']}: {r['device_bytes'] / 1e6:.2f} MB, known-item {v['known_item_success@5']['all']:.3f}, "
              f"intent {v['intent_precision@10']['all']:.3f}, overlap {v['anchor_overlap@10']['all']:.3f}")
    write_results(result, args.out, redraw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
