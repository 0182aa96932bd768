"""Converter subcommands of ``edge-rec``: train-teacher, eval, convert, demo.

Registered through the ``edge_rec.commands`` entry point; heavy imports (TensorFlow, torch) happen
inside the handlers, so ``edge-rec --help`` stays fast and works without the converter extra.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

from .teacher.ensemble import RECIPE as ENSEMBLE_RECIPE


def _data_args(p: argparse.ArgumentParser) -> None:
    from .data.split import REPEAT_SHARE
    g = p.add_argument_group("data (MovieLens-1M by default, or the generic CSV/TSV format)")
    g.add_argument("--data", metavar="DIR", help="MovieLens-1M folder (default: $EDGE_REC_ML1M, ../shared/data/ml-1m, ./data/ml-1m)")
    g.add_argument("--interactions", metavar="FILE", help="generic interactions file: user,item,timestamp[,weight]")
    g.add_argument("--items", metavar="FILE", help="generic items file: item[,title,year,genres,...]")
    g.add_argument("--delimiter", help="field delimiter of the generic files (default: by extension)")
    g.add_argument("--seen-items", choices=("auto", "exclude", "repeat"), default="auto",
                   help="repeat-consumption protocol for evaluation and the bundle: exclude seen items, or rank them "
                        f"too (re-purchases); auto: 'repeat' when >= {100 * REPEAT_SHARE:.0f}%% of held-out targets repeat a seen item")


def _teacher_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("teacher")
    g.add_argument("--no-text", action="store_true", help="ID embeddings only (ablation: no language-model text)")
    g.add_argument("--epochs", type=int, help="maximum epochs (default 200)")
    g.add_argument("--max-minutes", type=float, help="training time budget (default 55)")
    g.add_argument("--dim", type=int, help="hidden size (default 64)")
    g.add_argument("--max-len", type=int, help="history length the model reads (default 50)")
    g.add_argument("--blocks", type=int, help="transformer blocks (default 2)")
    g.add_argument("--dropout", type=float, help="dropout rate of the embeddings and blocks (default 0.1)")
    g.add_argument("--id-dropout", type=float, help="share of items trained on their text alone in each step, so "
                                                    "new items placed by their text rank well (default 0)")
    g.add_argument("--ensemble", nargs="?", const=ENSEMBLE_RECIPE, metavar="SPEC",
                   help="train several teachers in turn within --max-minutes and score by their summed scores: "
                        "comma-separated members, each 'default' (the options above) or key=value overrides joined by "
                        f"'+' (given no SPEC: {ENSEMBLE_RECIPE!r})")


def _teacher_config(args: argparse.Namespace):
    """A SASRecConfig from the teacher options, or with --ensemble a list of them (one per member)."""
    from .teacher import SASRecConfig, member_configs
    overrides = {"use_text": not args.no_text, "max_epochs": args.epochs, "max_minutes": args.max_minutes,
                 "dim": args.dim, "max_len": args.max_len, "blocks": args.blocks, "dropout": args.dropout, "id_dropout": args.id_dropout}
    config = SASRecConfig(**{k: v for k, v in overrides.items() if v is not None})
    return member_configs(args.ensemble, config) if getattr(args, "ensemble", None) else config


def _load(args: argparse.Namespace):
    """The data set and its split; where every command that trains or measures starts, so the commit its
    results record is the code it started with."""
    from .data import leave_one_out
    from .provenance import git_commit
    from .workflow import load_dataset
    git_commit()
    dataset = load_dataset(args.data, args.interactions, args.items, args.delimiter)
    print(dataset.summary())
    return dataset, leave_one_out(dataset, args.seen_items)


def _artifacts(args: argparse.Namespace, dataset) -> Path:
    from .workflow import DEFAULT_ARTIFACTS
    return Path(args.artifacts) if args.artifacts else DEFAULT_ARTIFACTS / dataset.name


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from .workflow import train_or_load_teacher
    dataset, split = _load(args)
    root = _artifacts(args, dataset)
    config = _teacher_config(args)
    out = Path(args.out) if args.out else root / ("teacher-notext" if args.no_text else "teacher")
    train_or_load_teacher(dataset, split, out, root / "cache", config, force=args.force,
                          text_encoder=_text_encoder(args, root / "cache"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .report import protocol_line
    from .workflow import evaluate_models, format_table
    dataset, split = _load(args)
    models = {}
    for path in args.teacher or []:
        models[Path(path).name] = _saved_teacher(path, dataset)
    out = Path(args.json) if args.json else _artifacts(args, dataset) / f"eval-{args.split}.json"
    results = evaluate_models(models, dataset, split, args.split, out)
    print(protocol_line(split.seen_items, split.repeat_share).replace("**", ""))
    print(format_table(results))
    print(f"written to {out}")
    if args.bundle:
        _eval_bundle_search(args, dataset, split, out.with_name(f"eval-search-{Path(args.bundle).name}.json"))
    if args.cold_start:
        _eval_cold_start(args, dataset, out.with_name("eval-cold-start.json"))
    return 0


def _eval_cold_start(args: argparse.Namespace, dataset, out: Path) -> None:
    from edge_rec.atomic import atomic_write_json

    from .coldstart import cold_start_lines
    run = _cold_start(args, dataset, out.parent)
    atomic_write_json(out, run)
    print("\n".join(cold_start_lines(run)))
    print(f"written to {out}")


def _cold_start(args: argparse.Namespace, dataset, root: Path) -> dict:
    """The cold-start protocol (converter.coldstart) under ``root``/cold-start: a teacher and bundle without
    the held-out items, the items shipped by a delta to a device over loopback HTTP, the device measured."""
    from edge_rec.signing import generate_keypair

    from .coldstart import run_cold_start
    from .convert import ConvertConfig
    from .student import StudentConfig
    work = root / "cold-start"
    key, _ = generate_keypair(work / "keys")  # the bundle only serves this measurement
    epochs = getattr(args, "student_epochs", None)
    config = ConvertConfig(architectures=("pool-recent",), search=None,
                           student=StudentConfig(**({"epochs": epochs} if epochs else {})))
    return run_cold_start(dataset, work, key, _teacher_config(args), config, _text_encoder(args, root / "cache"),
                          share=args.cold_start, seed=args.seed, seen_items=args.seen_items).to_dict()


def _eval_bundle_search(args: argparse.Namespace, dataset, split, out: Path) -> None:
    """Search quality of a bundle, through the runtime, on the held-out items' generated queries."""
    from edge_rec.atomic import atomic_write_json
    from edge_rec.recommender import EdgeRecommender

    from .search.build import SearchConfig, heldout_queries
    from .search.evaluate import device_search, exact_top
    from .text import TextEncoder
    if not args.key:
        raise ValueError("--bundle needs --key (the bundle's public key)")
    with EdgeRecommender.open(args.bundle, args.key) as rec:
        info = rec.bundle.manifest.info.get("search")
        if not rec.has_search or not isinstance(info, dict):
            print(f"{args.bundle}: no on-device search to evaluate")
            return
        config = SearchConfig(heldout=info["heldout"], validation=info["validation"], seed=info["seed"])
        queries = heldout_queries(dataset, config)
        lm = TextEncoder(cache_dir=_artifacts(args, dataset) / "cache")
        anchor = exact_top(lm.encode([q.text for q in queries], desc="held-out queries"),
                           lm.encode([it.text() for it in dataset.items], desc="item texts"))
        histories = [[dataset.items[i].id for i in h] for h in split.test.histories if len(h)]
        result = device_search(rec, queries, anchor, dataset.items, histories)
    atomic_write_json(out, {"bundle": str(args.bundle), "queries": len(queries), **result})
    print("search on held-out items' queries (device, int8) vs full all-MiniLM-L6-v2 search:")
    for key, value in result["headline"].items():
        print(f"  {key:24s} device {value:.4f}   language model {result['anchor_headline'][key]:.4f}")
    p = result["personalisation"]
    print(f"  personalisation (weight {p['weight']}): {p['different_top10_share']:.2f} of queries give two users "
          f"different top-10s; known-item success@5 with a history {p['known_item_success@5_with_history']:.4f}")
    print(f"  latency p50 {result['latency_ms']['p50']:.3f} ms; written to {out}")


