"""Plot the teachers' validation curves and their test metrics next to the popularity baseline.

    python benchmarks/teacher_report.py artifacts/ml-1m/teacher artifacts/ml-1m/teacher-notext \\
        --eval artifacts/ml-1m/eval-test.json --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teachers", nargs="+", help="saved teacher directories")
    p.add_argument("--eval", required=True, help="eval JSON written by `edge-rec eval`")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--name", default="teacher", help="results file names: NAME.json and NAME.png (default teacher)")
    args = p.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads(Path(args.eval).read_text())["results"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    from converter.provenance import machine_record
    summary = {"machine": machine_record(), "test": results, "teachers": {}}
    for path in args.teachers:
        saved = json.loads((Path(path) / "config.json").read_text())
        info = saved["info"]
        rows = [e for e in info["epochs"] if "valid_NDCG@10" in e]
        name = Path(path).name
        a.plot([e["minutes"] for e in rows], [e["valid_NDCG@10"] for e in rows], marker=".", label=name)
        summary["teachers"][name] = {**{k: info[k] for k in ("best_epoch", "valid", "train_seconds", "stopped")},
                                     "epochs_run": len(info["epochs"]), "config": saved["config"]}
    a.set_xlabel("training minutes (2 CPU cores)")
    a.set_ylabel("validation NDCG@10 (full ranking)")
    a.legend()
    names = list(results)
    for i, metric in enumerate(("NDCG@10", "HR@10")):
        b.bar([x + 0.4 * i for x in range(len(names))], [results[n][metric] for n in names], width=0.4, label=metric)
    b.set_xticks([x + 0.2 for x in range(len(names))], names, rotation=20, ha="right")  # long names: no overlap
    b.set_ylabel("test (leave-one-out, full ranking)")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / f"{args.name}.png", dpi=100)
    (out / f"{args.name}.json").write_text(json.dumps(summary, indent=1))
    print(f"written: {out / args.name}.png, {out / args.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
