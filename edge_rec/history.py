"""The on-device event store: the user's history in a local SQLite database (WAL). It never leaves the
device; ``export`` and ``clear`` give the user their data and the right to erase it."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from .errors import HistoryError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts, id);
"""

# what SQLite raises on a damaged file (text that is not UTF-8 surfaces as a decode error)
_DAMAGED = (sqlite3.Error, UnicodeDecodeError)


class HistoryStore:
    """Append-only interaction log with fast "last N items" reads; safe to share between threads."""

    def __init__(self, path: Union[str, Path], max_events: int = 100_000) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise HistoryError(f"cannot open the history database {self.path} ({e})") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute("SELECT count(*) FROM events").fetchone()
        except _DAMAGED as e:
            self._db.close()
            raise HistoryError(f"the history database {self.path} is unreadable ({e}); it may be corrupt: "
                               "move it away or call HistoryStore.reset(path) to start an empty history") from None

    @staticmethod
    def reset(path: Union[str, Path]) -> None:
        """Delete a (corrupt) history database and its WAL files."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def _run(self, sql: str, args: Sequence = ()) -> List[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except _DAMAGED as e:
                raise HistoryError(f"history database {self.path}: {e}") from None

    def record(self, item_id: str, kind: str = "view", ts: Optional[float] = None) -> None:
        """Append one event (``ts`` defaults to now, Unix seconds)."""
        if not isinstance(item_id, str) or not item_id:
            raise ValueError("item_id must be a non-empty string")
        self._run("INSERT INTO events (item_id, kind, ts) VALUES (?, ?, ?)",
                  (item_id, str(kind), float(time.time() if ts is None else ts)))
        if self.max_events:
            self._run("DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                      (self.max_events,))

    def last(self, n: int, kinds: Optional[Sequence[str]] = None) -> List[str]:
        """The item ids of the last ``n`` events (optionally of some kinds), oldest first."""
        if n <= 0:
            return []
        where, args = "", []
        if kinds:
            where = f"WHERE kind IN ({','.join('?' * len(kinds))})"
            args = list(kinds)
        rows = self._run(f"SELECT item_id FROM events {where} ORDER BY ts DESC, id DESC LIMIT ?", (*args, n))
        return [r[0] for r in reversed(rows)]

    def export(self) -> List[Dict[str, object]]:
        """Every stored event, oldest first, for the user to take away."""
        return [{"item_id": i, "kind": k, "ts": t} for i, k, t in self._run("SELECT item_id, kind, ts FROM events ORDER BY ts, id")]

    def clear(self) -> None:
        """Erase the history."""
        self._run("DELETE FROM events")
        self._run("VACUUM")

    def __len__(self) -> int:
        return int(self._run("SELECT count(*) FROM events")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