_DEFAULT_ARCHITECTURES = "pool-mlp,pool-recent,attention,teacher-encoder"


def _convert_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("conversion")
    g.add_argument("--key", metavar="FILE", help="ed25519 private key (default: <artifacts>/../keys/edge-rec.key, "
                                                 "created on first use)")
    g.add_argument("--bundle", metavar="DIR", help="bundle directory to write (default: <artifacts>/bundle)")
    g.add_argument("--architectures", default=_DEFAULT_ARCHITECTURES,
                   help="student architectures to try (comma-separated)")
    g.add_argument("--student-epochs", type=int, help="distillation epochs per student (default: its architecture's schedule, 30; teacher-encoder 10)")
    g.add_argument("--history-len", type=int, help="history items the student reads (default 50)")
    g.add_argument("--no-search", action="store_true", help="a bundle without on-device search (no query encoder)")
    g.add_argument("--search-dim", type=int, help="dimension of the search space (default: chosen on validation "
                                                     "among 96, 128 and 192)")
    _cold_start_args(g)


def _cold_start_args(g) -> None:
    g.add_argument("--cold-start", type=float, metavar="SHARE",
                   help="also measure cold start: hold SHARE of the items (e.g. 0.1) out of training, ship them to a "
                        "device by a delta, measure the device on their test events (trains its own teacher with the "
                        "teacher options)")
    g.add_argument("--seed", type=int, default=0, help="seed of the cold-start item draw (default 0)")


