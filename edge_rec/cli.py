"""The ``edge-rec`` command. Runtime subcommands live here; the converter adds its own through the
``edge_rec.commands`` entry-point group, so the runtime never imports the converter by name."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .errors import EdgeRecError

ENTRY_POINT_GROUP = "edge_rec.commands"
EXIT_CODES = """exit codes: 0 done; 1 error (one line on stderr says what is wrong); 2 bad command line;
3 a check failed (inspect: golden cases; sync: download failed or version rejected); 4 sync: the channel
is stale (expired); 5 sync: the new version failed its health check and was rolled back; 130 interrupted"""


def _entry_points():
    from importlib.metadata import entry_points
    eps = entry_points()
    return eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])


def cmd_keygen(args: argparse.Namespace) -> int:
    from .signing import generate_keypair, key_id, load_public_key
    key, pub = generate_keypair(args.out, args.name)
    print(f"private key: {key} (keep secret)\npublic key:  {pub} (pin on devices), id {key_id(load_public_key(pub))}")
    return 0


def _filter(pairs: Optional[List[str]]) -> Optional[dict]:
    """``["genres=Comedy", "year=1995"]`` -> ``{"genres": "Comedy", "year": 1995}``."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--filter expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _open(args: argparse.Namespace):
    from .recommender import EdgeRecommender
    return EdgeRecommender.open(args.bundle, args.key, history=getattr(args, "history_db", None),
                                num_threads=args.threads)


def _print_recs(recs, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"item_id": r.item_id, "score": r.score, **r.metadata} for r in recs], indent=1))
        return
    for i, r in enumerate(recs, 1):
        meta = r.metadata
        title = meta.get("title", "")
        extra = f" ({meta['year']})" if meta.get("year") else ""
        genres = f"  [{', '.join(meta['genres'])}]" if meta.get("genres") else ""
        print(f"{i:3d}. {r.item_id:>10}  {r.score:7.4f}  {title}{extra}{genres}")


def cmd_recommend(args: argparse.Namespace) -> int:
    rec = _open(args)
    history = [h for h in args.history.split(",") if h] if args.history is not None else None
    _print_recs(rec.recommend(k=args.k, history=history, exclude_seen=args.exclude_seen,
                              filter=_filter(args.filter)), args.json)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    rec = _open(args)
    history = [h for h in args.history.split(",") if h] if args.history is not None else None
    personalize = False if args.no_personalize else (args.personalize if args.personalize is not None else True)
    recs = rec.search(args.query, k=args.k, filter=_filter(args.filter), history=history, personalize=personalize)
    if not recs and not args.json:
        print("no results: none of the query's words is in this bundle's vocabulary", file=sys.stderr)
    _print_recs(recs, args.json)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    rec = _open(args)
    try:
        recs = rec.similar_items(args.item, k=args.k, filter=_filter(args.filter))
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    _print_recs(recs, args.json)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .bundle import Bundle, read_manifest
    from .golden import MIN_COSINE, MIN_OVERLAP
    from .recommender import EdgeRecommender
    m = read_manifest(Path(args.bundle))
    print(f"bundle {args.bundle}: format {m.format} v{m.format_version}, bundle version {m.bundle_version}, created {m.created}")
    print(f"model: {m.model.file} ({m.model.architecture}), reads the last {m.model.history_len} items as "
          f"{m.model.dim}-d vectors; inputs " + ", ".join(f"{t.name} {t.shape} {t.dtype} scale {t.scale:.3g} zp {t.zero_point}"
                                                            for t in m.model.inputs)
          + f"; output {m.model.output.shape} {m.model.output.dtype}")
    print(f"ops: {', '.join(m.model.ops)}; float ops: {', '.join(m.model.float_ops) or 'none'}; "
          f"Edge TPU compatible: {'yes' if m.model.edgetpu_compatible else 'no'}")
    print(f"index: {m.index.file} hnswlib {m.index.space}, dim {m.index.dim}, {m.index.count} items, M {m.index.M}, "
          f"ef_construction {m.index.ef_construction}, ef_search {m.index.ef_search}"
          + (f"; compact: the graph over a {m.items.dim}->{m.index.dim} projection ({m.index.projection}), "
             f"{m.index.rerank} candidates re-ranked exactly"
             + (f"; each vector stored once (graph coordinates + {m.items.dim - m.index.dim} int8 residual coordinates)"
                if m.index.residual else "") if m.index.projection else ""))
    if m.search is None:
        print("search: none (this bundle has no query encoder)")
    else:
        sr = m.search
        print(f"search: tokenizer {sr.tokenizer} ({sr.features.vocab_size} pieces, {sr.features.bigram_buckets} bigram "
              f"buckets), encoder {sr.encoder.file} ({sr.encoder.architecture}; ops {', '.join(sr.encoder.ops)}; float ops: "
              f"{', '.join(sr.encoder.float_ops) or 'none'}; Edge TPU compatible: {'yes' if sr.encoder.edgetpu_compatible else 'no'}), "
              f"index {sr.index.file} dim {sr.dim}, M {sr.index.M}, ef_search {sr.index.ef_search}; personalisation "
              f"weight {sr.blend}; {len(sr.golden)} golden queries")
    total = sum(f.size for f in m.files.values())
    for name, f in sorted(m.files.items()):
        print(f"  {f.size:>12,} B  {f.sha256[:16]}  {name}")
    print(f"  {total:>12,} B  total")
    if not args.key:
        print("signature and files NOT verified (pass --key PUBLIC_KEY to verify and replay the golden cases)")
        return 0
    bundle = Bundle.open(args.bundle, args.key)
    print(f"verified: signed by {', '.join(bundle.signers)}; every file's size and sha256 match")
    rec = EdgeRecommender(bundle, num_threads=args.threads)
    report = rec.model.op_report()
    print(f"accelerator: {rec.model.accelerator} ({rec.model.accelerator_note})")
    print(f"interpreter: {rec.model.backend}; ops in the model: {', '.join(sorted(set(report.ops)))}; "
          f"Edge TPU: {'compatible' if not report.edgetpu_blockers else 'not compatible (' + '; '.join(report.edgetpu_blockers) + ')'}")
    g = rec.check_golden()
    print(f"golden cases ({g.search_cases} of them search queries): {g.top_identical}/{g.cases} identical top-10, "
          f"min overlap {g.min_overlap:.2f}, min query cosine {g.min_cosine:.5f}; rule: every top-10 overlap >= "
          f"{MIN_OVERLAP} and query cosine >= {MIN_COSINE}: {'PASS' if g.passed else 'FAIL'}")
    return 0 if g.passed else 3


