"""Cold start on ML-1M (or a generic-format data set): items held out of training, shipped to a device by a
delta, measured there. Writes results/cold_start.json and .png.

The protocol is :mod:`converter.coldstart` (also ``edge-rec eval --cold-start SHARE``): 10% of the items
(seeded) and every interaction with them are removed; a teacher (text + ID embeddings, the budget given
by --max-minutes, ID dropout by --id-dropout) and a bundle (pool-recent student, no search) are built on
the rest; the held-out items are published as a change set (placed by the teacher's text path alone), a
device syncs the delta over loopback HTTP, and its recommend(10) is measured on the test events whose
target is a held-out item.

    python benchmarks/cold_start.py [--data DIR] [--max-minutes 12] [--id-dropout 0.3] [--work DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--interactions", help="generic interactions file (with --items): another data set")
    p.add_argument("--items", help="generic items file")
    p.add_argument("--share", type=float, default=0.1, help="share of items held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=12.0, help="the teacher's training budget (default 12)")
    p.add_argument("--id-dropout", type=float, default=0.0, help="the teacher's ID dropout (default 0)")
    p.add_argument("--student-epochs", type=int, default=10)
    p.add_argument("--cache", help="language-model vector cache (default: under --work)")
    p.add_argument("--work", help="where the bundle, channel and device go (default: a temporary folder)")
    p.add_argument("--out", default=str(HERE / "results" / "cold_start.json"))
    args = p.parse_args()
    from results_file import write_results

    from converter.coldstart import cold_start_lines, run_cold_start
    from converter.convert import ConvertConfig
    from converter.provenance import machine_record
    from converter.student import StudentConfig
    from converter.teacher import SASRecConfig
    from converter.text import TextEncoder
    from converter.workflow import load_dataset
    from edge_rec.signing import generate_keypair
    dataset = load_dataset(args.data, args.interactions, args.items)
    print(dataset.summary())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        key, _ = generate_keypair(work / "keys")
        teacher = SASRecConfig(max_minutes=args.max_minutes, id_dropout=args.id_dropout)
        run = run_cold_start(dataset, work / "run", key, teacher,
                             ConvertConfig(architectures=("pool-recent",), student=StudentConfig(epochs=args.student_epochs),
                                           search=None),
                             TextEncoder(cache_dir=args.cache or work / "cache"), share=args.share, seed=args.seed)
        machine = machine_record(work / "run" / "bundle")
    result = {"machine": machine, "what": __doc__.splitlines()[0], "dataset": dataset.summary(),
              "teacher": {"max_minutes": args.max_minutes, "id_dropout": args.id_dropout, "max_len": teacher.max_len},
              **run.to_dict()}
    print("\n".join(cold_start_lines(result)))
    write_results(result, args.out, plot)
    return 0


def plot(result, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = result["metrics"]
    rows = [("device (text-placed, via delta)", m["device"]["HR@10"], "#4c72b0"),
            ("popularity at ship time", m["popularity"]["HR@10"], "#8c8c8c"),
            ("popularity among cold items\n(oracle: whole-log counts)", m["cold_popularity_oracle"]["HR@10"], "#dd8452"),
            ("a random cold item", m["random_cold_HR@10"], "#c4c4c4")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    y = np.arange(len(rows))
    ax.barh(y, [r[1] for r in rows], color=[r[2] for r in rows])
    for i, (_, v, _) in enumerate(rows):
        ax.text(v + 0.002, i, f"{v:.3f}", va="center", fontsize=9)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25 * max(r[1] for r in rows) + 1e-3)
    ax.set_xlabel("HR@10 on the cold items' test events")
    ax.set_title(f"{m['cold_events']} test events target one of {m['cold_items']} held-out items "
                 f"(teacher ID dropout {result['teacher']['id_dropout']:g})", fontsize=10)
    shares = [("device's\ntop-10 slots", m["cold_slot_share"]), ("catalog", m["cold_catalog_share"]),
              ("test\ntargets", m["cold_target_share"])]
    ax2.bar(range(3), [s[1] for s in shares], color=["#4c72b0", "#c4c4c4", "#c4c4c4"])
    for i, (_, v) in enumerate(shares):
        ax2.text(i, v, f"{v:.1%}", ha="center", va="bottom", fontsize=9)
    ax2.set_xticks(range(3), [s[0] for s in shares], fontsize=9)
    ax2.set_ylim(0, 1.3 * max(s[1] for s in shares))
    ax2.set_ylabel("share that is a held-out item")
    ax2.set_title("neither vanish nor flood", fontsize=10)
    ax2.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