def _ray_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed (large catalogs; pip install 'edge-rec[ray]')")
    g.add_argument("--ray", metavar="ADDRESS", help="embed item texts and export item vectors as a Ray Data job on "
                                                    "this cluster (e.g. auto, or HEAD_IP:6379); default: in this process")
    g.add_argument("--ray-workers", type=int, metavar="N", help="model replicas on the cluster (default: one per CPU)")


def _text_encoder(args: argparse.Namespace, cache_dir: Path):
    """The language model: in this process, or on the Ray cluster given by --ray."""
    if getattr(args, "ray", None):
        from .distributed import RayTextEncoder
        return RayTextEncoder(args.ray, args.ray_workers, cache_dir=cache_dir)
    from .text import TextEncoder
    return TextEncoder(cache_dir=cache_dir)


def _signing_key(args: argparse.Namespace, root: Path) -> Path:
    """The private key to sign with: --key (which must exist), else one beside the artifacts, made on first use.
    Resolved before any training, so a missing key fails in a second, not after the teacher."""
    from edge_rec.signing import generate_keypair
    key = Path(args.key) if args.key else root.parent / "keys" / "edge-rec.key"
    if not key.is_file():
        if args.key:
            raise FileNotFoundError(f"private key {key} not found (make one with: edge-rec keygen --out DIR)")
        generate_keypair(key.parent)
        print(f"created a signing key pair in {key.parent} (devices pin {key.with_suffix('.pub').name})")
    return key


def _convert(args: argparse.Namespace, dataset, split, teacher, root: Path) -> dict:
    from .convert import ConvertConfig, convert
    from .measure import measure
    from .report import write_report
    from .student import StudentConfig
    key = _signing_key(args, root)
    student = StudentConfig(**{k: v for k, v in {"epochs": args.student_epochs, "history_len": args.history_len}.items()
                               if v is not None})
    config = ConvertConfig(architectures=_architectures(args), student=student, search=_search_config(args))
    bundle = Path(args.bundle) if args.bundle else root / "bundle"
    conversion = convert(
        dataset,
        split,
        teacher,
        bundle,
        key,
        config,
        text_encoder=_text_encoder(args, root / "cache"),
        search_model_out=root / "search",
    )
    report = measure(conversion, dataset, split, teacher, key, config)
    if args.cold_start:
        report.cold_start = _cold_start(args, dataset, root)
    md = write_report(report, root / "report")
    print(md.read_text())
    print(f"bundle: {bundle}\nreport: {md} (+ report.json and PNG plots beside it)")
    return {"report": report, "bundle": bundle, "key": key}


def _device_demo(root: Path, bundle: Path, key: Path, dataset, split) -> None:
    """Publish the bundle to a channel, serve it on loopback, sync a device, recommend there."""
    from edge_rec.live import LiveRecommender
    from edge_rec.serve import serve_in_thread
    from edge_rec.sync import SyncClient

    from .publish import publish_bundle
    m = publish_bundle(root / "channel", bundle, key, name=dataset.name)
    server, url = serve_in_thread(root / "channel")
    try:
        status = SyncClient(root / "device", url, key.with_suffix(".pub")).sync_once(log=lambda line: print(f"  {line}"))
    finally:
        server.shutdown()
    print(f"channel {root / 'channel'} at version {m.version}; device {root / 'device'}: {status.line()}")
    device = LiveRecommender(root / "device", key.with_suffix(".pub"))
    history = [dataset.items[i].id for i in split.test.histories[0]]
    print(f"a user who watched {len(history)} items, most recently: "
          + "; ".join(dataset.items[i].title or dataset.items[i].id for i in split.test.histories[0][-3:]))
    for i, r in enumerate(device.recommend(k=5, history=history), 1):
        print(f"  {i}. {r.metadata.get('title') or r.item_id}  ({r.score:.3f})")


