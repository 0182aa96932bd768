"""The converter's distributed path: item-text embedding and item-vector export as a Ray Data job on a
local Ray cluster this test starts (a head and two worker nodes), against the local single-process path
on a 20k-item slice of real ML-1M titles."""
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.teacher import TextHead

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic import catalog_texts  # noqa: E402  (the benchmarks' catalog of any size)

pytest.importorskip("ray", reason="the distributed path needs the ray extra (pip install 'edge-rec[ray]')")

ITEMS = 20_000


@pytest.mark.slow
def test_the_ray_job_gives_the_local_vectors_on_a_20k_item_slice(ml1m, tmp_path):
    from converter.distributed import RayTextEncoder, local_cluster
    from converter.text import TextEncoder
    ids, texts = catalog_texts(ml1m, ITEMS)
    rng = np.random.default_rng(0)
    known = ids[:1000]  # items with a learned ID row; the rest are placed from their text alone (cold start)
    head = TextHead(rng.normal(0, 0.05, (384, 32)).astype(np.float32), known, rng.normal(0, 0.1, (1000, 32)).astype(np.float32))
    local = TextEncoder(cache_dir=tmp_path / "local")
    local_text, local_items = local.place(ids, texts, head)
    with local_cluster(workers=2) as address:
        remote = RayTextEncoder(address, workers=2, cache_dir=tmp_path / "ray")
        text, items = remote.place(ids, texts, head)
        again = remote.encode(texts[:50])  # now from the driver's cache: no second job
    assert text.shape == (ITEMS, 384) and items.shape == (ITEMS, 32)
    assert np.abs(text - local_text).max() < 1e-4 and np.abs(items - local_items).max() < 1e-4
    assert np.array_equal(again, text[:50]) and len(remote.jobs) == 1
    stats = remote.jobs[0]
    assert stats.texts == ITEMS and len(stats.workers) == 2, stats.workers  # both workers took a share
    assert all(v["texts"] > 0.2 * ITEMS for v in stats.workers.values()) and stats.texts_per_second > 0


@pytest.mark.parametrize("address,says", [("127.0.0.1:1", "cannot reach the Ray cluster"), ("nonsense", "HOST:PORT")])
def test_a_cluster_nobody_runs_is_a_clear_error_at_once(address, says):
    """Ray itself retries an unreachable address for minutes: the converter checks it first."""
    from converter.distributed import RayTextEncoder
    from converter.errors import ConverterError
    with pytest.raises(ConverterError, match=says):
        RayTextEncoder(address).encode(["a text no cache has"])
