"""moto's standalone S3 server as a separate process on loopback, with a bucket devices may read anonymously
(the policy the README gives for a public channel). Used by the channel tests and the fleet benchmark."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def public_read_policy(bucket: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Sid": "DevicesRead", "Effect": "Allow", "Principal": "*",
                                                    "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_s3(bucket: str, log: Path, timeout: float = 60) -> Iterator[str]:
    """Start the server, create ``bucket`` with a public-read policy, yield the endpoint URL; stop it after.
    Sets fake AWS credentials in os.environ for the duration (moto accepts any)."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto's S3 server did not start on {url} (see {log})") from None
                time.sleep(0.3)
        os.environ.update(CREDENTIALS)
        import boto3
        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket=bucket)
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_read_policy(bucket)))
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)
