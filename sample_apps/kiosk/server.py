"""edge-rec kiosk: recommendations, search and live signed updates in a local web page, all on the device.

    python sample_apps/kiosk/server.py --state /var/lib/edge-rec --key edge-rec.pub \
        --bundle bundle/ --channel http://updates.example.com/channel --sync-every 300

Built only on the public runtime API (``edge_rec``) and the standard library: a kiosk serves one person,
and ``http.server`` needs nothing installed beyond ``pip install edge-rec``. Binds to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import parse_qs, urlparse

from edge_rec import DeviceState, EdgeRecError, HistoryStore, LiveRecommender, QueryError, SyncClient

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}  # everything the page loads; nothing else is served
MAX_BODY = 4096
K = 12


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Kiosk:
    """The app: the device's current version, the person's history, and the background sync."""

    def __init__(self, state: Path, key: Path, history: Path, channel: Optional[str] = None) -> None:
        self.device = DeviceState(state)
        self.history = HistoryStore(history)
        self.live = LiveRecommender(state, key, history=self.history)
        self.sync = SyncClient(state, channel, key) if channel else None
        self.latency_ms: Optional[float] = None
        self._genres: Dict[int, List[str]] = {}

    def timed(self, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = call()
        self.latency_ms = round(1e3 * (time.perf_counter() - start), 3)
        return out

    def cards(self, recs) -> Dict[str, Any]:
        items = [{"id": r.item_id, "title": r.metadata.get("title") or r.item_id, "year": r.metadata.get("year"),
                  "genres": r.metadata.get("genres", []), "score": round(r.score, 4)} for r in recs]
        return {"items": items, "latency_ms": self.latency_ms, "version": self.live.version}

    def genres(self) -> List[str]:
        with self.live.current() as rec:
            version = rec.bundle.manifest.bundle_version
            if version not in self._genres:
                found = {g for row in range(len(rec.items)) for g in rec.items.metadata(row).get("genres", [])}
                self._genres = {version: sorted(found)}
            return self._genres[version]

    def status(self) -> Dict[str, Any]:
        with self.live.current() as rec:
            return {"version": rec.bundle.manifest.bundle_version, "verified": True, "signed_by": rec.bundle.signers,
                    "items": len(rec.items) - len(rec.items.deleted), "search": rec.has_search,
                    "last_sync": self.device.last_sync(), "syncing_from": self.sync.url if self.sync else None,
                    "latency_ms": self.latency_ms, "history": len(self.history), "genres": self.genres()}

    def known(self, item_id: str) -> None:
        with self.live.current() as rec:
            if item_id not in rec.items:
                raise HTTPError(HTTPStatus.NOT_FOUND, f"unknown item id {item_id!r}: not in this catalog")

    def sync_forever(self, every: float) -> None:
        while True:
            self.sync.sync_once()
            time.sleep(every * random.uniform(0.8, 1.2))  # jitter: a fleet does not sync in lockstep


class Handler(BaseHTTPRequestHandler):
    kiosk: Kiosk
    server_version = "edge-rec-kiosk"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a kiosk logs nothing per request
        pass

    def reply(self, status: HTTPStatus, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def json(self, value: Any, status: HTTPStatus = HTTPStatus.OK, extra: Optional[Dict[str, str]] = None) -> None:
        self.reply(status, json.dumps(value).encode(), "application/json", extra)

    def handle_api(self, method: str) -> None:
        url = urlparse(self.path)
        route = ROUTES.get(url.path)
        if route is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
        if route[0] != method:
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{url.path} takes {route[0]}")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self.read_json() if method == "POST" else {}
        self.json(route[1](self.kiosk, query, body))

    def read_json(self) -> Dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a JSON body with a Content-Length is required")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is not read
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(int(length)).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def dispatch(self, method: str) -> None:
        path = urlparse(self.path).path  # a page's query string (e.g. ?status_every=) is for its script
        try:
            if method == "GET" and path == "/favicon.ico":
                self.reply(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            elif method == "GET" and path in PAGES:
                name, content_type = PAGES[path]
                self.reply(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)
            elif path.startswith("/api/"):
                self.handle_api(method)
            else:
                raise HTTPError(HTTPStatus.NOT_FOUND, "not found")
        except HTTPError as e:
            allow = {"Allow": ROUTES[path][0]} if e.status == HTTPStatus.METHOD_NOT_ALLOWED else None
            self.json({"error": str(e)}, e.status, allow)
        except (QueryError, ValueError, TypeError) as e:
            self.json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        except EdgeRecError as e:
            self.json({"error": f"{type(e).__name__}: {e}"}, HTTPStatus.SERVICE_UNAVAILABLE)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def refuse(self) -> None:
        self.json({"error": f"{self.command} is not supported"}, HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse


def _k(query: Dict[str, str]) -> int:
    k = query.get("k", str(K))
    if not k.isdigit() or not 1 <= int(k) <= 100:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "k must be a whole number from 1 to 100")
    return int(k)


def _genre(query: Dict[str, str]) -> Optional[Dict[str, str]]:
    return {"genres": query["genre"]} if query.get("genre") else None


def recommend(kiosk: Kiosk, query: Dict[str, str], body: Dict[str, Any]) -> Dict[str, Any]:
    return kiosk.cards(kiosk.timed(lambda: kiosk.live.recommend(k=_k(query), filter=_genre(query))))


def similar(kiosk: Kiosk, query: Dict[str, str], body: Dict[str, Any]) -> Dict[str, Any]:
    item = query.get("item", "")
    kiosk.known(item)
    return kiosk.cards(kiosk.timed(lambda: kiosk.live.similar_items(item, k=_k(query), filter=_genre(query))))


def search(kiosk: Kiosk, query: Dict[str, str], body: Dict[str, Any]) -> Dict[str, Any]:
    return kiosk.cards(kiosk.timed(lambda: kiosk.live.search(query.get("q", ""), k=_k(query), filter=_genre(query))))


def pick(kiosk: Kiosk, query: Dict[str, str], body: Dict[str, Any]) -> Dict[str, Any]:
    item = body.get("item_id")
    if not isinstance(item, str) or not item:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "item_id (a non-empty string) is required")
    kiosk.known(item)
    kiosk.history.record(item, "pick")
    return {"recorded": item, "history": len(kiosk.history)}


def forget(kiosk: Kiosk, query: Dict[str, str], body: Dict[str, Any]) -> Dict[str, Any]:
    kiosk.history.clear()
    return {"history": 0}


ROUTES = {"/api/status": ("GET", lambda kiosk, query, body: kiosk.status()), "/api/recommend": ("GET", recommend),
          "/api/similar": ("GET", similar), "/api/search": ("GET", search), "/api/pick": ("POST", pick),
          "/api/forget": ("POST", forget)}


def make_server(kiosk: Kiosk, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    handler = type("KioskHandler", (Handler,), {"kiosk": kiosk})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, help="the device's state directory (versions, sync status)")
    p.add_argument("--key", required=True, help="the publisher's public key (.pub)")
    p.add_argument("--bundle", help="a bundle to install when the state directory has no version yet")
    p.add_argument("--history", help="the history database (default: <state>/history.db)")
    p.add_argument("--channel", help="the channel's URL, to sync from")
    p.add_argument("--sync-every", type=float, metavar="SECONDS", help="sync in the background at this period")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this device only)")
    p.add_argument("--port", type=int, default=8080)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    state = Path(args.state)
    try:
        DeviceState(state).ensure(args.bundle)
        kiosk = Kiosk(state, Path(args.key), Path(args.history or state / "history.db"), args.channel)
    except (EdgeRecError, OSError) as e:
        print(f"kiosk: cannot start: {e}", file=sys.stderr)
        return 1
    if kiosk.sync and args.sync_every:
        threading.Thread(target=kiosk.sync_forever, args=(args.sync_every,), daemon=True).start()
    server = make_server(kiosk, args.host, args.port)
    print(f"edge-rec kiosk: http://{args.host}:{server.server_address[1]}/ (version {kiosk.live.version}; Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
