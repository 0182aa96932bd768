"""The on-device event store: the user's history in a local SQLite database (WAL). It never leaves the
device; ``export`` and ``clear`` give the user their data and the right to erase it."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
        # the last read of all kinds: (database version, n, ids oldest first, newest ts), kept exact by record()
        self._recent: Optional[Tuple[Tuple[int, int], int, List[str], float]] = None
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
        ts = float(time.time() if ts is None else ts)
        with self._lock:
            try:
                before = self._version()
                self._db.execute("INSERT INTO events (item_id, kind, ts) VALUES (?, ?, ?)", (item_id, str(kind), ts))
                if self.max_events:
                    self._db.execute("DELETE FROM events WHERE id <= "
                                     "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)", (self.max_events,))
                after = self._version()
            except _DAMAGED as e:
                self._recent = None
                raise HistoryError(f"history database {self.path}: {e}") from None
            self._recent = self._appended(before, after, item_id, ts)

    def _version(self) -> Tuple[int, int]:
        """Changes by another connection move data_version, changes by this one total_changes."""
        return self._db.execute("PRAGMA data_version").fetchone()[0], self._db.total_changes

    def _appended(self, before: Tuple[int, int], after: Tuple[int, int], item_id: str, ts: float):
        """The cached recent events after this store appended one, when it is still exact: nobody else
        wrote in between, the event is the newest, and trimming cannot reach the cached window."""
        cached = self._recent
        if cached is None or cached[0] != before or (cached[2] and ts < cached[3]) or \
                (self.max_events and cached[1] >= self.max_events):
            return None
        return (after, cached[1], (cached[2] + [item_id])[-cached[1]:], ts)

    def last(self, n: int, kinds: Optional[Sequence[str]] = None) -> List[str]:
        """The item ids of the last ``n`` events (optionally of some kinds), oldest first. The answer for
        all kinds is kept until the database changes (a write here or by another connection), so the
        recommender's per-request read costs one PRAGMA while the history is unchanged."""
        if n <= 0:
            return []
        if kinds:
            rows = self._run(f"SELECT item_id FROM events WHERE kind IN ({','.join('?' * len(kinds))}) "
                             "ORDER BY ts DESC, id DESC LIMIT ?", (*kinds, n))
            return [r[0] for r in reversed(rows)]
        with self._lock:
            try:
                version = self._version()
                cached = self._recent
                if cached is not None and cached[0] == version and cached[1] >= n:
                    return cached[2][-n:]
                rows = self._db.execute("SELECT item_id, ts FROM events ORDER BY ts DESC, id DESC LIMIT ?", (n,)).fetchall()
            except _DAMAGED as e:
                raise HistoryError(f"history database {self.path}: {e}") from None
            ids = [r[0] for r in reversed(rows)]
            self._recent = (version, n, ids, rows[0][1] if rows else float("-inf"))
            return ids[-n:]

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
