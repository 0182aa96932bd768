"""The conversion report for people: Markdown and PNG plots rendered from the typed report
(:class:`converter.conversion_report.ConversionReport`), written beside its report.json."""

from __future__ import annotations

import re
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from edge_rec.atomic import atomic_write_bytes, atomic_write_json

from .conversion_report import ConversionReport, SearchReport
from .index import IndexChoice

# display names and colours of the models in the test table (field names of TestResults)
LABELS = {
    "popularity": "popularity",
    "teacher": "teacher",
    "student_fp32": "student fp32",
    "bundle": "student int8 + HNSW (bundle)",
}
SHORT = {"bundle": "bundle (int8 + HNSW)"}
COLORS = {"popularity": "#bbbbbb", "teacher": "#4c72b0", "student_fp32": "#55a868", "bundle": "#c44e52"}


def protocol_line(seen_items: str, repeat_share: float) -> str:
    """One sentence on the repeat-consumption protocol and how often this data's targets repeat."""
    from .data import REPEAT_SHARE
    many = repeat_share >= REPEAT_SHARE
    head = (f"**Many repeats:** {repeat_share:.0%} of the held-out targets are items their user had already interacted "
            f"with (re-consumption)." if many else
            f"{repeat_share:.1%} of the held-out targets repeat an item of their user's history.")
    rule = ("Protocol `seen_items = exclude`: no model ranks a seen item (a repeated target counts as a miss), as the "
            "device never recommends one again." if seen_items == "exclude" else
            "Protocol `seen_items = repeat`: every model ranks every item, seen ones too, and the device's recommend() "
            "does not exclude seen items by default.")
    return f"{head} {rule} The bundle records the protocol (`manifest.seen_items`)."


def _quality_latency(report: ConversionReport, out: Path, plt) -> str:
    models = report.test.models()
    labels = [SHORT.get(m, LABELS[m]) for m in models]
    colors = [COLORS[m] for m in models]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, metric in zip(axes[:2], ("NDCG@10", "HR@10")):
        values = [q.metrics[metric] for q in models.values()]
        ax.barh(labels, values, color=colors)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.4f}", va="center", fontsize=9)
        ax.set_xlim(0, max(values) * 1.3)
        ax.set_xlabel(f"test {metric} (full ranking)")
        ax.invert_yaxis()
    lat = {"teacher (compiled)": report.latency.teacher_ms, "device path": report.latency.device_ms}
    ax = axes[2]
    ax.barh(list(lat), list(lat.values()), color=[COLORS["teacher"], COLORS["bundle"]])
    low, high = min(lat.values()), max(lat.values())
    log = high / low >= 10  # a log axis only when the bars differ by an order of magnitude or more
    if log:
        ax.set_xscale("log")
        ax.set_xlim(low / 3, high * 8)
    else:
        ax.set_xlim(0, high * 1.3)
    for y, v in enumerate(lat.values()):
        ax.text(v, y, f" {v:.3g} ms", va="center", fontsize=9)
    ax.set_xlabel("median ms per query" + (" (log scale)" if log else ""))
    ax.set_title(f"device path {report.latency.speedup:.0f}x faster than the compiled teacher", fontsize=10)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "quality_latency.png", dpi=100)
    plt.close(fig)
    return "quality_latency.png"