def cmd_history(args: argparse.Namespace) -> int:
    from .history import HistoryStore
    store = HistoryStore(args.history_db)
    if args.action == "record":
        for item in args.items:
            store.record(item, args.kind)
        print(f"recorded {len(args.items)} event(s); {len(store)} in {args.history_db}")
    elif args.action == "show":
        print("\n".join(store.last(args.n)))
    elif args.action == "export":
        print(json.dumps(store.export(), indent=1))
    elif args.action == "clear":
        store.clear()
        print(f"history cleared: {args.history_db}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import make_server
    server = make_server(args.channel, args.host, args.port, verbose=not args.quiet)
    print(f"serving channel {args.channel} at http://{args.host}:{server.server_address[1]}/ (development server; "
          "in production any static file host serves a channel) - Ctrl-C stops")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    import random
    import time

    from .sync import Limits, SyncClient
    client = SyncClient(args.state, args.url, args.key, args.threshold,
                        Limits(connect_timeout=args.timeout, max_file_bytes=int(args.max_mb * 1024 * 1024)))
    while True:
        status = client.sync_once(log=lambda line: print(f"  {line}", flush=True))
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {status.line()}", flush=True)
        if not args.every:
            return {"updated": 0, "current": 0, "busy": 0, "stale": 4, "rolled-back": 5}.get(status.state, 3)
        time.sleep(args.every * (1 + random.uniform(-args.jitter, args.jitter)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-rec", description="On-device recommendation: convert, ship, run.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edge-rec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("keygen", help="make an ed25519 key pair for signing bundles")
    p.add_argument("--out", default=".", help="directory for <name>.key and <name>.pub")
    p.add_argument("--name", default="edge-rec")
    p.set_defaults(func=cmd_keygen)

    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("bundle", help="bundle directory")
    device.add_argument("--key", required=True, help="the publisher's public key (.pub file or hex)")
    device.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    shown.add_argument("--filter", action="append", metavar="KEY=VALUE", help="metadata filter, e.g. genres=Comedy (repeatable)")
    shown.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("recommend", parents=[device, shown], help="recommend from the device history or a given one")
    p.add_argument("--history", metavar="ID,ID,...", help="item ids, oldest first (default: read --history-db)")
    p.add_argument("--history-db", metavar="FILE", help="the on-device history database")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false", default=None,
                      help="items already in the history may come back (re-purchases)")
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=None,
                      help="never return items already in the history (default: the bundle's protocol, seen_items)")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("search", parents=[device, shown], help="search the catalog by text, on the device")
    p.add_argument("query", help='the words to search for, e.g. "a 90s comedy"')
    p.add_argument("--history", metavar="ID,ID,...", help="personalise with these item ids (default: --history-db)")
    p.add_argument("--history-db", metavar="FILE", help="the on-device history database (personalises the results)")
    p.add_argument("--personalize", type=float, metavar="W", help="weight of the user's taste, 0-1 (default: the bundle's)")
    p.add_argument("--no-personalize", action="store_true", help="rank by the text alone")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("similar", parents=[device, shown], help="items similar to one item")
    p.add_argument("item", help="item id")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("inspect", help="manifest, sizes, ops, Edge TPU compatibility; with --key: verify and replay golden cases")
    p.add_argument("bundle")
    p.add_argument("--key", help="public key: verify the bundle and check the golden cases")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("history", help="the on-device history store: record, show, export, clear")
    p.add_argument("action", choices=["record", "show", "export", "clear"])
    p.add_argument("items", nargs="*", help="item ids to record")
    p.add_argument("--history-db", required=True, metavar="FILE")
    p.add_argument("--kind", default="view")
    p.add_argument("-n", type=int, default=50, help="how many to show")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("serve", help="serve a channel directory over HTTP for development (Range, ETag)")
    p.add_argument("channel", help="channel directory (written by edge-rec publish)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--quiet", action="store_true", help="do not log requests")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("sync", help="pull the channel's latest version into a device state directory")
    p.add_argument("--state", required=True, metavar="DIR", help="the device's state directory")
    p.add_argument("--url", required=True, help="the channel's base URL")
    p.add_argument("--key", required=True, action="append", help="a pinned public key (repeatable)")
    p.add_argument("--threshold", type=int, default=1, help="distinct trusted signatures required (default 1)")
    p.add_argument("--every", type=float, metavar="SECONDS", help="keep syncing at this period (default: once)")
    p.add_argument("--jitter", type=float, default=0.2, help="random fraction added to the period (default 0.2)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for a connection or read (default 10)")
    p.add_argument("--max-mb", type=float, default=2048, help="largest file this device downloads (default 2048)")
    p.set_defaults(func=cmd_sync)
    for ep in _entry_points():
        ep.load()(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ImportError, OSError, ValueError, KeyError, EdgeRecError) as e:
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"edge-rec {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
