"""Cold start, measured through the real path: items held out of training reach the device by a delta.

A seeded share of the catalog's items is held out: every interaction with them is removed from training,
as if they were added after the model was trained. The teacher and the bundle are built on the rest;
the held-out items are then published as a change set (the teacher places each from its text alone),
the device syncs the delta over loopback HTTP, and the device's recommend() is measured on the test
events (each user's last interaction) whose target is a held-out item, against popularity baselines
on the same events. Also measured: the share of the device's top-10 slots the cold items win, so that
they neither vanish nor flood.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .data import Dataset, Item, leave_one_out
from .data.split import MIN_EVAL_LENGTH
from .errors import ConverterError
from .evaluate import metrics_from_ranks
from .progress import progress, say

PathLike = Union[str, Path]
K = 10


@dataclass
class ColdSplit:
    """The catalog split for cold start: ``warm`` is what the converter trains on (held-out items and
    every interaction with them removed); ``cold`` are the held-out items; the test events are every
    user's last interaction in the full log, with the full history before it (item ids)."""

    warm: Dataset
    cold: List[Item]
    histories: List[List[str]]
    targets: List[str]
    cold_counts: Dict[str, int]  # interactions with each held-out item in the whole log (the oracle's knowledge)


def cold_split(dataset: Dataset, share: float = 0.1, seed: int = 0) -> ColdSplit:
    """Hold out ``share`` of the items (a seeded draw) and all their interactions."""
    if not 0.0 < share < 1.0:
        raise ConverterError(f"the cold-start share must be within (0, 1), got {share}")
    n_cold = max(1, int(round(share * dataset.n_items)))
    if n_cold >= dataset.n_items:
        raise ConverterError(f"{dataset.name} has {dataset.n_items} items: too few to hold {n_cold} out")
    is_cold = np.zeros(dataset.n_items, bool)
    is_cold[np.random.default_rng(seed).choice(dataset.n_items, n_cold, replace=False)] = True
    new_row = np.cumsum(~is_cold) - 1  # warm item -> its row in the warm catalog
    warm_seqs = [new_row[seq[~is_cold[seq]]].astype(np.int32) for seq in dataset.sequences]
    warm = Dataset(f"{dataset.name}-warm", [it for it, c in zip(dataset.items, is_cold) if not c], list(dataset.user_ids),
                   warm_seqs, list(dataset.cold_items))
    ids = [it.id for it in dataset.items]
    events = [seq for seq in dataset.sequences if len(seq) >= MIN_EVAL_LENGTH]
    counts = np.bincount(np.concatenate(dataset.sequences), minlength=dataset.n_items) if dataset.sequences else np.zeros(0)
    return ColdSplit(warm, [it for it, c in zip(dataset.items, is_cold) if c],
                     [[ids[i] for i in seq[:-1]] for seq in events], [ids[seq[-1]] for seq in events],
                     {ids[i]: int(counts[i]) for i in np.flatnonzero(is_cold)})


def _hits(lists: Sequence[Sequence[str]], targets: Sequence[str]) -> Dict[str, float]:
    """HR@10 and NDCG@10 of recommendation lists (item ids) against one target each, by the project's one
    metric definition (:func:`converter.evaluate.metrics_from_ranks`)."""
    if not len(targets):
        return {"HR@10": 0.0, "NDCG@10": 0.0, "events": 0}
    ranks = np.array([list(lst[:K]).index(t) if t in lst[:K] else math.inf for lst, t in zip(lists, targets)])
    m = metrics_from_ranks(ranks, np.full((len(ranks), K), -1), 1, ks=(K,))  # no item rows here: coverage unused
    return {"HR@10": m[f"HR@{K}"], "NDCG@10": m[f"NDCG@{K}"], "events": len(ranks)}


def _popular(order: Sequence[str], history: Sequence[str], exclude_seen: bool) -> List[str]:
    seen = set(history) if exclude_seen else set()
    out: List[str] = []
    for item_id in order:
        if item_id not in seen:
            out.append(item_id)
            if len(out) == K:
                break
    return out


