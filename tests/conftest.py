"""Shared fixtures. Tests that need MovieLens-1M skip when it is absent, but fail under CI=true."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# language-model vectors of test texts, kept between runs (a cache of the real model's outputs)
TEXT_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "text-vectors"


@pytest.fixture(scope="session")
def ml1m_dir() -> Path:
    from converter.data import DatasetNotFoundError, find_movielens_1m
    try:
        return find_movielens_1m()
    except DatasetNotFoundError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have MovieLens-1M: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def ml1m(ml1m_dir):
    from converter.data import load_movielens_1m
    return load_movielens_1m(ml1m_dir)


@pytest.fixture(scope="session")
def ml1m_slice(ml1m, tmp_path_factory) -> dict:
    """The first 300 ML-1M users written in the generic CSV format: real data, small enough for CI."""
    out = tmp_path_factory.mktemp("ml1m_slice")
    users = range(300)
    used = sorted({int(i) for u in users for i in ml1m.sequences[u]})
    with open(out / "items.csv", "w", encoding="utf-8") as f:
        f.write("item,title,year,genres\n")
        for i in used:
            it = ml1m.items[i]
            title = '"' + it.title.replace('"', '""') + '"'
            f.write(f"{it.id},{title},{it.year},{'|'.join(it.genres)}\n")
    with open(out / "interactions.csv", "w") as f:
        f.write("user,item,timestamp\n")
        for u in users:
            for t, i in enumerate(ml1m.sequences[u]):
                f.write(f"{ml1m.user_ids[u]},{ml1m.items[i].id},{1_000_000 + t}\n")
    return {"interactions": out / "interactions.csv", "items": out / "items.csv", "n_users": len(users),
            "n_items": len(used)}


@pytest.fixture(scope="session")
def converted(ml1m_slice, tmp_path_factory):
    """A teacher trained on the real slice and converted to a signed bundle (both student types tried)."""
    from converter.convert import ConvertConfig, convert
    from converter.data import leave_one_out, load_interactions
    from converter.measure import measure
    from converter.student import StudentConfig
    from converter.teacher import SASRecConfig, train_sasrec
    from converter.text import TextEncoder
    from edge_rec.signing import generate_keypair
    root = tmp_path_factory.mktemp("convert")
    data = load_interactions(ml1m_slice["interactions"], ml1m_slice["items"])
    split = leave_one_out(data)
    teacher, _ = train_sasrec(split, [it.id for it in data.items], None,
                              SASRecConfig(max_len=50, dim=32, max_epochs=4, eval_every=2, use_text=False),
                              log=lambda m: None)
    key, pub = generate_keypair(root / "keys")
    config = ConvertConfig(
        student=StudentConfig(epochs=4, history_len=20, hidden=64),
        representative_cases=100,
        parity_cases=100,
        latency_queries=30,
        golden_cases=8,
        search=small_search_config(),
        search_eval_queries=200,
        near_exact_mb=0.0,  # the slice would get a near-exact plain graph: keep the compact store the tests exercise
    )
    conversion = convert(
        data,
        split,
        teacher,
        root / "bundle",
        key,
        config,
        log=lambda m: None,
        text_encoder=TextEncoder(cache_dir=TEXT_CACHE),
        search_model_out=root / "search",
    )
    report = measure(conversion, data, split, teacher, key, config, log=lambda m: None)
    return {
        "root": root,
        "bundle": root / "bundle",
        "data": data,
        "split": split,
        "teacher": teacher,
        "key": key,
        "pub": pub,
        "report": report,
        "search_model": root / "search",
    }


def small_search_config():
    """Search settings for tests: two tiny encoder sizes and a small transfer set (minutes, not an hour)."""
    from converter.search.build import SearchConfig
    from converter.search.encoder import EncoderConfig
    return SearchConfig(encoders=(EncoderConfig("tiny", 1000, 0, 32, 64, head_pieces=0),
                                  EncoderConfig("tiny-split", 1500, 1500, 32, 64, head_pieces=500, tail_dim=16)),
                        dims=(16, 32), general_texts=4000, catalog_texts=4000, epochs=3, queries_per_kind=1,
                        representative=200, parity_cases=200, golden_queries=6)
