"""Teachers together: the test metrics of each saved teacher alone and of sets of them as one
``EnsembleTeacher`` (summed scores = one two-tower model over the members' concatenated vectors; by default
the first 2, 3, ... of them; ``--sets 0+1,0+2+3`` names others). Measures whether an ensemble trained within
the 55-minute budget reaches what one teacher does not. Writes results/teacher_ensemble.{json,png}.

    python benchmarks/teacher_ensemble.py artifacts/ml-1m/teacher A B ... [--sets 0+1,0+1+2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = r["rows"]
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(rows)), 4.2))
    labels = ["\n+ ".join(m.removeprefix("teacher-") for m in row["members"]) for row in rows]
    values = [row["metrics"]["NDCG@10"] for row in rows]
    ax.bar(range(len(rows)), values, color=["tab:blue" if len(row["members"]) == 1 else "tab:orange" for row in rows])
    for i, v in enumerate(values):
        ax.annotate(f"{v:.4f}", (i, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.axhline(r["floor"], color="red", ls="--", lw=1, label=f"floor {r['floor']}")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(min(values) - 0.01, max(values + [r["floor"]]) + 0.005)
    ax.set_ylabel(f"{r['split']} NDCG@10 (full ranking)")
    ax.set_title("teachers alone (blue) and together (orange)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("teachers", nargs="+", help="saved teacher directories, in the order they join")
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--sets", help="ensembles to measure, comma-separated, each member indices joined by + "
                                  "(default: the first 2, the first 3, ...)")
    p.add_argument("--out", default=str(HERE / "results" / "teacher_ensemble.json"))
    args = p.parse_args()
    from results_file import write_results

    from converter.data import leave_one_out
    from converter.evaluate import evaluate
    from converter.provenance import machine_record
    from converter.teacher import EnsembleTeacher, load_teacher
    from converter.workflow import load_dataset
    dataset = load_dataset(args.data)
    eval_set = leave_one_out(dataset).stage(args.split)
    teachers = [load_teacher(path) for path in args.teachers]
    names = [Path(path).name for path in args.teachers]
    sets = ([[int(i) for i in s.split("+")] for s in args.sets.split(",")] if args.sets
            else [list(range(n)) for n in range(2, len(teachers) + 1)])
    rows = []
    for members in [[i] for i in range(len(teachers))] + sets:
        model = teachers[members[0]] if len(members) == 1 else EnsembleTeacher([teachers[i] for i in members])
        metrics = evaluate(model, eval_set, dataset.n_items, desc=" + ".join(names[i] for i in members))
        rows.append({"label": " + ".join(names[i] for i in members), "members": [names[i] for i in members],
                     "train_minutes": sum(teachers[i].info["train_seconds"] for i in members) / 60,
                     "stopped": [teachers[i].info["stopped"] for i in members],
                     "metrics": {k: v for k, v in metrics.items() if k != "users"}})
        print(f"{rows[-1]['label']}: NDCG@10 {metrics['NDCG@10']:.4f}, HR@10 {metrics['HR@10']:.4f} "
              f"({rows[-1]['train_minutes']:.1f} training minutes)", flush=True)
    r = {"machine": machine_record(), "split": args.split, "floor": 0.180, "rows": rows,
         "how": "EnsembleTeacher: summed scores (= one model over the members' concatenated vectors)"}
    write_results(r, args.out, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
