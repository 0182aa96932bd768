"""On-device search on a bundle converted from a real ML-1M slice: the converter's report, the runtime's
search (known items, filters, personalisation, bad queries), bundles without search, tampering, items
added by a delta being searchable at once, and the CLI."""
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
from conftest import TEXT_CACHE
from test_runtime import resign

from converter.publish import changes_from_vectors, publish_bundle, publish_changes
from converter.search.model import SearchModel
from converter.search.queries import spoken_title, typed
from converter.text import TextEncoder
from edge_rec import EdgeRecommender, QueryError, SearchUnavailableError
from edge_rec.bundle import Bundle
from edge_rec.errors import IncompatibleBundleError, IntegrityError, ModelError
from edge_rec.history import HistoryStore
from edge_rec.live import LiveRecommender
from edge_rec.manifest import FORMAT_VERSION, MANIFEST_NAME, Manifest
from edge_rec.serve import serve_in_thread
from edge_rec.sync import SyncClient


@pytest.fixture(scope="module")
def rec(converted):
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as r:
        yield r


def titled(converted, n=40):
    """Catalog items with a distinctive title (three words or more), as (id, typed title)."""
    out = []
    for it in converted["data"].items:
        t = typed(spoken_title(it.title))
        if len(t.split()) >= 3:
            out.append((it.id, t))
    return out[:n]


def test_the_report_measures_search(converted):
    s = asdict(converted["report"].search)
    assert {e["name"] for e in s["encoders"]} == {"tiny", "tiny-split"} and s["chosen"]
    assert s["float_ops"] == [] and s["edgetpu_blockers"] == [] and "FULLY_CONNECTED" in s["ops"]
    assert s["parity"]["cosine_mean"] >= 0.98
    assert s["tokenizer_and_encoder_bytes"] == s["tokenizer_bytes"] + s["encoder_bytes"] < 3_000_000
    for key in ("known_item_success@5", "intent_precision@10", "anchor_overlap@10"):
        assert 0.0 <= s["headline"][key] <= 1.0 and s["anchor_headline"][key] is not None
    assert s["anchor_headline"]["anchor_overlap@10"] == 1.0  # the anchor agrees with itself
    assert s["device_heldout"]["known_item_success@5"]["queries"] > 50
    p = s["personalisation"]
    assert 0.0 < p["weight"] <= 0.5 and p["queries"] == 200 and 0.0 <= p["different_top10_share"] <= 1.0
    assert s["latency_ms"]["p50"] > 0 and s["split"]["heldout"] > 0


def test_known_items_are_found(rec, converted):
    pairs = titled(converted)
    found = [item_id in [r.item_id for r in rec.search(title, k=5, personalize=False)] for item_id, title in pairs]
    assert np.mean(found) >= 0.7, f"only {np.mean(found):.2f} of {len(pairs)} titles find their item in the top 5"
    first = rec.search(pairs[0][1], k=3, personalize=False)[0]
    assert first.metadata["title"] and np.isfinite(first.score)


@pytest.mark.parametrize("name,report", [("title_weight", "title_matching"), ("facet_weight", "facet_matching")])
def test_the_converter_chooses_the_search_weights_on_validation(converted, rec, name, report):
    t = getattr(converted["report"].search, report)
    assert set(t["by_weight"]) >= {"0.0", "0.3", "0.5"} and t["queries"] > 50
    assert t["weight"] == t["chosen"] == getattr(rec.bundle.manifest.search, name)
    total = {w: sum(v for v in h.values() if v is not None) for w, h in t["by_weight"].items()}
    closest = max(h["anchor_overlap@10"] for h in t["by_weight"].values())
    allowed = {w for w, h in t["by_weight"].items() if h["anchor_overlap@10"] >= closest - t["overlap_tolerance"]}
    assert str(t["chosen"]) in allowed and total[str(t["chosen"])] == max(total[w] for w in allowed)


@pytest.fixture
def search_weight(rec):
    """Set the bundle's title or facet weight for one test (restored after): ``search_weight(name, w)``."""
    search = rec.bundle.manifest.search
    before = {name: getattr(search, name) for name in ("title_weight", "facet_weight")}
    yield lambda name, w: setattr(search, name, w)
    for name, value in before.items():
        setattr(search, name, value)


