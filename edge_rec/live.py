"""A recommender that follows the device state: a sync's switch is picked up without a restart.

Each call checks ``state.json`` (one ``stat``); when it changed, the new current version is opened and
health-checked beside the old one, then swapped in with one reference assignment, so a call is served
entirely by one version. A version that fails to open or fails its golden cases is rolled back.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple, Union

from .errors import EdgeRecError
from .history import HistoryStore
from .recommender import EdgeRecommender, Recommendation
from .signing import KeyLike
from .state import DeviceState
from .sync import check_version


class LiveRecommender:
    def __init__(self, state_dir: Union[str, Path], public_keys: Union[KeyLike, Iterable[KeyLike]], threshold: int = 1,
                 history: Union[str, Path, HistoryStore, None] = None, **kw: Any) -> None:
        self.device = DeviceState(state_dir)
        self.keys, self.threshold, self.kw = public_keys, threshold, kw
        self.history = HistoryStore(history) if isinstance(history, (str, Path)) else history
        self._stamp: Optional[Tuple[int, int]] = None
        self._rec: Optional[EdgeRecommender] = None
        self._lock = threading.Lock()
        self.rolled_back: List[str] = []
        self.refresh()

    @property
    def version(self) -> Optional[int]:
        rec = self._rec
        return rec.bundle.manifest.bundle_version if rec else None

    def refresh(self) -> EdgeRecommender:
        """The recommender of the current version, reopened if the state changed since the last call."""
        st = self.device.state_file.stat() if self.device.state_file.exists() else None
        stamp = (st.st_mtime_ns, st.st_ino) if st else None
        if stamp == self._stamp and self._rec is not None:
            return self._rec
        with self._lock:
            if stamp != self._stamp or self._rec is None:
                self._rec = self._open_current()
                self._stamp = stamp
            return self._rec

    def _open_current(self) -> EdgeRecommender:
        while True:
            self.device.state = self.device.load()
            path = self.device.current_dir()
            if path is None:
                raise EdgeRecError(f"no version is installed in {self.device.root}; run `edge-rec sync` first")
            try:
                keys = [self.keys] if not isinstance(self.keys, (list, tuple)) else self.keys
                return check_version(path, keys, self.threshold, history=self.history, **self.kw)
            except EdgeRecError as e:
                self.rolled_back.append(f"version {self.device.state.current}: {e}")
                if self.device.rollback(str(e)) is None:
                    raise EdgeRecError(f"no healthy version left in {self.device.root}: {e}") from None

    def recommend(self, *args: Any, **kw: Any) -> List[Recommendation]:
        return self.refresh().recommend(*args, **kw)

    def recommend_batch(self, *args: Any, **kw: Any) -> List[List[Recommendation]]:
        return self.refresh().recommend_batch(*args, **kw)

    def similar_items(self, *args: Any, **kw: Any) -> List[Recommendation]:
        return self.refresh().similar_items(*args, **kw)
