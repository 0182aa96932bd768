"""On-device search quality on MovieLens-1M without a teacher: what `edge-rec convert` builds for search
(tokenizer, int8 query encoder, search space), measured on the held-out items' generated queries the
way the device ranks them (int8 encoder + title matching + the genres and decades a query names), in
minutes instead of a full conversion.

Ranking here uses exact search over the item search vectors where the device uses its hnswlib index
(recall@10 about 0.97 or more), so the numbers are the search's, not the index's. The title weight and
then the facet weight are chosen on validation queries by the same rule as the converter. Writes results/search_quality.json and
.png (validation quality of each encoder size and search-space dimension tried).

    python benchmarks/search_quality.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="MovieLens-1M folder (default: the usual places)")
    p.add_argument("--cache", default="artifacts/ml-1m/cache", help="language-model vector cache")
    p.add_argument("--out", default=str(HERE / "results" / "search_quality.json"))
    args = p.parse_args()
    from converter.provenance import machine_record
    from converter.search.build import SearchConfig, build_search
    from converter.search.evaluate import (
        FACET_WEIGHTS,
        TITLE_WEIGHTS,
        choose_weight,
        headline,
        hybrid_top,
        query_facets,
        search_metrics,
        title_matches,
    )
    from converter.text import TextEncoder
    from converter.workflow import load_dataset
    from edge_rec.model import TFLiteModel
    from edge_rec.query import QueryError, load_tokenizer, normalize_query, text_features
    t0 = time.time()
    dataset = load_dataset(args.data)
    build = build_search(dataset, TextEncoder(cache_dir=args.cache), SearchConfig())
    tokenizer = load_tokenizer(build.tokenizer)
    spec = build.encoder.spec
    encoder = TFLiteModel(build.encoder.tflite, spec.file, spec.inputs, spec.output)

    def encode(texts):
        out = []
        for text in texts:
            try:
                v = encoder.run(text_features(tokenizer.encode(normalize_query(text), out_type=int), build.features)[None, :])
            except QueryError:
                v = np.zeros(build.item_vectors.shape[1], np.float32)
            out.append(v / max(float(np.linalg.norm(v)), 1e-12))
        return np.stack(out)
    valid, heldout = build.valid_queries, build.eval_queries
    v_vec, h_vec = encode([q.text for q in valid]), encode([q.text for q in heldout])
    v_match, h_match = title_matches(dataset, [q.text for q in valid]), title_matches(dataset, [q.text for q in heldout])
    v_facets, h_facets = query_facets(dataset, [q.text for q in valid]), query_facets(dataset, [q.text for q in heldout])
    position = {q.text: i for i, q in enumerate(valid)}

    def valid_search(text: str, title_weight: float, facet_weight: float = 0.0):
        i = position[text]
        return hybrid_top(v_vec[i:i + 1], build.item_vectors, [v_match[i]], title_weight,
                          facets=(v_facets[0], v_facets[1][i:i + 1]), facet_weight=facet_weight)[0].tolist()
    weight, choice = choose_weight(valid_search, valid, dataset.items, build.valid_anchor_top, TITLE_WEIGHTS)
    facet_weight, facet_choice = choose_weight(lambda text, f: valid_search(text, weight, f), valid, dataset.items,
                                               build.valid_anchor_top, FACET_WEIGHTS)
    measured = {}
    for label, w, f in (("encoder alone", 0.0, 0.0), ("hybrid (chosen title weight)", weight, 0.0),
                        ("hybrid + facets (chosen weights)", weight, facet_weight)):
        measured[label] = search_metrics(hybrid_top(h_vec, build.item_vectors, h_match, w, facets=h_facets, facet_weight=f),
                                         heldout, dataset.items, build.anchor_top)
    anchor = search_metrics(build.anchor_top, heldout, dataset.items, build.anchor_top)
    result = {"machine": machine_record(None), "what": __doc__.splitlines()[0],
              "heldout_queries": len(heldout), "title_weight": weight, "title_weight_choice": choice,
              "facet_weight": facet_weight, "facet_weight_choice": facet_choice,
              "headline": {k: headline(v) for k, v in measured.items()}, "anchor_headline": headline(anchor),
              "device_heldout": measured["hybrid + facets (chosen weights)"], "build": build.report,
              "floors": {"known_item_success@5": 0.9, "intent_precision@10": 0.9 * headline(anchor)["intent_precision@10"],
                         "anchor_overlap@10": 0.6},
              "minutes": (time.time() - t0) / 60}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from converter.report import search_size_plot

    search_size_plot(
        build.report["encoders"], build.report["chosen"], out.parent, plt, out.with_suffix(".png").name
    )  # validation quality per candidate
    for label, h in result["headline"].items():
        print(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()))
    print("all-MiniLM-L6-v2: " + ", ".join(f"{k} {v:.4f}" for k, v in result["anchor_headline"].items()))
    print(f"floors: {result['floors']}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
