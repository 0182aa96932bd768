"""Channels on S3-compatible object storage: moto's standalone S3 server on loopback (its own process), the
real boto3 client over HTTP, and devices syncing by plain HTTP GET from the bucket's endpoint."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from converter.channel_store import CHANNEL_CACHE, IMMUTABLE_CACHE, ChannelConflict, LocalStore, S3Store, open_store
from converter.publish import changes_from_vectors, prune_channel, publish_bundle, publish_changes, read_channel
from edge_rec import DeviceState, EdgeRecommender, SyncClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from moto_server import CREDENTIALS, moto_s3  # noqa: E402

BUCKET = "fleet"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server as a separate process on a free loopback port, with a bucket devices read anonymously."""
    with moto_s3(BUCKET, tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


def some_changes(converted, tag: str, n: int = 3):
    with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
        rows = np.arange(n)
        vectors, search = rec.items.dequantized(rows), rec.search_retriever.vectors(rows)
    ids = [f"{tag}-{i}" for i in range(n)]
    return changes_from_vectors(dict(zip(ids, vectors)), {i: {"title": i} for i in ids}, [],
                                dict(zip(ids, search)))


def s3(endpoint, prefix):
    return S3Store(f"s3://{BUCKET}/{prefix}", endpoint)


def test_publish_to_s3_and_devices_sync_over_http(converted, s3_endpoint, tmp_path):
    import boto3
    store = s3(s3_endpoint, "prod/movies")
    m1 = publish_bundle(store, converted["bundle"], converted["key"], name="movies")
    http = f"{s3_endpoint}/{BUCKET}/prod/movies"  # the bucket's plain HTTP endpoint, as a CDN origin would be
    device = tmp_path / "device"
    s = SyncClient(device, http, converted["pub"]).sync_once()
    assert (s.state, s.version) == ("updated", 1), s.line()
    m2 = publish_changes(store, some_changes(converted, "s3"), converted["key"])
    got = []
    s = SyncClient(device, http, converted["pub"]).sync_once(log=got.append)
    assert (s.state, s.version) == ("updated", 2), s.line()
    assert any(m2.deltas[-1].file in line for line in got) and not any(m2.snapshot.file in line for line in got)
    with EdgeRecommender.open(DeviceState(device).current_dir(), converted["pub"]) as rec:
        assert "s3-0" in rec.items
    m3 = publish_changes(store, some_changes(converted, "again"), converted["key"])  # a device that came by delta
    got = []                                                                        # keeps coming by delta
    s = SyncClient(device, http, converted["pub"]).sync_once(log=got.append)
    assert (s.state, s.version) == ("updated", 3) and not any("snapshot" in line for line in got), got
    assert any(m3.deltas[-1].file in line for line in got)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    head = client.head_object(Bucket=BUCKET, Key=f"prod/movies/{m1.snapshot.file}")
    assert head["CacheControl"] == IMMUTABLE_CACHE
    assert client.head_object(Bucket=BUCKET, Key="prod/movies/channel.json")["CacheControl"] == CHANNEL_CACHE
    assert m1.snapshot.sha256[:16] in m1.snapshot.file  # content-addressed
    assert read_channel(f"s3://{BUCKET}/prod/movies", s3_endpoint).version == 3


class Recording(S3Store):
    """The real S3 store, recording the order of writes."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.writes = []

    def upload(self, name, src):
        self.writes.append(name)
        super().upload(name, src)

    def commit_channel(self, data, expected):
        self.writes.append("channel.json")
        super().commit_channel(data, expected)


def test_packs_upload_before_channel_json_and_a_failed_upload_leaves_the_channel(converted, s3_endpoint, tmp_path):
    store = Recording(f"s3://{BUCKET}/order", s3_endpoint)
    publish_bundle(store, converted["bundle"], converted["key"], name="order")
    publish_changes(store, some_changes(converted, "o"), converted["key"])
    assert store.writes[-1] == "channel.json" and store.writes[:2] == [store.writes[0], "channel.json"]
    assert [w.split("/")[0] for w in store.writes[2:]] == ["deltas", "snapshots", "channel.json"]

    class Failing(S3Store):
        def upload(self, name, src):
            if name.startswith("snapshots/"):
                raise OSError("network down")
            super().upload(name, src)
    with pytest.raises(OSError):
        publish_changes(Failing(f"s3://{BUCKET}/order", s3_endpoint), some_changes(converted, "f"), converted["key"])
    assert read_channel(store).version == 2  # untouched: no channel.json names a missing file
    s = SyncClient(tmp_path / "d", f"{s3_endpoint}/{BUCKET}/order", converted["pub"]).sync_once()
    assert (s.state, s.version) == ("updated", 2), s.line()


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_concurrent_publishers_one_wins_and_the_channel_stays_whole(converted, s3_endpoint, tmp_path, kind):
    """Both publishers read version 1 and finish at once: exactly one channel.json swap succeeds."""
    make = (lambda: s3(s3_endpoint, "race")) if kind == "s3" else (lambda: LocalStore(tmp_path / "race"))
    publish_bundle(make(), converted["bundle"], converted["key"], name="race")
    both_built = threading.Barrier(2)

    class Racing(type(make())):
        def commit_channel(self, data, expected):
            both_built.wait(timeout=120)  # neither swaps before both have built on the same version
            super().commit_channel(data, expected)
    stores = [Racing(f"s3://{BUCKET}/race", s3_endpoint) if kind == "s3" else Racing(tmp_path / "race") for _ in range(2)]
    outcome = [None, None]

    def publish(i):
        try:
            outcome[i] = publish_changes(stores[i], some_changes(converted, f"p{i}"), converted["key"]).version
        except ChannelConflict as e:
            outcome[i] = e
    threads = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    won = [o for o in outcome if o == 2]
    lost = [o for o in outcome if isinstance(o, ChannelConflict)]
    assert len(won) == 1 and len(lost) == 1, outcome
    assert "another publisher" in str(lost[0])
    url = f"{s3_endpoint}/{BUCKET}/race" if kind == "s3" else None
    if url is None:
        from edge_rec.serve import serve_in_thread
        server, url = serve_in_thread(tmp_path / "race")
    s = SyncClient(tmp_path / "device", url, converted["pub"]).sync_once()
    assert (s.state, s.version) == ("updated", 2), s.line()


def test_prune_keeps_what_channel_json_names_and_what_is_recent(converted, s3_endpoint, tmp_path):
    store = s3(s3_endpoint, "prune")
    publish_bundle(store, converted["bundle"], converted["key"], name="prune")
    publish_changes(store, some_changes(converted, "a"), converted["key"])
    publish_bundle(store, converted["bundle"], converted["key"])  # a new full version: the chain restarts
    before = {f.name for f in store.packs()}
    assert len(before) == 4  # snapshots v1, v2, v3 and the delta v1 -> v2
    assert prune_channel(store, keep_days=1).removed == []  # everything is younger than a day
    current = read_channel(store)
    result = prune_channel(store, keep_days=0, now=time.time() + 1)
    assert set(result.kept) == {current.snapshot.file} and set(result.removed) == before - {current.snapshot.file}
    s = SyncClient(tmp_path / "device", f"{s3_endpoint}/{BUCKET}/prune", converted["pub"]).sync_once()
    assert (s.state, s.version) == ("updated", 3), s.line()


def test_publish_and_prune_from_the_command_line(converted, s3_endpoint, tmp_path):
    env = dict(os.environ, **CREDENTIALS)
    cli = [sys.executable, "-m", "edge_rec.cli"]
    r = subprocess.run(cli + ["publish", f"s3://{BUCKET}/cli", "--endpoint-url", s3_endpoint, "--bundle",
                              str(converted["bundle"]), "--key", str(converted["key"])], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0 and f"s3://{BUCKET}/cli" in r.stdout, r.stderr
    r = subprocess.run(cli + ["prune", f"s3://{BUCKET}/cli", "--endpoint-url", s3_endpoint, "--keep-days", "0"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "removed 0 pack(s)" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(cli + ["publish", "s3://no-such-bucket/x", "--endpoint-url", s3_endpoint, "--bundle",
                              str(converted["bundle"]), "--key", str(converted["key"])], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 1 and "NoSuchBucket" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run(cli + ["prune", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "no channel.json" in r.stderr, r.stderr


def test_store_addresses():
    assert isinstance(open_store("s3://bucket/a/b"), S3Store) and open_store("s3://bucket/a/b").prefix == "a/b"
    assert isinstance(open_store("/tmp/x"), LocalStore)
    from converter.channel_store import ChannelStoreError
    with pytest.raises(ChannelStoreError, match="endpoint-url"):
        open_store("/tmp/x", "http://127.0.0.1:1")
    with pytest.raises(ChannelStoreError, match="s3://bucket"):
        S3Store("s3:///nobucket")


def test_a_private_channel_through_signed_urls(converted, tmp_path):
    """A CDN in front of a private bucket checks a signed query string on every request (CloudFront's
    custom-policy signed URLs, say): the device sends the channel URL's query string with every file."""
    from http.server import ThreadingHTTPServer

    from edge_rec.serve import ChannelHandler
    publish_bundle(LocalStore(tmp_path / "private"), converted["bundle"], converted["key"], name="private")
    seen = []

    class SignedOnly(ChannelHandler):
        def do_GET(self):
            seen.append(self.path)
            path, _, query = self.path.partition("?")
            if query != "Policy=p&Signature=s&Key-Pair-Id=k":
                self.send_error(403, "missing or wrong signature")
                return
            self.path = path
            super().do_GET()
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: SignedOnly(*a, directory=str(tmp_path / "private")))
    server.verbose = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        s = SyncClient(tmp_path / "d1", base, converted["pub"]).sync_once()
        assert s.state == "failed" and "403" in s.message, s.line()
        s = SyncClient(tmp_path / "d2", f"{base}/?Policy=p&Signature=s&Key-Pair-Id=k", converted["pub"]).sync_once()
        assert (s.state, s.version) == ("updated", 1), s.line()
        assert any(p.startswith("/snapshots/") and p.endswith("Key-Pair-Id=k") for p in seen)
    finally:
        server.shutdown()