def measure_cold_start(recommend: Callable[[List[str]], List[str]], split: ColdSplit, exclude_seen: bool) -> Dict[str, Any]:
    """The device (``recommend``: history ids -> top-10 ids) on the cold items' test events, against
    popularity at ship time (training counts: the cold items have none), popularity among the cold items
    (their counts in the whole log: an oracle no device has at ship time) and a random cold item."""
    cold = {it.id for it in split.cold}
    warm_ids = [it.id for it in split.warm.items]
    train = leave_one_out(split.warm).train
    counts = np.bincount(np.concatenate(train), minlength=len(warm_ids)) if train else np.zeros(len(warm_ids))
    by_popularity = [warm_ids[i] for i in np.argsort(-counts, kind="stable")] + sorted(cold)
    cold_by_popularity = sorted(cold, key=lambda i: (-split.cold_counts[i], i))
    device_lists = [recommend(h) for h in progress(split.histories, desc="cold start: device", total=len(split.histories))]
    on_cold = [i for i, t in enumerate(split.targets) if t in cold]
    pick = [split.targets[i] for i in on_cold]
    slots = [item_id for lst in device_lists for item_id in lst[:K]]
    device = _hits([device_lists[i] for i in on_cold], pick)
    warm_events = [i for i, t in enumerate(split.targets) if t not in cold]
    device_warm = _hits([device_lists[i] for i in warm_events], [split.targets[i] for i in warm_events])
    popularity = _hits([_popular(by_popularity, split.histories[i], exclude_seen) for i in on_cold], pick)
    oracle = _hits([_popular(cold_by_popularity, split.histories[i], exclude_seen) for i in on_cold], pick)
    return {
        "cold_items": len(cold), "catalog_items": len(cold) + len(warm_ids), "test_events": len(split.targets),
        "cold_events": len(on_cold), "device": device, "popularity": popularity, "cold_popularity_oracle": oracle,
        "device_on_warm_events": device_warm,
        "random_cold_HR@10": min(1.0, K / max(1, len(cold))),
        "device_over_popularity": device["HR@10"] / popularity["HR@10"] if popularity["HR@10"] else None,
        "device_over_oracle": device["HR@10"] / oracle["HR@10"] if oracle["HR@10"] else None,
        "cold_slot_share": sum(s in cold for s in slots) / max(1, len(slots)),
        "cold_catalog_share": len(cold) / (len(cold) + len(warm_ids)),
        "cold_target_share": len(on_cold) / max(1, len(split.targets)),
    }


