"""An S3 endpoint (moto, on loopback) for the peers that read their shards from S3.

The endpoint is started with the suite's own helper (``tests/services.py``) and holds one
bucket; moto accepts any credentials, so fixed ones are handed to every reader.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUCKET = "bench"
REGION = "us-east-1"
KEY_ID = SECRET = "testing"


@dataclass(frozen=True)
class Endpoint:
    url: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def upload_dir(self, folder: Path, prefix: str) -> str:
        """Every file under ``folder`` to ``s3://BUCKET/prefix/...``; returns that URL."""
        client = self.client()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
        return f"s3://{BUCKET}/{prefix}"


@contextmanager
def moto_endpoint() -> Iterator[Endpoint]:
    """A fresh moto server on a free loopback port with the bucket made; stopped on exit."""
    from tests import services

    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp:
        url = services.start_moto(Path(tmp))
        try:
            endpoint = Endpoint(url)
            endpoint.client().create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            services.stop_moto(Path(tmp))