def _saved_teacher(path: str, dataset):
    from .teacher import load_teacher
    teacher = load_teacher(path)
    if teacher.info.get("dataset_fingerprint") not in (None, dataset.fingerprint()):
        raise ValueError(f"the teacher at {path} was trained on a different data set than {dataset.name}")
    return teacher


def _search_config(args: argparse.Namespace):
    """What convert builds for search: None with --no-search; a quick preset and --search-dim (a fixed
    search space instead of the validation's choice) applied to the defaults."""
    if args.no_search:
        return None
    from .search.build import SearchConfig
    return SearchConfig(**{**getattr(args, "search_preset", {}), **({"dims": (args.search_dim,)} if args.search_dim else {})})


def _architectures(args: argparse.Namespace) -> Tuple[str, ...]:
    """The student architectures asked for, checked before any training starts."""
    from .student import ARCHITECTURES
    names = tuple(a.strip() for a in args.architectures.split(",") if a.strip())
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown or not names:
        raise ValueError(f"--architectures {args.architectures!r}: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(ARCHITECTURES)}")
    return names


def cmd_convert(args: argparse.Namespace) -> int:
    from .workflow import train_or_load_teacher
    _architectures(args)
    dataset, split = _load(args)
    root = _artifacts(args, dataset)
    _signing_key(args, root)
    if args.teacher:
        teacher = _saved_teacher(args.teacher, dataset)
    else:
        teacher = train_or_load_teacher(dataset, split, root / "teacher", root / "cache", _teacher_config(args),
                                        text_encoder=_text_encoder(args, root / "cache"))
    _convert(args, dataset, split, teacher, root)
    return 0


QUICK = {"max_minutes": 2.5, "architectures": "pool-recent", "student_epochs": 4}


def _quick(args: argparse.Namespace, dataset) -> Path:
    """The quick path's settings (a first look in minutes, lower quality) and its own artifacts folder."""
    from .search.encoder import SMALL
    for name, value in QUICK.items():
        if getattr(args, name) in (None, _DEFAULT_ARCHITECTURES):
            setattr(args, name, value)
    args.search_preset = {"encoders": (SMALL,), "dims": (96,), "general_texts": 20_000, "catalog_texts": 15_000,
                          "epochs": 5, "queries_per_kind": 2, "tuning_queries": 500}
    print(f"QUICK demo: a {args.max_minutes}-minute teacher, one student ({args.architectures}), the small search encoder. "
          "Quality is lower than the full demo's (make demo): this is a first look.")
    from .workflow import DEFAULT_ARTIFACTS
    return Path(args.artifacts) if args.artifacts else DEFAULT_ARTIFACTS / f"{dataset.name}-quick"


