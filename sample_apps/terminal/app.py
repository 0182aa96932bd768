"""edge-rec in a terminal: recommend, pick, search, similar, history and sync status, on a device without a desktop.

    python sample_apps/terminal/app.py --state /var/lib/edge-rec --key edge-rec.pub        # interactive
    python sample_apps/terminal/app.py --state ... --key ... -c "search toy story" -c "pick 1" -c recommend --json

Built only on the public runtime API (``edge_rec``). In the interactive mode, type ``help``.
"""
from __future__ import annotations

import argparse
import cmd
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from edge_rec import DeviceState, EdgeRecError, HistoryStore, LiveRecommender, SyncClient


class Terminal(cmd.Cmd):
    intro = "edge-rec on this device. Type help, or recommend / search WORDS / pick N / similar N / history / status."
    prompt = "edge-rec> "

    def __init__(self, live: LiveRecommender, history: HistoryStore, device: DeviceState,
                 sync: Optional[SyncClient], as_json: bool) -> None:
        super().__init__()
        self.live, self.history, self.device, self.sync, self.as_json = live, history, device, sync, as_json
        self.genre: Optional[str] = None
        self.shown: List[Dict[str, Any]] = []  # the last list, so "pick 3" means its third item

    def show(self, recs, heading: str) -> None:
        self.shown = [{"id": r.item_id, "title": r.metadata.get("title") or r.item_id, "year": r.metadata.get("year"),
                       "genres": r.metadata.get("genres", []), "score": round(r.score, 4)} for r in recs]
        if self.as_json:
            print(json.dumps({"heading": heading, "items": self.shown}))
            return
        print(heading)
        for i, item in enumerate(self.shown, 1):
            extra = f" ({item['year']})" if item["year"] else ""
            print(f"  {i:2d}. {item['title']}{extra}  [{', '.join(item['genres'])}]")
        if not self.shown:
            print("  (nothing)")

    def item_id(self, arg: str) -> Optional[str]:
        """An item given as its number in the last list, or as its id."""
        arg = arg.strip()
        if arg.isdigit() and 1 <= int(arg) <= len(self.shown):
            return self.shown[int(arg) - 1]["id"]
        if arg:
            return arg
        print("which item? give its number in the last list or its id")
        return None

    def filt(self):
        return {"genres": self.genre} if self.genre else None

    def do_recommend(self, arg: str) -> None:
        """recommend [GENRE]: what this device recommends from your history (optionally one genre)."""
        self.genre = arg.strip() or self.genre
        self.show(self.live.recommend(k=10, filter=self.filt()), f"For you{f' ({self.genre})' if self.genre else ''}:")

    def do_genre(self, arg: str) -> None:
        """genre [NAME]: filter every list by a genre; no name clears the filter."""
        self.genre = arg.strip() or None
        print(f"genre filter: {self.genre or 'none'}")

    def do_search(self, arg: str) -> None:
        """search WORDS: find items by text, personalised by your history."""
        self.show(self.live.search(arg, k=10, filter=self.filt()), f"Results for {arg.strip()!r}:")

    def do_pick(self, arg: str) -> None:
        """pick N|ID: record that you picked an item (it stays on this device), then show similar items."""
        item = self.item_id(arg)
        if item is None:
            return
        if item not in self.live.refresh().items:
            print(f"unknown item {item!r}")
            return
        self.history.record(item, "pick")
        self.show(self.live.similar_items(item, k=10, filter=self.filt()), f"Because you picked {item}:")

    def do_similar(self, arg: str) -> None:
        """similar N|ID: items similar to one item."""
        item = self.item_id(arg)
        if item is not None:
            self.show(self.live.similar_items(item, k=10, filter=self.filt()), f"Similar to {item}:")

    def do_history(self, arg: str) -> None:
        """history [clear]: your picks, newest last; "history clear" forgets them all."""
        if arg.strip() == "clear":
            self.history.clear()
            print("history cleared")
            return
        events = self.history.export()
        print(json.dumps(events) if self.as_json else "\n".join(f"  {e['item_id']} ({e['kind']})" for e in events) or "  (empty)")

    def do_status(self, arg: str) -> None:
        """status: the installed version, its signature, and the last sync."""
        rec = self.live.refresh()
        last = self.device.last_sync()
        status = {"version": rec.bundle.manifest.bundle_version, "signed_by": rec.bundle.signers, "search": rec.has_search,
                  "items": len(rec.items) - len(rec.items.deleted), "last_sync": last}
        if self.as_json:
            print(json.dumps(status))
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["time"])) if last else "never"
        print(f"version {status['version']}, {status['items']} items, signature verified ({', '.join(rec.bundle.signers)}), "
              f"search {'on' if rec.has_search else 'off'}; last sync {when}" + (f": {last['state']}, {last['message']}" if last else ""))

    def do_sync(self, arg: str) -> None:
        """sync: pull the channel now (when started with --channel)."""
        if self.sync is None:
            print("no channel: start with --channel URL")
            return
        print(self.sync.sync_once().line())

    def do_quit(self, arg: str) -> bool:
        """quit: leave."""
        return True

    do_EOF = do_quit

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except (EdgeRecError, ValueError, KeyError) as e:  # a bad query or id: say so, keep going
            print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
            self.failed = True
            return False

    def emptyline(self) -> bool:
        return False


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, help="the device's state directory")
    p.add_argument("--key", required=True, help="the publisher's public key (.pub)")
    p.add_argument("--bundle", help="a bundle to install when the state directory has no version yet")
    p.add_argument("--history", help="the history database (default: <state>/history.db)")
    p.add_argument("--channel", help="the channel's URL, for the sync command")
    p.add_argument("-c", "--command", action="append", help="run this command and exit (repeatable), e.g. -c 'search toy story'")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    args = p.parse_args(argv)
    state = Path(args.state)
    try:
        device = DeviceState(state)
        device.ensure(args.bundle)
        history = HistoryStore(args.history or state / "history.db")
        live = LiveRecommender(state, args.key, history=history)
    except (EdgeRecError, OSError) as e:
        print(f"edge-rec terminal: cannot start: {e}", file=sys.stderr)
        return 1
    with live:
        app = Terminal(live, history, device, SyncClient(state, args.channel, args.key) if args.channel else None, args.json)
        app.failed = False
        if args.command:
            for line in args.command:
                app.onecmd(line)
            return 1 if app.failed else 0
        app.cmdloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
