"""Cold start: the split, the measurement, and the whole path (train without the items, ship them by a
delta, sync a device over loopback HTTP, measure) on a real ML-1M slice in the generic format."""
import numpy as np
import pytest

from converter.coldstart import cold_split, cold_start_lines, measure_cold_start, run_cold_start
from converter.data import Dataset, Item
from converter.errors import ConverterError


def tiny() -> Dataset:
    items = [Item(str(i), f"title {i}") for i in range(30)]
    seqs = [np.array([(u + j) % 30 for j in range(6)], np.int32) for u in range(20)]
    return Dataset("tiny", items, [f"u{u}" for u in range(20)], seqs)


def test_cold_split_removes_every_interaction_with_the_held_out_items():
    data = tiny()
    split = cold_split(data, 0.2, seed=3)
    cold = {it.id for it in split.cold}
    assert len(cold) == 6 and split.warm.n_items == 24 and not cold & {it.id for it in split.warm.items}
    for full, warm in zip(data.sequences, split.warm.sequences):
        kept = [data.items[i].id for i in full if data.items[i].id not in cold]
        assert [split.warm.items[i].id for i in warm] == kept  # order kept, rows re-indexed
    assert len(split.targets) == 20 and split.histories[0] == [data.items[i].id for i in data.sequences[0][:-1]]
    assert split.cold_counts == {c: sum(int(data.items[i].id == c) for seq in data.sequences for i in seq) for c in cold}
    assert cold_split(data, 0.2, seed=3).cold == split.cold and cold_split(data, 0.2, seed=4).cold != split.cold
    with pytest.raises(ConverterError, match="share"):
        cold_split(data, 1.5)


def test_measure_counts_hits_on_cold_events_and_cold_slots():
    split = cold_split(tiny(), 0.2, seed=3)
    cold = [it.id for it in split.cold]
    # a device that always puts the true target first when it is cold, else warm items only
    target = dict(zip(map(tuple, split.histories), split.targets))
    def oracle(h):
        t = target[tuple(h)]
        return ([t] if t in cold else []) + [it.id for it in split.warm.items][:9]
    m = measure_cold_start(oracle, split, exclude_seen=False)
    assert m["cold_events"] == sum(t in cold for t in split.targets) > 0
    assert m["device"]["HR@10"] == 1.0 and m["device"]["NDCG@10"] == 1.0
    assert m["popularity"]["HR@10"] == 0.0 and m["device_over_popularity"] is None  # cold items have no counts
    assert 0 < m["cold_slot_share"] < 1 and m["cold_catalog_share"] == pytest.approx(0.2)
    assert any("HR@10" in line for line in cold_start_lines({"share": 0.2, "seed": 3, "delta_bytes": 1, "sync": "ok",
                                                              "metrics": m}))


@pytest.mark.slow
def test_cold_items_reach_the_device_by_a_delta_and_are_recommended(ml1m_slice, tmp_path):
    from conftest import TEXT_CACHE

    from converter.convert import ConvertConfig
    from converter.data import load_interactions
    from converter.student import StudentConfig
    from converter.teacher import SASRecConfig
    from converter.text import TextEncoder
    from edge_rec.signing import generate_keypair
    data = load_interactions(ml1m_slice["interactions"], ml1m_slice["items"])
    key, _ = generate_keypair(tmp_path / "keys")
    run = run_cold_start(data, tmp_path / "cold", key, SASRecConfig(max_len=50, dim=32, max_epochs=6, eval_every=2),
                         ConvertConfig(student=StudentConfig(epochs=3, history_len=20, hidden=64), architectures=("pool-recent",),
                                       representative_cases=100, parity_cases=100, latency_queries=30, golden_cases=4, search=None),
                         TextEncoder(cache_dir=TEXT_CACHE), share=0.1, seed=0, log=lambda m: None)
    m = run.metrics
    assert run.sync.startswith("[updated]") and run.delta_bytes > 0
    assert m["cold_items"] == round(0.1 * data.n_items) and m["cold_events"] > 0
    assert m["popularity"]["HR@10"] == 0.0  # popularity at ship time cannot reach items without counts
    assert 0 < m["cold_slot_share"] < 0.5   # on the device they neither vanish nor flood
    # (quality needs a real teacher: benchmarks/cold_start.py measures it on the whole of ML-1M)


def test_the_conversion_report_shows_a_cold_start_run(converted, tmp_path):
    import copy

    from converter.report import write_report
    split = cold_split(tiny(), 0.2, seed=3)
    metrics = measure_cold_start(lambda h: [it.id for it in split.cold][:10], split, exclude_seen=True)
    report = copy.copy(converted["report"])
    report.cold_start = {"share": 0.2, "seed": 3, "delta_bytes": 1234, "sync": "[updated] version 2", "metrics": metrics}
    md = write_report(report, tmp_path / "report").read_text()
    assert "## Cold start" in md and "popularity among the cold items" in md and "1,234 bytes" in md
    assert '"cold_start"' in (tmp_path / "report" / "report.json").read_text()