def test_title_matching_finds_typed_titles_with_typos(rec, converted, search_weight):
    import random

    from converter.search.queries import typo
    rng = random.Random(0)
    pairs = [(item_id, typo(title, rng)) for item_id, title in titled(converted, 60)]

    def success(weight):
        search_weight("title_weight", weight)
        return np.mean([item_id in [r.item_id for r in rec.search(q, k=5, personalize=False)] for item_id, q in pairs])
    alone, hybrid = success(0.0), success(0.5)
    assert hybrid >= 0.9 and hybrid >= alone, (alone, hybrid)
    search_weight("title_weight", 0.5)
    comedies = rec.search(pairs[0][1], k=10, filter={"genres": "Comedy"}, personalize=False)
    assert comedies and all("Comedy" in r.metadata["genres"] for r in comedies)  # title matches are filtered too


def test_older_formats_search_without_what_they_lack_and_newer_formats_are_refused(converted, tmp_path):
    from edge_rec.signed import signed_payload_of
    from edge_rec.signing import load_private_key, sign
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    raw = json.loads((b / MANIFEST_NAME).read_text())
    newer = FORMAT_VERSION + 1
    lacks = {3: ("title_weight", "facet_weight"), 4: ("facet_weight",), newer: ()}
    for version, dropped in lacks.items():
        doc = {k: v for k, v in raw.items() if k != "signatures"} | {"format_version": version}
        doc["search"] = {k: v for k, v in raw["search"].items() if k not in dropped}
        doc["signatures"] = [sign(signed_payload_of(doc), load_private_key(converted["key"])).__dict__]
        (b / MANIFEST_NAME).write_text(json.dumps(doc))
        if version < newer:
            with EdgeRecommender.open(b, converted["pub"]) as old:
                assert all(getattr(old.bundle.manifest.search, name) == 0.0 for name in dropped)
                assert old.search("toy story", k=3, personalize=False) and old.search("a 90s comedy", k=3, personalize=False)
        else:
            with pytest.raises(IncompatibleBundleError, match="upgrade edge-rec"):
                EdgeRecommender.open(b, converted["pub"])


