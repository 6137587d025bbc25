#!/usr/bin/env python3
"""The raw upload limit of an S3 server, for scripts/bench-s3.sh: boto3 uploads every file under
a directory to s3://BUCKET/PREFIX/<relative path> through one s3transfer TransferManager with 8
threads (files above 64 MiB as multipart uploads of 64 MiB parts), and prints one line:
`files bytes seconds`.

usage: bench_s3_raw.py ENDPOINT BUCKET PREFIX DIR   (python from target/s3-venv: boto3 is there)
"""

import os
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager

MIB = 1 << 20


def main():
    endpoint, bucket, prefix, root = sys.argv[1:5]
    files = []
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p):
                files.append(p)
    files.sort()
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=boto3.session.Config(max_pool_connections=16),
    )
    cfg = TransferConfig(
        multipart_threshold=64 * MIB,
        multipart_chunksize=64 * MIB,
        max_concurrency=8,
        use_threads=True,
    )
    total = 0
    start = time.monotonic()
    with TransferManager(client, config=cfg) as tm:
        futures = []
        for p in files:
            rel = os.path.relpath(p, root)
            key = f"{prefix}/{rel}" if prefix else rel
            total += os.path.getsize(p)
            futures.append(tm.upload(p, bucket, key))
        for f in futures:
            f.result()
    secs = time.monotonic() - start
    print(f"{len(files)} {total} {secs:.3f}")


if __name__ == "__main__":
    main()