def cmd_demo(args: argparse.Namespace) -> int:
    from .workflow import evaluate_models, format_table, train_or_load_teacher
    dataset, split = _load(args)
    root = _quick(args, dataset) if args.quick else _artifacts(args, dataset)
    _architectures(args)
    _signing_key(args, root)
    print(f"[1/4] teacher (trained once, then reused from {root / 'teacher'})")
    teacher = train_or_load_teacher(dataset, split, root / "teacher", root / "cache", _teacher_config(args))
    print("[2/4] full-ranking evaluation of the teacher on the test split")
    results = evaluate_models({"teacher": teacher}, dataset, split, "test", root / "eval-test.json")
    print(format_table(results))
    print("[3/4] convert: distil, int8-quantize, index, sign -> bundle")
    out = _convert(args, dataset, split, teacher, root)
    print("[4/4] on the device: publish to a channel, serve it on loopback, sync, recommend")
    _device_demo(root, out["bundle"], out["key"], dataset, split)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .publish import changes_from_catalog, channel_manifest, publish_bundle, publish_changes, read_change_set
    if bool(args.bundle) == bool(args.changes):
        raise ValueError("give exactly one of --bundle (a new full version) or --changes (a catalog change set)")
    from .channel_store import open_store
    store = open_store(args.channel, args.endpoint_url)
    if args.bundle:
        m = publish_bundle(store, args.bundle, args.key, args.name, args.expires_days)
        print(f"channel {m.channel}: version {m.version} published as a snapshot ({m.snapshot.size:,} bytes) "
              f"to {store.location}")
        return 0
    change_set = read_change_set(args.changes)  # the cheap checks first: the input, then the channel
    manifest = channel_manifest(store)
    from .teacher import load_teacher
    teacher = load_teacher(args.teacher)
    encoder = _text_encoder(args, Path(args.teacher).parent / "cache")
    search_model = None
    if manifest.search is not None:
        from .search.model import SearchModel
        search_model = SearchModel.load(args.search_model or Path(args.teacher).parent / "search")
    changes = changes_from_catalog(change_set, teacher, encoder, manifest, search_model)
    m = publish_changes(store, changes, args.key, args.expires_days, insert_width=args.insert_width)
    d = m.deltas[-1]
    print(f"channel {m.channel}: version {m.version}: {len(changes.upsert_ids)} upserted, {len(changes.delete_ids)} "
          f"deleted; delta {d.size:,} bytes, snapshot {m.snapshot.size:,} bytes ({100 * d.size / m.snapshot.size:.2f}%)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .publish import prune_channel
    r = prune_channel(args.channel, args.keep_days, args.endpoint_url)
    print(f"{args.channel}: removed {len(r.removed)} pack(s) older than {args.keep_days:g} days that channel.json "
          f"does not name; {len(r.kept)} kept")
    for name in r.removed:
        print(f"  removed {name}")
    return 0


def cmd_root(args: argparse.Namespace) -> int:
    from .channel_store import open_store
    from .trust import TrustError, latest_root, write_root
    store = open_store(args.channel, args.endpoint_url)
    current = latest_root(store)
    if args.action == "init" and current is not None:
        raise TrustError(f"{store.location} has root {current.version} already: use `edge-rec root rotate`")
    if args.action == "rotate" and current is None:
        raise TrustError(f"{store.location} has no root yet: use `edge-rec root init`")
    root = write_root(store, args.signing_pub, args.signing_threshold, args.root_key, args.root_threshold,
                      args.root_pub or (), args.old_root_key or (), args.pinned or ())
    print(f"{store.location}: root {root.version} written ({root_file_name(root.version)}): signing keys "
          f"{', '.join(root.key_ids())} (threshold {root.signing_threshold}), root keys {', '.join(root.key_ids('root'))} "
          f"(threshold {root.root_threshold})")
    return 0


def root_file_name(version: int) -> str:
    from edge_rec.root import root_file
    return root_file(version)


CONVERTER_PACKAGES = ("tensorflow", "transformers", "torch")
COMMANDS = {"train-teacher": "train (or reuse) the reference SASRec teacher",
            "eval": "full-ranking evaluation of saved teachers, the popularity baseline and a bundle's search",
            "convert": "teacher -> int8 TFLite student + query encoder + HNSW indexes -> signed bundle",
            "publish": "publish a new version to a channel: a bundle (snapshot) or a catalog change set (delta)",
            "root": "the channel's root of trust: init, or rotate signing / root keys (TUF-style)",
            "prune": "remove a channel's snapshots and deltas that are past retention and no longer named",
            "demo": "data -> teacher -> metrics -> bundle -> a device, end to end"}
INSTALL = "pip install 'edge-rec[converter]'"


def missing_packages() -> List[str]:
    """The converter's heavy packages that are not installed (found without importing them)."""
    import importlib.util
    return [name for name in CONVERTER_PACKAGES if importlib.util.find_spec(name) is None]


def register(sub) -> None:
    """Add the converter's subcommands to the ``edge-rec`` parser; without the converter extra they are
    listed as unavailable, with the line that installs them."""
    missing = missing_packages()
    if missing:
        def unavailable(args: argparse.Namespace) -> int:
            print(f"edge-rec {args.command}: not available in this install (it needs {', '.join(missing)}): {INSTALL}",
                  file=sys.stderr)
            return 1
        for name, text in COMMANDS.items():
            p = sub.add_parser(name, help=f"(unavailable: {INSTALL}) {text}", add_help=False, prefix_chars="\0")
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=unavailable)
        return
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--artifacts", metavar="DIR", help="where models and reports go (default: artifacts/<data set>)")

    p = sub.add_parser("train-teacher", parents=[common], help=COMMANDS["train-teacher"])
    _data_args(p)
    _teacher_args(p)
    p.add_argument("--out", metavar="DIR", help="teacher directory (default: <artifacts>/teacher[-notext])")
    p.add_argument("--force", action="store_true", help="retrain even if a matching teacher is saved")
    _ray_args(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("eval", parents=[common], help=COMMANDS["eval"])
    _data_args(p)
    p.add_argument("--teacher", metavar="DIR", action="append", help="a saved teacher (repeatable)")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    p.add_argument("--bundle", metavar="DIR", help="also measure this bundle's on-device search on held-out items' queries")
    p.add_argument("--key", metavar="PUB", help="the bundle's public key")
    p.add_argument("--json", metavar="FILE", help="where to write the metrics (default: <artifacts>/eval-<split>.json)")
    _cold_start_args(p)
    _teacher_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", parents=[common], help=COMMANDS["convert"])
    _data_args(p)
    _teacher_args(p)
    _convert_args(p)
    p.add_argument("--teacher", metavar="DIR", help="a saved teacher to convert (default: <artifacts>/teacher, "
                                                    "trained if missing)")
    _ray_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("publish", help=COMMANDS["publish"])
    p.add_argument("channel", help="channel: a directory (created if missing) or s3://bucket/prefix")
    p.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible store's endpoint (default: AWS S3)")
    p.add_argument("--bundle", metavar="DIR", help="a bundle to ship as the next full version")
    p.add_argument("--changes", metavar="FILE", help='change set JSON: {"upsert": [{"id", "title", "year", "genres"}], "delete": [ids]}')
    p.add_argument("--teacher", metavar="DIR", default="artifacts/ml-1m/teacher",
                   help="the teacher that embeds upserted items (default artifacts/ml-1m/teacher)")
    p.add_argument("--search-model", metavar="DIR", help="the search model that places upserted items in the search "
                                                         "space (default: <teacher>/../search, written by convert)")
    p.add_argument("--key", required=True, action="append", help="private signing key (repeatable for thresholds)")
    p.add_argument("--name", help="channel name (default: the bundle directory's name)")
    p.add_argument("--expires-days", type=float, default=7.0, help="days until devices call the channel stale (default 7)")
    p.add_argument("--insert-width", type=int, metavar="N",
                   help="with --changes: the construction width devices add the delta's items to the graph at "
                        "(at most the graph's own; default converter.publish.DELTA_EF_CONSTRUCTION): wider is "
                        "slower to apply")
    _ray_args(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("prune", help=COMMANDS["prune"])
    p.add_argument("channel", help="channel: a directory or s3://bucket/prefix")
    p.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible store's endpoint (default: AWS S3)")
    p.add_argument("--keep-days", type=float, default=14.0,
                   help="keep packs younger than this, named or not (default 14: longer than any device or CDN "
                        "can still be fetching a pack an older channel.json named)")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("root", help=COMMANDS["root"],
                       description="Write the channel's next root: init makes root 1, rotate root N+1. Devices accept "
                                   "it when signed by a threshold of the previous root's root keys and of its own.")
    p.add_argument("action", choices=["init", "rotate"])
    p.add_argument("channel", help="channel: a directory or s3://bucket/prefix")
    p.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible store's endpoint (default: AWS S3)")
    p.add_argument("--signing-pub", action="append", required=True, metavar="PUB",
                   help="public key that signs channel.json and bundles under this root (repeatable)")
    p.add_argument("--signing-threshold", type=int, default=1, help="signatures a channel or bundle needs (default 1)")
    p.add_argument("--root-key", action="append", required=True, metavar="KEY",
                   help="private root key of the new root; it signs this root now (repeatable)")
    p.add_argument("--root-pub", action="append", metavar="PUB", help="public root key of the new root kept offline")
    p.add_argument("--root-threshold", type=int, default=1, help="signatures the next root needs (default 1)")
    p.add_argument("--old-root-key", action="append", metavar="KEY",
                   help="private root key of the previous root that signs the hand-over (repeatable)")
    p.add_argument("--pinned", action="append", metavar="PUB",
                   help="init: public key devices were provisioned with (their root 0); --old-root-key signs for it")
    p.set_defaults(func=cmd_root)

    p = sub.add_parser("demo", parents=[common], help=COMMANDS["demo"])
    _data_args(p)
    _teacher_args(p)
    _convert_args(p)
    p.add_argument("--quick", action="store_true", help="a first look in minutes: short teacher budget, one student, "
                                                       "small search encoder (lower quality; artifacts/<data set>-quick)")
    p.set_defaults(func=cmd_demo)