@dataclass
class ColdStartRun:
    """What :func:`run_cold_start` built and measured."""

    share: float
    seed: int
    seen_items: str
    teacher_minutes: float
    sync: str
    delta_bytes: int
    metrics: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def run_cold_start(dataset: Dataset, out: PathLike, private_key: PathLike, teacher_config, convert_config,
                   text_encoder, share: float = 0.1, seed: int = 0, seen_items: str = "auto",
                   log: Callable[[str], None] = say) -> ColdStartRun:
    """Hold ``share`` of the items out, train and convert on the rest, publish the held-out items as a
    delta, sync a device over loopback HTTP and measure it (see the module docstring). Writes the
    teacher, bundle, channel and device state under ``out``."""
    from edge_rec.recommender import EdgeRecommender
    from edge_rec.serve import serve_in_thread
    from edge_rec.signing import load_private_key
    from edge_rec.state import DeviceState
    from edge_rec.sync import SyncClient

    from .convert import convert
    from .publish import changes_from_catalog, publish_bundle, publish_changes
    from .search.model import SearchModel
    from .teacher import teacher_configs, train_teacher
    from .workflow import text_vectors

    if not all(getattr(c, "use_text", False) for c in teacher_configs(teacher_config)):
        raise ConverterError("cold start needs a teacher with item text: new items are placed from their text")
    out = Path(out)
    protocol = leave_one_out(dataset, seen_items).seen_items  # the full data's protocol, kept for the warm part
    split = cold_split(dataset, share, seed)
    warm_split = leave_one_out(split.warm, protocol)
    log(f"cold start: {len(split.cold)} of {dataset.n_items} items held out (seed {seed}); training on "
        f"{split.warm.n_interactions:,} of {dataset.n_interactions:,} interactions")
    t = time.time()
    teacher = train_teacher(warm_split, [it.id for it in split.warm.items],
                            text_vectors(split.warm, out / "cache", text_encoder), teacher_config, log=log)
    teacher_minutes = (time.time() - t) / 60
    teacher.save(out / "teacher")
    conversion = convert(split.warm, warm_split, teacher, out / "bundle", private_key, convert_config, log=log,
                         text_encoder=text_encoder, search_model_out=out / "search")
    log("cold start: publishing the held-out items as a delta; a device syncs it over loopback HTTP")
    channel, device, pub = out / "channel", out / "device", load_private_key(private_key).public_key()
    publish_bundle(channel, conversion.bundle, private_key, name=f"{dataset.name}-cold-start")
    change_set = ([{"id": it.id, "title": it.title, "year": it.year, "genres": list(it.genres), **dict(it.extra)}
                   for it in split.cold], [])
    search_model = SearchModel.load(out / "search") if conversion.manifest.search is not None else None
    changes = changes_from_catalog(change_set, teacher, text_encoder, conversion.manifest, search_model)
    published = publish_changes(channel, changes, private_key)
    DeviceState(device).provision(conversion.bundle)
    server, url = serve_in_thread(channel)
    try:
        status = SyncClient(device, url, pub).sync_once()
    finally:
        server.shutdown()
    if status.state != "updated":
        raise ConverterError(f"cold start: the device did not apply the delta: {status.line()}")
    current = DeviceState(device).current_dir()
    with EdgeRecommender.open(current, pub) as rec:
        missing = [it.id for it in split.cold if it.id not in rec.items]
        if missing:
            raise ConverterError(f"cold start: {len(missing)} held-out items are not on the device after the sync")
        exclude = rec.exclude_seen
        metrics = measure_cold_start(lambda h: [r.item_id for r in rec.recommend(K, h)], split, exclude)
    return ColdStartRun(share, seed, protocol, teacher_minutes, status.line(), published.deltas[-1].size, metrics)


def cold_start_lines(run: Dict[str, Any]) -> List[str]:
    """Markdown lines for the conversion report and `edge-rec eval`."""
    m = run["metrics"]
    d, p, o = m["device"], m["popularity"], m["cold_popularity_oracle"]

    def ratio(x: Optional[float]) -> str:
        return "n/a (popularity never reaches them)" if x is None else f"{x:.1f}x"
    return [
        f"{m['cold_items']} of {m['catalog_items']} items ({run['share']:.0%}, seed {run['seed']}) held out of training "
        f"and shipped by a delta ({run['delta_bytes']:,} bytes; device sync: {run['sync']}); "
        f"{m['cold_events']} of {m['test_events']} test events target one of them.",
        "",
        "| on the cold items' test events | HR@10 | NDCG@10 |",
        "|---|---:|---:|",
        f"| device (text-placed vectors, through the delta) | {d['HR@10']:.4f} | {d['NDCG@10']:.4f} |",
        f"| popularity at ship time (training counts) | {p['HR@10']:.4f} | {p['NDCG@10']:.4f} |",
        f"| popularity among the cold items (oracle: their counts in the whole log) | {o['HR@10']:.4f} | {o['NDCG@10']:.4f} |",
        f"| a random cold item | {m['random_cold_HR@10']:.4f} | |",
        "",
        f"Device over popularity: {ratio(m['device_over_popularity'])}; over the oracle: {ratio(m['device_over_oracle'])}. "
        f"On the other {m['device_on_warm_events']['events']} test events (warm targets) the same device has HR@10 "
        f"{m['device_on_warm_events']['HR@10']:.4f}, NDCG@10 {m['device_on_warm_events']['NDCG@10']:.4f}. "
        f"Cold items win {m['cold_slot_share']:.1%} of the device's top-10 slots over all test users "
        f"({m['cold_catalog_share']:.0%} of the catalog, {m['cold_target_share']:.1%} of the test targets).",
    ]
