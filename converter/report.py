"""The conversion report: JSON for machines, Markdown + PNG plots for people."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

from edge_rec.atomic import atomic_write_bytes, atomic_write_json


def _plots(report: Dict[str, Any], out: Path) -> Dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    models = list(report["test"])
    for ax, metric in zip(axes[:2], ("NDCG@10", "HR@10")):
        values = [report["test"][m][metric] for m in models]
        ax.barh(models, values, color=["#bbb", "#4c72b0", "#55a868", "#c44e52"][:len(models)])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.4f}", va="center")
        ax.set_xlabel(f"test {metric} (full ranking)")
        ax.invert_yaxis()
    lat = {k: v for k, v in report["latency_ms"].items() if k != "speedup"}
    axes[2].barh(list(lat), list(lat.values()), color=["#4c72b0", "#c44e52"])
    axes[2].set_xscale("log")
    axes[2].set_xlabel("median ms per query (log scale)")
    axes[2].set_title(f"{report['latency_ms']['speedup']:.0f}x faster")
    axes[2].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "quality_latency.png", dpi=100)
    names["quality_latency"] = "quality_latency.png"
    plt.close(fig)

    idx = report["index"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for M, curve in idx["curves"].items():
        efs = sorted(int(e) for e in curve)
        ax.plot(efs, [curve[e] if e in curve else curve[str(e)] for e in efs], marker="o", ms=3,
                label=f"M={M} ({idx['sizes'][M]:.0f} B/item)")
    ax.axhline(idx["target"], color="gray", ls="--", lw=1, label=f"target {idx['target']}")
    ax.plot([idx["ef_search"]], [idx["recall"]], "k*", ms=12, label=f"shipped: M={idx['M']}, ef={idx['ef_search']}")
    ax.set_xscale("log")
    ax.set_xlabel("ef_search")
    ax.set_ylabel("recall@10 vs exact search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "index_recall.png", dpi=100)
    names["index_recall"] = "index_recall.png"
    plt.close(fig)
    return names


def write_report(report: Dict[str, Any], out: Union[str, Path]) -> Path:
    """Write report.json, report.md and the plots into directory ``out``; return the Markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    plots = _plots(report, out)
    t = report["test"]
    cols = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "coverage@10"]
    lines = ["# edge-rec conversion report", "", f"Data: {report['dataset']}", f"Bundle: `{report['bundle']}` "
             f"(version {report['bundle_version']}); conversion took {report['minutes']:.1f} min.", "",
             "## Quality on the test split (leave-one-out, full ranking, seen items excluded)", "",
             "| model | " + " | ".join(cols) + " | top-10 overlap with teacher |", "|---|" + "---:|" * (len(cols) + 1)]
    for name, m in t.items():
        ov = report["top10_overlap_with_teacher"].get(name)
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + f" | {'' if ov is None else f'{ov:.3f}'} |")
    lat, sizes, idx = report["latency_ms"], report["sizes"], report["index"]
    lines += ["", f"Bundle NDCG@10 / teacher NDCG@10 = **{report['ndcg_ratio_bundle_vs_teacher']:.3f}**. "
              "The bundle row is the device path (int8 TFLite student, HNSW retrieval, int8 re-scoring); its MRR is MRR@20.", "",
              f"![quality and latency]({plots['quality_latency']})", "",
              "## Size and speed", "",
              f"- TFLite student: **{sizes['tflite_bytes'] / 1024:.1f} KiB**; ops: {', '.join(report['ops'])}",
              f"- Edge TPU compatible: **{'yes' if report['edgetpu_compatible'] else 'no'}**"
              + ("" if report["edgetpu_compatible"] else f" ({'; '.join(report['edgetpu_blockers'])})"),
              f"- Median latency per query, same run: teacher {lat['teacher (compiled user vector + exact scoring)']:.2f} ms (compiled with tf.function), "
              f"student {lat['student (TFLite + HNSW top-10)']:.3f} ms: **{lat['speedup']:.0f}x faster**",
              f"- Index: M={idx['M']}, ef_construction={idx['ef_construction']}, ef_search={idx['ef_search']}, "
              f"recall@10 {idx['recall']:.4f} (target {idx['target']}); {sizes['index_bytes_per_item']:.0f} B/item on disk "
              f"+ {sizes['item_table_bytes_per_item']:.0f} B/item int8 table",
              f"- Golden cases reproduced by the runtime: {report['golden']['top_identical']}/{report['golden']['cases']} "
              f"identical top-10, min cosine {report['golden']['min_cosine']:.5f}", "",
              f"![index recall]({plots['index_recall']})", "",
              "## Students tried", "", "| architecture | valid NDCG@10 fp32 | int8 | parity cosine | KiB | ms/query | float ops |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for s in report["students"]:
        lines.append(f"| {s['architecture']} | {s['valid_fp32']['NDCG@10']:.4f} | {s['valid_int8']['NDCG@10']:.4f} | "
                     f"{s['parity']['cosine_mean']:.4f} | {s['tflite_bytes'] / 1024:.1f} | {s['latency_ms']:.3f} | "
                     f"{', '.join(s['float_ops']) or 'none'} |")
    lines += ["", f"Chosen: {report['chosen']}", ""]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    return out / "report.md"
