"""The README's numbers, rendered from the results files the benchmark scripts write.

Each block sits between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->`` in README.md:

    python benchmarks/readme_numbers.py --write     # re-render every block from benchmarks/results
    python benchmarks/readme_numbers.py             # exit 1 if README and results disagree (tests do this)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from converter.conversion_report import ConversionReport, Quality  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- numbers:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /numbers:(?P=name) -->)", re.S)


def load(name: str) -> Dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def source(record: Dict[str, Any], files: str) -> str:
    m = record.get("machine", {})
    full = str(m.get("commit", "?"))
    commit = full[:12] + (" with uncommitted changes" if full.endswith("+changes") else "")
    return (f"<sub>From `{files}`: commit {commit}, {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
            f"{m.get('interpreter', '?')}, measured {m.get('measured', '?')}.</sub>")


def conversion(file: str = "conversion_report_ml1m.json") -> ConversionReport:
    return ConversionReport.from_json(load(file))


def quality(file: str = "conversion_report_ml1m.json", teacher: str = "SASRec + MiniLM text", ablation: bool = True) -> str:
    """The test table of a conversion report (``ablation``: with the no-text teacher's row from teacher.json)."""
    r, t = conversion(file), load("teacher.json")
    rows = [("popularity", r.test.popularity)]
    if ablation and "teacher-notext" in t["test"]:
        rows.append(("teacher without text (ablation)", Quality(t["test"]["teacher-notext"])))
    rows += [
        (f"**teacher** ({teacher})", r.test.teacher),
        ("student fp32", r.test.student_fp32),
        ("**bundle: int8 TFLite student + HNSW**", r.test.bundle),
    ]
    lines = [
        "| model | NDCG@10 | HR@10 | NDCG@20 | HR@20 | top-10 overlap with teacher |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, q in rows:
        m, overlap = q.metrics, q.overlap_with_teacher
        lines.append(
            f"| {name} | {m['NDCG@10']:.4f} | {m['HR@10']:.4f} | {m['NDCG@20']:.4f} | {m['HR@20']:.4f} | "
            f"{'' if overlap is None else f'{overlap:.3f}'} |"
        )
    idx, sizes = r.index, r.sizes
    students = ", ".join(s.architecture for s in r.students)
    chosen = next(s for s in r.students if r.chosen.startswith(s.architecture + ":"))
    fastest = min(r.students, key=lambda s: s.latency_ms)
    trade = ("" if fastest is chosen else
             f" Its invoke takes {chosen.latency_ms:.2f} ms; the fastest candidate, {fastest.architecture}, "
             f"{fastest.latency_ms:.3f} ms at validation NDCG@10 {fastest.valid_int8['NDCG@10']:.4f} and top-10 overlap "
             f"{fastest.valid_overlap:.3f} (`--architectures {fastest.architecture}` ships it).")
    lines += [
        "",
        f"The bundle keeps {r.ndcg_ratio:.3f} of the teacher's NDCG@10. Students tried: "
        f"{students}; chosen: {r.chosen.split(':')[0]}, {sizes.tflite_bytes / 1024:.0f} KiB, Edge TPU "
        f"{'compatible' if r.edgetpu_compatible else 'not compatible'}. The item index holds "
        f"{sizes.index_bytes_per_item:.0f} B/item on disk ({idx.form}, ef_search={idx.ef_search}, recall@10 "
        f"{idx.recall:.3f} against exact search) plus {sizes.item_table_bytes_per_item:.0f} B/item of int8 "
        f"item table. Conversion took {r.minutes:.0f} min." + trade,
        "",
        source(asdict(r), file),
    ]
    if ablation and "teacher-notext" in t["test"]:
        lines.append(source(t, "teacher.json") + "<sub> (the no-text ablation row)</sub>")
    return "\n".join(lines)


def quality_ensemble() -> str:
    """The ensemble teacher's conversion, and what it costs the device against one teacher's."""
    file = "conversion_report_ml1m_ensemble.json"
    one, many = conversion(), conversion(file)
    chosen = [next(s for s in r.students if r.chosen.startswith(s.architecture + ":")) for r in (one, many)]
    rows = {row["label"]: row for row in load("teacher_ensemble.json")["rows"]}
    recipe = rows["teacher-default + teacher-blocks3 + teacher-seed1"]
    return "\n".join([
        quality(file, "ensemble of 3 SASRec + MiniLM text", False), "",
        f"Against one teacher (the table above): the student {chosen[1].tflite_bytes / 1024:.0f} KiB and "
        f"{chosen[1].latency_ms:.2f} ms per invoke (one teacher's: {chosen[0].latency_ms:.2f} ms); the int8 item table {many.sizes.item_table_bytes_per_item:.0f} B/item "
        f"({one.sizes.item_table_bytes_per_item:.0f}); the teacher's training {recipe['train_minutes']:.1f} min "
        f"({rows['teacher-default']['train_minutes']:.1f}).",
    ])


def speed() -> str:
    s = load("speedup.json")
    return (f"Per query, medians of {s['queries']:,} test histories in one run: the teacher's Keras call + exact scoring "
            f"{s['teacher_keras_call_ms']:.1f} ms, the same teacher compiled with tf.function "
            f"{s['teacher_compiled_ms']:.2f} ms, the bundle's device path {s['student_ms']:.3f} ms: "
            f"{s['speedup_vs_keras_call']:.0f}x faster than the Keras call, {s['speedup_vs_compiled']:.0f}x faster than "
            f"the compiled teacher.\n\n" + source(s, "speedup.json"))


def search() -> str:
    s = asdict(conversion().search)
    lat = load("runtime_latency.json")
    h, a, p = s["headline"], s["anchor_headline"], s["personalisation"]
    lines = ["| held-out items' generated queries | device (int8 encoder + search index) | all-MiniLM-L6-v2, full search |",
             "| --- | ---: | ---: |"]
    for key, label in (("known_item_success@5", "known-item success@5"), ("intent_precision@10", "intent precision@10"),
                       ("anchor_overlap@10", "top-10 overlap with all-MiniLM-L6-v2")):
        lines.append(f"| {label} | {h[key]:.3f} | {a[key]:.3f} |")
    grown = [b for b in lat["bundles"] if "grown" in b]
    big = lat["bundles"][grown[0]] if grown else None
    lines += ["", f"- Queries: {s['device_heldout']['known_item_success@5']['queries']:,} known-item and "
              f"{s['device_heldout']['intent_precision@10']['queries']:,} intent queries of {s['split']['heldout']} held-out "
              "items the encoder never saw.",
              f"- Tokenizer + encoder: {s['tokenizer_and_encoder_bytes'] / 1e6:.2f} MB ({s['chosen'].split(':')[0]}; "
              f"SentencePiece {s['tokenizer_bytes'] / 1024:.0f} KiB, int8 encoder {s['encoder_bytes'] / 1024:.0f} KiB, ops "
              f"{', '.join(s['ops'])}, Edge TPU {'compatible' if not s['edgetpu_blockers'] else 'not compatible'}; int8 vs "
              f"fp32 cosine {s['parity']['cosine_mean']:.4f}). Search space: {s['index']['dim']} dimensions, index M="
              f"{s['index']['M']}, ef_search={s['index']['ef_search']}.",
              f"- Personalisation (weight {p['weight']}): the same query gives two real users different top-10s in "
              f"{100 * p['different_top10_share']:.0f}% of {p['queries']} queries; known-item success@5 with a user's "
              f"history {p['known_item_success@5_with_history']:.3f}.",
              f"- search() p50 {s['latency_ms']['p50']:.2f} ms on the ML-1M bundle"
              + (f"; at {grown[0].split()[0]} items (synthetic catalog) p50 {big['search']['p50_ms']:.2f} ms, p99 "
                 f"{big['search']['p99_ms']:.2f} ms, personalised p50 {big['search, personalised']['p50_ms']:.2f} ms "
                 "(one thread, metadata included)." if big and "search" in big else "."),
              "", source(load("runtime_latency.json"), "conversion_report_ml1m.json, runtime_latency.json")]
    return "\n".join(lines)


def runtime() -> str:
    r = load("runtime_latency.json")
    cases = ["recommend", "recommend, genre filter", "search", "search, personalised", "search, personalised, genre filter"]
    lines = ["| bundle | " + " | ".join(f"{c} p50 / p99 ms" for c in cases) + " | import + open |",
             "| --- |" + " ---: |" * (len(cases) + 1)]
    for name, b in r["bundles"].items():
        cells = [f"{b[c]['p50_ms']:.2f} / {b[c]['p99_ms']:.2f}" if c in b else "" for c in cases]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {b['import+open']['import_open_s']:.2f} s |")
    g = r.get("grown_bundle", {})
    lines += ["", f"The grown catalog: {g.get('how', '')}; item index {g.get('index_form') or 'M=' + str(g.get('index_M'))}, "
              f"ef_search={g.get('ef_search')}, "
              f"recall@10 {g.get('recall@10', 0):.3f}."]
    env = r.get("runtime_env")
    if env:
        largest = ", ".join(f"{k} {v:.0f} MB" for k, v in list(env["largest"].items())[:3])
        lines.append(f"A runtime-only venv (`pip install edge-rec`, no extras) is {env['venv_mb']:.0f} MB ({largest}); the "
                     f"edge_rec package itself {env['edge_rec_package_mb']:.1f} MB.")
    return "\n".join(lines + ["", source(r, "runtime_latency.json")])


def delta() -> str:
    d = load("delta_sync.json")
    return (f"On the {d['items']:,}-item catalog, a delta changing {100 * d['changed_fraction']:.0f}% of the items "
            f"({d['upserted']} upserted, {d['deleted']} deleted) is {d['delta_bytes'] / 1e3:.1f} KB, "
            f"{100 * d['ratio']:.2f}% of the {d['snapshot_bytes'] / 1e6:.0f} MB snapshot; applying it takes "
            f"{d['apply_s']['median']:.2f} s (median), a whole sync over loopback {d['sync_s']:.2f} s.\n\n"
            + source(d, "delta_sync.json"))


def fleet() -> str:
    f = load("fleet.json")
    g = f["per_group"]
    rows = ["| devices starting | devices | bytes served per device (median / max, share of a snapshot) | requests (median / max) |",
            "| --- | ---: | ---: | ---: |"]
    for name, label in (("fresh", "fresh (no version)"), ("expired", "expired (deltas gone: snapshot)"),
                        ("many behind", "three versions behind"), ("one behind", "one version behind")):
        b, r = g[name]["bytes_vs_snapshot"], g[name]["requests"]
        rows.append(f"| {label} | {g[name]['devices']} | {100 * b['median']:.2f}% / {100 * b['max']:.2f}% | "
                    f"{r['median']:.0f} / {r['max']} |")
    slow = f["slowest_device"]
    faults = f["faults"]
    return "\n".join([
        f"{f['devices']} devices, {f['requests']:,} requests: {faults.get('drop', 0)} dropped mid-body, "
        f"{faults.get('stall', 0)} stalled, {faults.get('corrupt', 0)} corrupted ({100 * f['fault_share']:.1f}% dropped "
        f"or stalled, {100 * f['corrupt_share']:.1f}% corrupted). At the end {100 * f['on_latest_at_end']:.0f}% of the "
        f"devices were on version {f['versions']}, with {f['corrupt_installs']} corrupt or half-applied installs; the "
        f"slowest device ({slow['group']}) got there after {slow['rounds']} sync{'' if slow['rounds'] == 1 else 's'} and {slow['seconds']:.0f} s, the whole "
        f"fleet in {f['wall_s']:.0f} s{_at_a_time(f)}. Each delta changes {100 * f['changed_fraction']:.0f}% of the catalog.", "",
        *rows, "", source(f, "fleet.json")])


def _at_a_time(f: Dict[str, Any]) -> str:
    n = f.get("devices_at_a_time")
    return (f" ({n} devices syncing at a time: the times are the simulator's throughput on this machine, not a CDN's)"
            if n else " (the simulator syncs a limited number of devices at a time: the times are its throughput)")


def device() -> str:
    lines = ["| run | golden cases: identical / min query cosine | vs the x86 kit: identical top-10 / min overlap / min "
             "query cosine | search: same top-10 | installed |", "| --- | --- | --- | --- | --- |"]
    for name, label in (("device_x86_64.json", "x86_64"), ("arm64-tflite.json", "aarch64 (emulated) tflite-runtime"),
                        ("arm64-litert.json", "aarch64 (emulated) ai-edge-litert")):
        d = load(name)
        p, s, g = d["parity"], d.get("search"), d["golden"]
        searched = f"{s['identical_top10']}/{s['queries']}" if s else "n/a"
        lines.append(f"| {label} {d.get('backend', '')} | {g['identical_top10']}/{g['cases']} / {g['min_cosine']:.4f} | "
                     f"{p['identical_top10']}/{p['cases']} / {p['min_top10_overlap']:.1f} / {p['min_query_cosine']:.4f} | "
                     f"{searched} | {d['installed_mb']['total']:.0f} MB |")
    return "\n".join(lines)


def kiosk() -> str:
    k = load("kiosk.json")
    b, load_ = k["browser"], k["load"]
    return (f"In headless Chromium on this machine: first paint p50 {b['first_contentful_paint_ms']['p50']:.0f} ms, "
            f"first cards on screen p50 {b['first_cards_on_screen_ms']['p50']:.0f} ms, a tap to the updated list on screen "
            f"p50 {b['tap_to_updated_list_ms']['p50']:.0f} ms ({b['tap_to_updated_list_ms']['n']} taps); the server at "
            f"{load_['rate_per_s']:.0f} requests/s for {load_['seconds']:.0f} s ({load_['mix']}): p50 {load_['p50_ms']:.1f} ms, "
            f"p99 {load_['p99_ms']:.1f} ms, {load_['errors']} errors.\n\n" + source(k, "kiosk.json"))


def demo() -> str:
    d, full = load("demo_quick.json"), conversion().test.teacher.metrics["NDCG@10"]
    return (
        f"Measured from a fresh clone on this machine: `make demo QUICK=1` took {d['demo_minutes']:.1f} min after the "
        f"install ({d['install_minutes']:.1f} min), and the kiosk answered {d['kiosk_seconds']:.0f} s after `make "
        f"kiosk`: {d['demo_minutes'] + d['kiosk_seconds'] / 60:.1f} min in all. The quick teacher's test NDCG@10 is "
        f"{d['quick_teacher_ndcg@10']:.4f} (the full one's {full:.4f}); the quick bundle's "
        f"{d['quick_bundle_ndcg@10']:.4f}." + _load_note(d) + "\n\n" + source(d, "demo_quick.json, conversion_report_ml1m.json")
    )


def _load_note(d: Dict[str, Any]) -> str:
    load = d.get("load_average_1min")
    if not load:
        return " (The run did not record the machine's load.)"
    alone = "little else was running" if load["before_demo"] < 1 else "other work was competing for the cores"
    return (f" The machine's 1-minute load average was {load['before_demo']:.1f} when the demo started ({alone}; "
            f"the demo itself then keeps both cores busy).")


def search_alone() -> str:
    s = load("search_quality.json")
    h, a, f = s["headline"], s["anchor_headline"], s["floors"]
    rows = ["| held-out items' generated queries | encoder alone | + title matching (weight "
            f"{s['title_weight']}) | + genres and decades (weight {s['facet_weight']}) | all-MiniLM-L6-v2, full search | "
            "floor |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, label in (("known_item_success@5", "known-item success@5"), ("intent_precision@10", "intent precision@10"),
                       ("anchor_overlap@10", "top-10 overlap with all-MiniLM-L6-v2")):
        rows.append(f"| {label} | {h['encoder alone'][key]:.3f} | {h['hybrid (chosen title weight)'][key]:.3f} | "
                    f"{h['hybrid + facets (chosen weights)'][key]:.3f} | {a[key]:.3f} | {f[key]:.3f} |")
    b = s["build"]
    rows += ["", f"- {s['heldout_queries']:,} queries; encoder: {b['chosen'].split(':')[0]}, tokenizer + int8 encoder "
             f"{(b['encoder_bytes'] + b['tokenizer_bytes']) / 1e6:.2f} MB; built in {b['minutes']:.1f} min.",
             "", source(s, "search_quality.json")]
    return "\n".join(rows)


def query_path() -> str:
    now, before = load("query_path.json"), load("query_path_before.json")
    return "\n".join([
        "| recommend() at 100k items, one thread | before | after |", "| --- | ---: | ---: |",
        f"| p50 after a tap (history in memory) | {before['recommend_p50_ms']:.3f} ms | {now['recommend_p50_ms']:.3f} ms |",
        f"| floor in the same run (student invoke + the store's own query) | {before['floor_p50_ms']:.3f} ms | "
        f"{now['floor_p50_ms']:.3f} ms |",
        f"| ratio to the floor | {before['ratio']:.2f} | {now['ratio']:.2f} |",
        f"| p99 | {before['recommend_p99_ms']:.3f} ms | {now['recommend_p99_ms']:.3f} ms |",
        "", source(now, "query_path.json, query_path_before.json") + f" <sub>Grown bundle: {now['items']:,} items, "
        f"manifest sha256 {now['machine']['bundle_manifest_sha256'][:12]}.</sub>"])


def index_peers(name: str = "index_peers.json") -> str:
    r = load(name)
    rows = [f"| store ({r['items']:,} items, {r['dim']}-d) | bytes/item on disk | narrowest search width with recall@10 "
            "≥ 0.95 | recall@10 there | median ms per query |", "| --- | ---: | ---: | ---: | ---: |"]
    for s in r["stores"]:
        good = [p for p in s["points"] if p["recall@10"] >= 0.95]
        p = good[0] if good else max(s["points"], key=lambda p: p["recall@10"])
        width = str(p["width"]) if good else f"none (best: {p['width']})"
        rows.append(f"| {s['store']} | {s['bytes_per_item']:.0f} | {width} | {p['recall@10']:.3f} | {p['query_ms_p50']:.3f} |")
    return "\n".join(rows + ["", source(r, name) + f" <sub>{r['queries']} queries; manifest sha256 "
                                   f"{r['machine']['bundle_manifest_sha256'][:12]}.</sub>"])


def distributed() -> str:
    r = load("distributed.json")
    rows = [f"| {r['items']:,} item texts, embedded and placed | texts/s | per worker (busy time) | largest difference "
            "from the local vectors |", "| --- | ---: | --- | ---: |"]
    for run in r["runs"]:
        diff = run.get("max_abs_difference")
        rows.append(f"| {run['path']} | {run['texts_per_second']:.0f} | "
                    f"{', '.join(f'{v:.0f}' for v in run['per_worker'].values()) or '-'} | "
                    f"{'-' if diff is None else f'{max(diff.values()):.1e}'} |")
    return "\n".join(rows + ["", source(r, "distributed.json")])


def _rss_split(mem: dict) -> str:
    """How much of the resident memory is file pages (mapped tables, libraries: clean, reclaimable)."""
    if "file_backed_mb" not in mem:  # results from before the split was recorded
        return ""
    return f"; anonymous {mem['anonymous_mb']:.0f}, file-backed {mem['file_backed_mb']:.0f}"


def million(name: str = "million.json") -> str:
    r = load(name)
    lat, mem, d, st = r["latency"], r["memory"], r["delta"], r["store"]
    f = r["floors"]
    rows = ["| at {:,} items (one thread) | measured | floor |".format(r["items"]), "| --- | ---: | ---: |",
            f"| item store on disk (index + projection + int8 table) | {st['item_store_bytes_per_item']:.0f} B/item | "
            f"{f['item_store_bytes_per_item']} B/item |",
            f"| open (verify + load, fresh process, median) | {r['open']['open_s']:.2f} s | {f['open_s']:g} s |",
            f"| resident memory after opening / after serving {mem['histories']} users | {mem['after_open_mb']:.0f} / "
            f"{mem['after_serving_mb']:.0f} MB "
            f"(peak {mem['peak_mb']:.0f}{_rss_split(mem)}) | {f['rss_mb']} MB |",
            f"| recommend p50 / p99 | {lat['recommend_p50_ms']:.3f} / {lat['recommend_p99_ms']:.3f} ms | "
            f"{f['recommend_ratio']:g} x floor |",
            f"| floor in the same run (student invoke + the store's own query) | {lat['floor_p50_ms']:.3f} ms | |",
            f"| recommend / floor | {lat['ratio']:.2f} | {f['recommend_ratio']:g} |",
            f"| similar_items p50 / p99 | {lat['similar']['p50_ms']:.3f} / {lat['similar']['p99_ms']:.3f} ms | |",
            f"| recommend with a genre filter p50 / p99 | {lat['recommend, genre filter']['p50_ms']:.3f} / "
            f"{lat['recommend, genre filter']['p99_ms']:.3f} ms | |",
            f"| 1% delta ({d['upserted']:,} upserted, {d['deleted']:,} deleted) | {d['delta_bytes'] / 1e6:.1f} MB = "
            f"{100 * d['ratio']:.2f}% of the {d['snapshot_bytes'] / 1e6:.0f} MB snapshot | {100 * f['delta_share']:g}% |",
            f"| applying it (median) / a whole sync over loopback | {d['apply_s']['median']:.2f} s / {d['sync_s']:.2f} s | "
            f"{f['delta_apply_s']:g} s |"]
    return "\n".join(rows + _insert_widths(r) + _memory_parts(mem) + [
        "", source(r, name) + f" <sub>Grown bundle manifest sha256 {r['machine']['bundle_manifest_sha256'][:12]}; "
        f"{r['how']}.</sub>"])


def _insert_widths(r: dict) -> List[str]:
    """The same delta published at several insertion widths (million.py --insert-widths)."""
    if "insert_widths" not in r:
        return []
    rows = ["", "| delta insertion width | apply (median) | recall@10, real users' queries | recall@10, the delta's own "
            "items' vectors |", "| ---: | ---: | ---: | ---: |"]
    for width, w in r["insert_widths"].items():
        rows.append(f"| {width} | {w['apply_s']['median']:.2f} s | {w['recall_at_10']['users']:.4f} | "
                    f"{w['recall_at_10']['delta items']:.4f} |")
    return rows


def _memory_parts(mem: dict) -> List[str]:
    """Where the resident memory goes (results that record it)."""
    if "runtime_only" not in mem:
        return []
    files = mem["bundle_files_after_serving_mb"]
    table = ", ".join(f"{name} {mb:.1f}" for name, mb in sorted(files.items(), key=lambda kv: -kv[1]))
    return ["", f"Resident memory, in parts: the runtime alone (Python, numpy, hnswlib, the interpreter, before opening) "
                f"{mem['runtime_only']['rss_mb']:.0f} MB ({mem['runtime_only']['anonymous_mb']:.0f} anonymous); after "
                f"opening {mem['after_open']['anonymous_mb']:.0f} MB anonymous and {mem['after_open']['file_backed_mb']:.0f} "
                f"file-backed; after serving, the bundle's mapped files resident (MB): {table}."]


def cold_start() -> str:
    runs = [("cold_start.json", load("cold_start.json")), ("cold_start_id_dropout.json", load("cold_start_id_dropout.json"))]
    m = runs[0][1]["metrics"]
    rows = [f"| {m['cold_items']} of {m['catalog_items']:,} items held out, shipped by a delta; {m['cold_events']} of "
            f"{m['test_events']:,} test events target them | HR@10 | NDCG@10 | their share of the top-10 slots | "
            "HR@10 / NDCG@10 on the other events |", "| --- | ---: | ---: | ---: | ---: |"]
    for _, r in runs:
        c, d, w = r["metrics"], r["metrics"]["device"], r["metrics"]["device_on_warm_events"]
        rows.append(f"| device, teacher trained at ID dropout {r['teacher']['id_dropout']:g} | {d['HR@10']:.4f} | "
                    f"{d['NDCG@10']:.4f} | {c['cold_slot_share']:.1%} | {w['HR@10']:.4f} / {w['NDCG@10']:.4f} |")
    p, o = m["popularity"], m["cold_popularity_oracle"]
    rows += [f"| popularity at ship time (training counts) | {p['HR@10']:.4f} | {p['NDCG@10']:.4f} | | |",
             f"| popularity among the held-out items (oracle: their counts in the whole log) | {o['HR@10']:.4f} | "
             f"{o['NDCG@10']:.4f} | | |",
             f"| a random held-out item | {m['random_cold_HR@10']:.4f} | | | |"]
    notes = [f"The held-out items are {m['cold_catalog_share']:.0%} of the catalog and {m['cold_target_share']:.1%} of the "
             f"test targets. Each run: a {runs[0][1]['teacher']['max_minutes']:g}-minute teacher reading the last "
             f"{runs[0][1]['teacher'].get('max_len', 200)} items, a pool-recent student, "  # files without max_len: 200, the default then
             f"the delta {runs[0][1]['delta_bytes']:,} bytes, device sync `{runs[0][1]['sync']}`."]
    base, drop = runs[0][1]["metrics"], runs[1][1]["metrics"]
    hr = drop["device"]["HR@10"]
    notes.append(f"ID dropout {runs[1][1]['teacher']['id_dropout']:g} lifts the held-out items' HR@10 "
                 f"{hr / max(base['device']['HR@10'], 1e-9):.0f}x (to {hr / m['random_cold_HR@10']:.1f}x a random held-out "
                 f"item, {hr / o['HR@10']:.2f}x the oracle) and their share of the slots from {base['cold_slot_share']:.1%} "
                 f"to {drop['cold_slot_share']:.1%}, for {1 - drop['device_on_warm_events']['NDCG@10'] / base['device_on_warm_events']['NDCG@10']:.1%} "
                 "less NDCG@10 on the other events.")
    return "\n".join(rows + [""] + notes + [""] + [source(r, name) for name, r in runs])


def teacher_ablation(file: str = "teacher_ablation.json") -> str:
    """The teacher recipes tried within the 55-minute budget: validation for the choice, test for each."""
    r = load(file)
    arms = r["teachers"]
    base = next(iter(arms.values()))["config"]
    rows = ["| teacher (differs from the first by) | epochs run | stopped by | best epoch | valid NDCG@10 | valid HR@10 | "
            "test NDCG@10 | test HR@10 |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, a in arms.items():
        changed = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in a["config"].items()
                            if k != "max_minutes" and base.get(k) != v) or "the shipped recipe"
        stopped = "early stopping" if a["stopped"].startswith("early stop") else a["stopped"]
        t = r["test"][name]
        rows.append(f"| {name}: {changed} | {a['epochs_run']} | {stopped} ({a['train_seconds'] / 60:.0f} min) | "
                    f"{a['best_epoch']} | {a['valid']['NDCG@10']:.4f} | {a['valid']['HR@10']:.4f} | {t['NDCG@10']:.4f} | "
                    f"{t['HR@10']:.4f} |")
    return "\n".join(rows + ["", source(r, file)])


def teacher_ensemble() -> str:
    """Saved teachers alone and together (summed logits), on test."""
    r = load("teacher_ensemble.json")
    rows = [f"| teachers | training minutes (each early-stopped) | {r['split']} NDCG@10 | {r['split']} HR@10 |",
            "| --- | ---: | ---: | ---: |"]
    for row in r["rows"]:
        rows.append(f"| {row['label']} | {row['train_minutes']:.1f} | {row['metrics']['NDCG@10']:.4f} | "
                    f"{row['metrics']['HR@10']:.4f} |")
    return "\n".join(rows + ["", source(r, "teacher_ensemble.json") + f" <sub>{r['how']}.</sub>"])


RENDER: Dict[str, Callable[[], str]] = {"quality": quality,
                                        "quality-ensemble": quality_ensemble,
                                        "speed": speed, "search": search, "runtime": runtime,
                                        "delta": delta, "fleet": fleet, "device": device, "kiosk": kiosk, "demo": demo,
                                        "search-alone": search_alone, "query-path": query_path,
                                        "index-peers": index_peers, "index-peers-1m": lambda: index_peers("index_peers_1m.json"),
                                        "distributed": distributed,
                                        "million": million, "million-quick": lambda: million("million_quick.json"),
                                        "cold-start": cold_start,
                                        "teacher-ablation": teacher_ablation,
                                        "teacher-ablation-width": lambda: teacher_ablation("teacher_ablation_width.json"),
                                        "teacher-ensemble": teacher_ensemble}


def render(text: str) -> str:
    def block(m: "re.Match[str]") -> str:
        name = m.group("name")
        if name not in RENDER:
            raise KeyError(f"README has a numbers block {name!r} that no results file renders")
        return f"{m.group(1)}{RENDER[name]()}\n{m.group(4)}"
    return BLOCK.sub(block, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="update README.md from the results files")
    args = p.parse_args()
    text = README.read_text()
    rendered = render(text)
    if args.write:
        README.write_text(rendered)
        print(f"README.md: {len(BLOCK.findall(text))} numbers blocks rendered")
        return 0
    if rendered != text:
        print("README.md's numbers differ from benchmarks/results: run python benchmarks/readme_numbers.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
