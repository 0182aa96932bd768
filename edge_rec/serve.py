"""``edge-rec serve CHANNEL``: a development HTTP server for a channel directory.

Static files with ETag, Content-Length, single-range requests (206 / 416) and conditional GETs. A channel
is only static files, so production uses any static host (nginx, object storage, a CDN) instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Tuple, Union

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ChannelHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet unless asked
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = Path(self.translate_path(self.path))
        root = Path(self.directory).resolve()
        if not path.is_file() or root not in path.resolve().parents:
            self.send_error(HTTPStatus.NOT_FOUND, "no such file in the channel")
            return
        st = path.stat()
        etag = '"' + hashlib.sha256(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:20] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        span = self._range(st.st_size)
        if span == "bad":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{st.st_size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = span or (0, st.st_size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK)
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end}/{st.st_size}")
        self.send_header("Content-Type", "application/json" if path.suffix == ".json" else "application/octet-stream")
        self.send_header("Content-Length", str(max(0, end - start + 1)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache" if path.suffix == ".json" else "public, max-age=31536000, immutable")
        self.end_headers()
        if body and end >= start:
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start + 1
                while left:
                    chunk = f.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _range(self, size: int) -> Union[None, str, Tuple[int, int]]:
        header = self.headers.get("Range")
        if not header:
            return None
        m = _RANGE.match(header.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return "bad"
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:  # suffix range: the last N bytes
            start, end = max(0, size - int(m.group(2))), size - 1
        return "bad" if start >= size or start > end else (start, end)


def make_server(channel: Union[str, Path], host: str = "127.0.0.1", port: int = 8000,
                verbose: bool = False) -> ThreadingHTTPServer:
    """A server for ``channel`` (not yet serving: call ``serve_forever``, or :func:`serve_in_thread`)."""
    channel = Path(channel)
    if not channel.is_dir():
        raise FileNotFoundError(f"channel directory {channel} not found")
    server = ThreadingHTTPServer((host, port), partial(ChannelHandler, directory=os.fspath(channel)))
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def serve_in_thread(channel: Union[str, Path], host: str = "127.0.0.1", port: int = 0) -> "Tuple[ThreadingHTTPServer, str]":
    """Start a server in a daemon thread; returns it and its base URL (port 0 picks a free port)."""
    server = make_server(channel, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