def test_genres_and_decades_a_query_names_lift_items_that_have_them(rec, search_weight):
    def has(r, genre, decade):
        return (genre is None or genre in r.metadata["genres"]) and (decade is None or r.metadata["year"] // 10 * 10 == decade)
    asks = [("comedy", "Comedy", None), ("90s drama", "Drama", 1990), ("a thriller from the 1980s", "Thriller", 1980),
            ("movies from the seventies", None, 1970)]
    precision = {}
    for w in (0.0, 0.3):
        search_weight("facet_weight", w)
        precision[w] = np.mean([has(r, g, d) for text, g, d in asks for r in rec.search(text, k=10, personalize=False)])
    assert precision[0.3] >= 0.9 and precision[0.3] > precision[0.0], precision
    search_weight("facet_weight", 0.3)
    titled_war = rec.search("war of the worlds", k=10, personalize=False)  # a genre word inside a title
    assert titled_war and all(np.isfinite(r.score) for r in titled_war)


def test_filters_k_and_arguments(rec):
    comedies = rec.search("funny movie", k=10, filter={"genres": "Comedy"}, personalize=False)
    assert len(comedies) == 10 and all("Comedy" in r.metadata["genres"] for r in comedies)
    assert rec.search("funny movie", k=5, filter={"genres": "No Such Genre"}) == []
    everything = rec.search("movie", k=len(rec.items) + 10, personalize=False)
    assert len(everything) == len(rec.items) and len({r.item_id for r in everything}) == len(everything)
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            rec.search("movie", k=k)
    for weight in (1.5, -0.1, "yes"):
        with pytest.raises(ValueError, match="personalize"):
            rec.search("movie", personalize=weight)


def test_personalisation_moves_results_and_reads_the_device_history(rec, converted, tmp_path):
    items, split = converted["data"].items, converted["split"]
    histories = [[items[i].id for i in h[-30:]] for h in split.test.histories[:40]]
    query = "a comedy from the 90s"
    plain = [r.item_id for r in rec.search(query, k=10, personalize=False)]
    moved = [[r.item_id for r in rec.search(query, k=10, history=h, personalize=0.5)] for h in histories]
    assert sum(m != plain for m in moved) >= len(moved) // 2, "a history should change most top-10s"
    assert [r.item_id for r in rec.search(query, k=10, history=histories[0], personalize=0.0)] == plain
    store = HistoryStore(tmp_path / "h.db")
    for t, item in enumerate(histories[0]):
        store.record(item, ts=t)
    with EdgeRecommender.open(converted["bundle"], converted["pub"], history=store) as own:
        assert [r.item_id for r in own.search(query, k=10, personalize=0.5)] == moved[0]
        seen = set(histories[0])
        title = next(typed(spoken_title(it.title)) for it in items if it.id in seen)
        assert any(r.item_id in seen for r in own.search(title, k=10))  # history items are not excluded from search


@pytest.mark.parametrize("query,error", [
    ("", "empty"), ("   \t\n ", "empty"), (b"toy story", "bytes"), (None, "text"), ("\U0001F600\U0001F3AC", "no words"),
    ("!!! ??? ...", "no words"),
])
def test_bad_queries_are_clear_errors(rec, query, error):
    with pytest.raises(QueryError, match=error):
        rec.search(query)


def test_odd_queries_give_clear_results_quickly(rec):
    assert rec.search("\u6771\u4eac\u7269\u8a9e \u0421\u043e\u043b\u044f\u0440\u0438\u0441") == []  # scripts the catalog never uses
    t = time.perf_counter()
    huge = rec.search("love story " * 10_000, k=5)  # 110 KB
    assert len(huge) == 5 and time.perf_counter() - t < 5.0
    assert len(rec.search("toy\x00story\x07\u200b", k=3)) == 3  # control characters are spaces
    assert len(rec.search("Schindler's LIST!!!", k=3)) == 3
    assert len(rec.search("".join(chr(c) for c in range(32, 0x3000, 7)), k=3)) <= 3


def test_a_bundle_without_search_still_opens_and_says_so(converted, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    raw = json.loads((b / MANIFEST_NAME).read_text())
    search = raw.pop("search")
    for name in (search["tokenizer"], search["encoder"]["file"], search["vectors"], search["scales"], search["index"]["file"]):
        raw["files"].pop(name)
        (b / name).unlink()
    raw["format_version"] = 2  # what edge-rec 0.1 wrote
    (b / MANIFEST_NAME).write_text(json.dumps(raw))
    resign(b, converted["key"])
    with EdgeRecommender.open(b, converted["pub"]) as old:
        assert not old.has_search and old.recommend(k=3, history=[])
        assert old.check_golden().passed
        with pytest.raises(SearchUnavailableError, match="has no search"):
            old.search("toy story")
    r = subprocess.run([sys.executable, "-m", "edge_rec.cli", "search", str(b), "toy story", "--key", str(converted["pub"])],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "has no search" in r.stderr and "Traceback" not in r.stderr


def test_tampered_or_broken_search_files(converted, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(converted["bundle"], b)
    m = Manifest.from_bytes((b / MANIFEST_NAME).read_bytes())
    tok = b / m.search.tokenizer
    tok.write_bytes(tok.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match=m.search.tokenizer):
        Bundle.open(b, converted["pub"])
    tok.write_bytes(b"not a sentencepiece model")
    resign(b, converted["key"], m.search.tokenizer)  # a broken converter, correctly signed
    with pytest.raises(ModelError, match="tokenizer"):
        EdgeRecommender.open(b, converted["pub"])


def test_items_a_delta_adds_are_searchable_at_once(converted, tmp_path):
    ch = tmp_path / "channel"
    publish_bundle(ch, converted["bundle"], converted["key"], name="search-test")
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        vectors = rec.items.dequantized(np.arange(len(rec.items)))
        gone = [rec.items.ids[5]]
        gone_title = typed(spoken_title(rec.items.metadata(5)["title"]))
    from converter.data import Item
    new = [Item("new-robot", "Robots of the Red Planet", 2026, ("Sci-Fi", "Adventure")),
           Item("new-wedding", "The Accidental Wedding Planner", 2026, ("Comedy", "Romance"))]
    model = SearchModel.load(converted["search_model"])
    search_vectors = model.item_vectors(new, TextEncoder(cache_dir=TEXT_CACHE).encode([it.text() for it in new]))
    changes = changes_from_vectors({it.id: vectors[i] for i, it in enumerate(new)},
                                   {it.id: {"title": it.title, "year": it.year, "genres": list(it.genres)} for it in new},
                                   gone, dict(zip([it.id for it in new], search_vectors)))
    publish_changes(ch, changes, converted["key"])
    server, url = serve_in_thread(ch)
    try:
        device = tmp_path / "device"
        from edge_rec.state import DeviceState
        DeviceState(device).provision(converted["bundle"])
        status = SyncClient(device, url, converted["pub"]).sync_once()
        assert (status.state, status.version) == ("updated", 2), status.line()
    finally:
        server.shutdown()
    with LiveRecommender(device, converted["pub"]) as live:
        assert live.refresh().bundle.manifest.search.index.built_on_device
        assert "new-robot" in [r.item_id for r in live.search("robots of the red planet", k=5, personalize=False)]
        assert "new-wedding" in [r.item_id for r in live.search("accidental wedding planner", k=5, personalize=False)]
        assert not {r.item_id for r in live.search("movie", k=len(live.refresh().items))} & set(gone)
        assert gone[0] not in [r.item_id for r in live.search(gone_title, k=20, personalize=False)]  # nor by its title


def test_a_delta_without_search_vectors_is_refused_for_a_bundle_with_search(converted, tmp_path):
    from converter.publish import PublishError  # noqa: F401  (the publisher refuses before writing anything)
    from edge_rec.delta import DeltaError
    ch = tmp_path / "channel"
    publish_bundle(ch, converted["bundle"], converted["key"], name="search-test")
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        v = rec.items.dequantized(np.arange(2))
    with pytest.raises(DeltaError, match="need search vectors"):
        publish_changes(ch, changes_from_vectors({"x": v[0]}, {"x": {"title": "x"}}), converted["key"])


def test_search_cli(converted):
    title = titled(converted)[0][1]
    r = subprocess.run([sys.executable, "-m", "edge_rec.cli", "search", str(converted["bundle"]), title, "--key",
                        str(converted["pub"]), "--json", "-k", "3", "--no-personalize"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 3 and {"item_id", "score", "title"} <= set(out[0])
    r = subprocess.run([sys.executable, "-m", "edge_rec.cli", "search", str(converted["bundle"]), "   ", "--key",
                        str(converted["pub"])], capture_output=True, text=True)
    assert r.returncode == 1 and "empty" in r.stderr and "Traceback" not in r.stderr


def test_the_publishers_search_model_round_trips_and_refuses_old_formats(tmp_path):
    from converter.errors import ConverterError
    from converter.search.encoder import principal_space
    rng = np.random.default_rng(0)
    space = principal_space(rng.normal(size=(300, 384)).astype(np.float32), 24)
    assert np.allclose(space.projection.T @ space.projection, np.eye(24), atol=1e-4)  # orthonormal directions
    model = SearchModel(space)
    model.save(tmp_path / "search")
    loaded = SearchModel.load(tmp_path / "search")
    lm = rng.normal(size=(3, 384)).astype(np.float32)
    v = loaded.item_vectors([None] * 3, lm)
    assert v.shape == (3, 24) and np.allclose(np.linalg.norm(v, axis=1), 1.0) and np.allclose(v, model.item_vectors([None] * 3, lm))
    (tmp_path / "search" / "search.json").write_text(json.dumps({"format": "edge-rec-search-model/1", "dim": 96}))
    with pytest.raises(ConverterError, match="older edge-rec: re-run `edge-rec convert`"):
        SearchModel.load(tmp_path / "search")
    with pytest.raises(ConverterError, match="no search model"):
        SearchModel.load(tmp_path / "nothing")