def _index_recall(idx: IndexChoice, out: Path, plt, name: str, title: str) -> str:
    """Recall against ef for every index form tried: the plain graph (left) and the compact store (right)."""
    panels = [("graph over the vectors", {f"M={M}": (c, idx.sizes[M]) for M, c in idx.curves.items()})]
    if idx.compact_curves:
        panels.append(("compact store (M 8 over query-aware directions)",
                       {label: (c, idx.compact_sizes[label.split(",")[0]])
                        for label, c in sorted(idx.compact_curves.items(), key=lambda lc: [int(n) for n in re.findall(r"\d+", lc[0])])}))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.6), sharey=True, squeeze=False)
    efs = sorted({e for c in list(idx.curves.values()) + list(idx.compact_curves.values()) for e in c})
    ticks: List[int] = []
    for e in reversed(efs):  # from the widest down, each at least 1.8x below the last: labels never meet on a log axis
        if not ticks or 1.8 * e <= ticks[-1]:
            ticks.append(e)
    for ax, (panel, curves) in zip(axes[0], panels):
        colors = plt.get_cmap("tab20" if len(curves) > 10 else "tab10").colors
        for i, (label, (curve, size)) in enumerate(curves.items()):
            xs = sorted(curve)
            ax.plot(xs, [curve[e] for e in xs], marker="o", ms=3, color=colors[i % len(colors)],
                    label=f"{label} ({size:.0f} B/item)")
        ax.axhline(idx.target, color="gray", ls=":", lw=1, label=f"target {idx.target}")
        if idx.near_exact:
            ax.axhline(idx.near_exact, color="black", ls="--", lw=0.8, label=f"near-exact {idx.near_exact}")
        if bool(idx.projection_dim) == (panel != panels[0][0]):
            ax.plot([idx.ef_search], [idx.recall], "k*", ms=12, label=f"shipped, ef={idx.ef_search}")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(e) for e in ticks])
        ax.minorticks_off()
        ax.set_xlabel("ef_search (log scale)")
        ax.set_title(panel, fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)  # below: off the curves
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("recall@10 vs exact search")
    fig.suptitle(f"{title}: shipped {idx.form}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def search_size_plot(encoders: List[Dict[str, Any]], chosen: str, out: Path, plt, name: str = "search_quality_size.png",
                     title: str = "search quality by encoder and search-space size") -> str:
    """Validation quality of each query encoder and search-space dimension tried (the device's hybrid search)."""
    cands = sorted(encoders, key=lambda e: (e["parameters"], e.get("dim", 0)))
    metrics = (
        ("known_item_success@5", "known-item success@5", "#4c72b0"),
        ("intent_precision@10", "intent precision@10", "#55a868"),
        ("anchor_overlap@10", "top-10 overlap with MiniLM", "#c44e52"),
    )
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(cands) + 2.5), 4.6))
    width = 0.26
    for j, (key, label, color) in enumerate(metrics):
        xs = [i + (j - 1) * width for i in range(len(cands))]
        ys = [e["validation"][key]["all"] for e in cands]
        ax.bar(xs, ys, width, color=color, label=label)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.2f}", (x, y), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(cands)))
    ax.set_xticklabels([textwrap.fill(f"{e['name']}, {e.get('dim', '?')}-d", 16) + f"\n{e['parameters'] / 1e6:.1f} M params"
                        for e in cands], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_xlim(-0.7, len(cands) - 0.3)
    ax.set_ylabel("validation items' queries")
    fig.suptitle(f"{title}\n(chosen: {chosen.split(':')[0]})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def _plots(report: ConversionReport, out: Path) -> Dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {
        "quality_latency": _quality_latency(report, out, plt),
        "index_recall": _index_recall(report.index, out, plt, "index_recall.png", "item index"),
    }
    if report.search is not None:
        names["search_quality_size"] = search_size_plot(report.search.encoders, report.search.chosen, out, plt)
    return names


def _search_lines(search: SearchReport, plots: Dict[str, str]) -> List[str]:
    s = asdict(search)
    h, a, p = s["headline"], s["anchor_headline"], s["personalisation"]
    lines = ["", "## On-device search", "",
             f"Held-out items ({s['split']['heldout']}, never seen by the encoder): generated queries "
             f"({s['device_heldout']['known_item_success@5']['queries']} known-item, "
             f"{s['device_heldout']['intent_precision@10']['queries']} intent), answered by the bundle through "
             "`EdgeRecommender.search` (int8 encoder, search index), without personalisation.", "",
             "| measure | device (int8) | all-MiniLM-L6-v2, full search |", "|---|---:|---:|"]
    for key, label in (("known_item_success@5", "known-item success@5"), ("intent_precision@10", "intent precision@10"),
                       ("anchor_overlap@10", "top-10 overlap with all-MiniLM-L6-v2")):
        lines.append(f"| {label} | {h[key]:.4f} | {a[key]:.4f} |")
    lines += ["", "| query kind | known-item success@5 | overlap@10 |", "|---|---:|---:|"]
    by_success = s["device_heldout"]["known_item_success@5"]["by_kind"]
    by_overlap = s["device_heldout"]["anchor_overlap@10"]["by_kind"]
    by_intent = s["device_heldout"]["intent_precision@10"]["by_kind"]
    for kind in sorted(by_overlap):
        first = by_success.get(kind, by_intent.get(kind))
        kind_label = kind if kind in by_success else f"{kind} (intent precision@10)"
        lines.append(f"| {kind_label} | {first:.4f} | {by_overlap[kind]:.4f} |")
    lines += ["", f"- Personalisation (weight {p['weight']}, chosen on validation queries): the same query gives two "
              f"real users different top-10s in {100 * p['different_top10_share']:.0f}% of {p['queries']} queries "
              f"(mean top-10 overlap between them {p['mean_top10_overlap']:.2f}); known-item success@5 with a user's "
              f"history {p['known_item_success@5_with_history']:.4f}.",
              *_weight_lines(s.get("title_matching"), "Title matching (hybrid search)", "the encoder alone -> hybrid"),
              *_weight_lines(s.get("facet_matching"), "Genres and decades the query names",
                             "hybrid without them -> with them"),
              f"- Encoder: {s['chosen']}; int8 {s['encoder_bytes'] / 1024:.0f} KiB + tokenizer "
              f"{s['tokenizer_bytes'] / 1024:.0f} KiB = {s['tokenizer_and_encoder_bytes'] / 1e6:.2f} MB; ops "
              f"{', '.join(s['ops'])}; float ops: {', '.join(s['float_ops']) or 'none'}; Edge TPU: "
              f"{'compatible' if not s['edgetpu_blockers'] else '; '.join(s['edgetpu_blockers'])}; parity with fp32: "
              f"cosine {s['parity']['cosine_mean']:.4f}, top-10 overlap {s['parity']['top10_overlap']:.3f}.",
              f"- Search space: dimension {s['index']['dim']}, index M={s['index']['M']}, ef_search={s['index']['ef_search']}; "
              f"search p50 {s['latency_ms']['p50']:.3f} ms (p99 {s['latency_ms']['p99']:.3f}) on this bundle.",
              f"- Trained on {s['training_texts']['queries']:,} generated queries of {s['split']['train']} training items "
              f"and {s['training_texts']['transfer']:,} transfer texts; {s['minutes']:.1f} min.", "",
              "| encoder | space dims | pieces | bigram buckets | parameters | valid success@5 | valid overlap@10 | "
              "valid intent p@10 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in s["encoders"]:
        v = e["validation"]
        lines.append(f"| {e['name']} | {e['dim']} | {e['vocab_size']} | {e['bigram_buckets']} | {e['parameters']:,} | "
                     f"{v['known_item_success@5']['all']:.4f} | {v['anchor_overlap@10']['all']:.4f} | "
                     f"{v['intent_precision@10']['all']:.4f} |")
    return lines + ["", f"![search quality against encoder size]({plots['search_quality_size']})"]


def _weight_lines(t: Optional[Dict[str, Any]], what: str, change: str) -> List[str]:
    """A hybrid search weight (title matching, facets) and what it changed on validation queries."""
    if not t or "by_weight" not in t:
        return []
    off, chosen = t["by_weight"]["0.0"], t["by_weight"][str(t["chosen"])]
    return [f"- {what}: weight {t['weight']}, chosen on {t['queries']} validation queries by "
            f"{t['objective']}: success@5 {off['known_item_success@5']:.3f} -> {chosen['known_item_success@5']:.3f}, "
            f"intent precision@10 {off['intent_precision@10']:.3f} -> {chosen['intent_precision@10']:.3f}, overlap@10 "
            f"{off['anchor_overlap@10']:.3f} -> {chosen['anchor_overlap@10']:.3f} ({change})."]


def write_report(report: ConversionReport, out: Union[str, Path]) -> Path:
    """Write report.json, report.md and the plots into directory ``out``; return the Markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report.to_json())
    plots = _plots(report, out)
    cols = ["NDCG@10", "HR@10", "NDCG@20", "HR@20", "MRR", "coverage@10"]
    lines = [
        "# edge-rec conversion report",
        "",
        f"Data: {report.dataset}",
        f"Bundle: `{report.bundle}` (version {report.bundle_version}); conversion took {report.minutes:.1f} min.",
        "",
        "## Quality on the test split (leave-one-out, full ranking, "
        + ("seen items excluded)" if report.test.seen_items == "exclude" else "repeats allowed: seen items are ranked too)"),
        "",
        protocol_line(report.test.seen_items, report.test.repeat_share),
        "",
        "| model | " + " | ".join(cols) + " | top-10 overlap with teacher |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for name, q in report.test.models().items():
        ov = q.overlap_with_teacher
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(f"{q.metrics[c]:.4f}" for c in cols) + f" | {'' if ov is None else f'{ov:.3f}'} |"
        )
    lat, sizes, idx, golden = report.latency, report.sizes, report.index, report.golden
    lines += [
        "",
        f"Bundle NDCG@10 / teacher NDCG@10 = **{report.ndcg_ratio:.3f}**. "
        "The bundle row is the device path (int8 TFLite student, HNSW retrieval, int8 re-scoring); its MRR is MRR@20.",
        "",
        f"![quality and latency]({plots['quality_latency']})",
        "",
        "## Size and speed",
        "",
        f"- TFLite student: **{sizes.tflite_bytes / 1024:.1f} KiB**; ops: {', '.join(report.ops)}",
        f"- Edge TPU compatible: **{'yes' if report.edgetpu_compatible else 'no'}**"
        + ("" if report.edgetpu_compatible else f" ({'; '.join(report.edgetpu_blockers)})"),
        f"- Median latency per query, same run ({lat.queries} test histories): teacher {lat.teacher_ms:.2f} ms "
        f"(compiled with tf.function), student {lat.device_ms:.3f} ms: **{lat.speedup:.0f}x faster**",
        f"- Index: {idx.form}, ef_construction={idx.ef_construction}, ef_search={idx.ef_search}, "
        f"recall@10 {idx.recall:.4f} "
        + ("(near-exact: a small catalog's index within the byte budget)" if idx.near_exact else f"(target {idx.target})")
        + ("" if idx.seen_excluded_recall is None else f", {idx.seen_excluded_recall:.4f} with each user's seen items left out")
        + f"; {sizes.index_bytes_per_item:.0f} B/item on disk "
        f"+ {sizes.item_table_bytes_per_item:.0f} B/item int8 table",
        f"- Golden cases reproduced by the runtime: {golden.top_identical}/{golden.cases} "
        f"identical top-10, min cosine {golden.min_cosine:.5f}",
        "",
        f"![index recall]({plots['index_recall']})",
        "",
        "## Students tried",
        "",
        "| architecture | valid NDCG@10 fp32 | int8 | int8 top-10 overlap with teacher | parity cosine | KiB | ms/query "
        "| float ops |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for st in report.students:
        overlap = "" if st.valid_overlap is None else f"{st.valid_overlap:.3f}"
        lines.append(
            f"| {st.architecture} | {st.valid_fp32['NDCG@10']:.4f} | {st.valid_int8['NDCG@10']:.4f} | {overlap} | "
            f"{st.parity['cosine_mean']:.4f} | {st.tflite_bytes / 1024:.1f} | {st.latency_ms:.3f} | "
            f"{', '.join(st.float_ops) or 'none'} |"
        )
    lines += ["", f"Chosen: {report.chosen}"]
    if report.search is not None:
        lines += _search_lines(report.search, plots)
    if report.cold_start is not None:
        from .coldstart import cold_start_lines
        lines += ["", "## Cold start: items the teacher never saw, shipped by a delta", ""] + cold_start_lines(report.cold_start)
    lines.append("")
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    return out / "report.md"
