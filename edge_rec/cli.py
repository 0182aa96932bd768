"""The ``edge-rec`` command. Runtime subcommands live here; the converter adds its own through the
``edge_rec.commands`` entry-point group, so the runtime never imports the converter by name."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__
from .errors import EdgeRecError

ENTRY_POINT_GROUP = "edge_rec.commands"


def _entry_points():
    from importlib.metadata import entry_points
    eps = entry_points()
    return eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])


def cmd_keygen(args: argparse.Namespace) -> int:
    from .signing import generate_keypair, key_id, load_public_key
    key, pub = generate_keypair(args.out, args.name)
    print(f"private key: {key} (keep secret)\npublic key:  {pub} (pin on devices), id {key_id(load_public_key(pub))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-rec", description="On-device recommendation: convert, ship, run.")
    parser.add_argument("--version", action="version", version=f"edge-rec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("keygen", help="make an ed25519 key pair for signing bundles")
    p.add_argument("--out", default=".", help="directory for <name>.key and <name>.pub")
    p.add_argument("--name", default="edge-rec")
    p.set_defaults(func=cmd_keygen)
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
    except (ImportError, OSError, ValueError, EdgeRecError) as e:
        print(f"edge-rec {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
