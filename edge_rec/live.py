"""A recommender that follows the device state: a sync's switch is picked up without a restart.

Each call checks ``state.json`` (one ``stat``); when it changed and names another current version, that
version is opened and health-checked beside the old one, then swapped in, so a call is served entirely
by one version. A replaced version is closed once the last call still using it returns. A version that
fails to open or fails its golden cases is rolled back.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

from .errors import EdgeRecError
from .golden import check_version
from .history import HistoryStore
from .recommender import EdgeRecommender, Recommendation
from .signing import KeyLike, check_threshold, key_id, trusted_keys
from .state import DeviceState


class _Loaded:
    """One loaded version and how many calls are using it."""

    def __init__(self, rec: EdgeRecommender, stamp: Optional[Tuple[int, int]]) -> None:
        self.rec, self.stamp, self.users, self.retired = rec, stamp, 0, False


class LiveRecommender:
    """Serves recommend / similar_items / search from the device's current version (see the module docstring)."""

    def __init__(self, state_dir: Union[str, Path], public_keys: Union[KeyLike, Iterable[KeyLike]], threshold: int = 1,
                 history: Union[str, Path, HistoryStore, None] = None, **kw: Any) -> None:
        self.device = DeviceState(state_dir)
        self.keys = trusted_keys(public_keys)
        self.threshold, self.kw = check_threshold(threshold, len({key_id(k) for k in self.keys})), kw
        self.history = HistoryStore(history) if isinstance(history, (str, Path)) else history
        self._owns_history = self.history is not history
        self._loaded: Optional[_Loaded] = None
        self._lock = threading.Lock()
        self.rolled_back: List[str] = []
        self.refresh()

    @property
    def version(self) -> Optional[int]:
        loaded = self._loaded
        return loaded.rec.bundle.manifest.bundle_version if loaded else None

    def _stamp(self) -> Optional[Tuple[int, int]]:
        try:
            st = self.device.state_file.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino

    def refresh(self) -> EdgeRecommender:
        """The recommender of the current version, reopened if the state changed since the last call. It
        stays valid until the next switch; to hold it across calls, use ``with live.current() as rec``."""
        return self._current().rec

    def _current(self) -> _Loaded:
        stamp = self._stamp()
        loaded = self._loaded
        if loaded is not None and loaded.stamp == stamp:
            return loaded
        with self._lock:
            if self._loaded is not None and self._loaded.stamp != stamp:
                current = self.device.load().current  # e.g. a sync that only recorded a newer channel time
                if current == self._loaded.rec.bundle.manifest.bundle_version:
                    self._loaded.stamp = stamp
            if self._loaded is None or self._loaded.stamp != stamp:
                new = _Loaded(self._open_current(), stamp)
                old, self._loaded = self._loaded, new
                if old is not None:
                    old.retired = True
                    if old.users == 0:
                        old.rec.close()
            return self._loaded

    @contextmanager
    def current(self) -> Iterator[EdgeRecommender]:
        """The current version's recommender, kept open (even across a switch) until the block ends."""
        while True:
            loaded = self._current()
            with self._lock:
                if not loaded.retired:  # else it was replaced in between: take the new one
                    loaded.users += 1
                    break
        try:
            yield loaded.rec
        finally:
            with self._lock:
                loaded.users -= 1
                if loaded.retired and loaded.users == 0:
                    loaded.rec.close()

    def _open_current(self) -> EdgeRecommender:
        while True:
            self.device.state = self.device.load()
            path = self.device.current_dir()
            if path is None:
                raise EdgeRecError(f"no version is installed in {self.device.root}; run `edge-rec sync` first")
            try:
                root = self.device.trusted_root(self.keys, self.threshold)
                return check_version(path, root.signing_keys, root.signing_threshold, history=self.history, **self.kw)
            except EdgeRecError as e:
                self.rolled_back.append(f"version {self.device.state.current}: {e}")
                if self.device.rollback(str(e)) is None:
                    raise EdgeRecError(f"no healthy version left in {self.device.root}: {e}") from None

    def close(self) -> None:
        """Close the loaded version (and a history store opened from a path)."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.retired = True
            if loaded.users == 0:
                loaded.rec.close()
        if self._owns_history and self.history is not None:
            self.history.close()

    def __enter__(self) -> "LiveRecommender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def recommend(self, *args: Any, **kw: Any) -> List[Recommendation]:
        with self.current() as rec:
            return rec.recommend(*args, **kw)

    def recommend_batch(self, *args: Any, **kw: Any) -> List[List[Recommendation]]:
        with self.current() as rec:
            return rec.recommend_batch(*args, **kw)

    def similar_items(self, *args: Any, **kw: Any) -> List[Recommendation]:
        with self.current() as rec:
            return rec.similar_items(*args, **kw)

    def search(self, *args: Any, **kw: Any) -> List[Recommendation]:
        """:meth:`EdgeRecommender.search` on the current version."""
        with self.current() as rec:
            return rec.search(*args, **kw)
