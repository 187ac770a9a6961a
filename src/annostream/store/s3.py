"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph, moto), through boto3.

URL form: ``s3://bucket/prefix?endpoint=http://host:9000&public_endpoint=...&redirect=1``.
The endpoint also comes from ``ANNOSTREAM_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``;
credentials and region from boto3's usual chain (``AWS_ACCESS_KEY_ID`` and friends).
``public_endpoint`` (or ``ANNOSTREAM_S3_PUBLIC_ENDPOINT``) is the address clients use, for
when the servers reach the store under another name (``http://minio:9000`` in compose);
presigned URLs are signed for that host. ``redirect=0`` keeps blob bytes flowing through the
API server, for clients that cannot reach the object store.

Reads of whole blobs (``get``, ``get_many``: every inline batch) skip boto3's per-call
machinery (parameter checks, endpoint rules, event hooks, response parsing: ~1 ms of CPU a
GET): each is a SigV4 query-signed GET (botocore's own signer) on a connection pool of this
process. Anything else (errors included: a reply other than 200 or 404 is asked again through
boto3, which raises its usual error), and every read without credentials or behind a proxy,
goes through boto3.
"""

from __future__ import annotations

import io
import os
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, urlparse

from annostream.store.sha import check_sha256, sha256_hex

MULTIPART_THRESHOLD = 8 << 20
MULTIPART_CHUNK = 8 << 20
POOL = 32
FETCHERS = 16  # concurrent GETs of one process, within POOL connections
SIGNED_FOR_S = 900  # how long a signed GET stays valid (it is used at once)
RETRIED_STATUSES = (429, 500, 502, 503, 504)


def _session() -> Any:
    """A boto3 session (credentials and region from boto3's usual chain)."""
    from annostream.extras import require

    return require("boto3.session", "an S3 blob store").Session()


def _client(endpoint: str | None, region: str, session: Any) -> Any:
    from botocore.config import Config

    config = Config(
        max_pool_connections=POOL,
        retries={"max_attempts": 5, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path"},
    )
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


class SignedGets:
    """Whole-object GETs signed with SigV4 query parameters, on one urllib3 pool per process:
    what boto3's ``get_object`` sends for a plain read, for less than half of its CPU."""

    def __init__(self, credentials: Any, endpoint: str, bucket: str, region: str) -> None:
        self.credentials = credentials
        self.base = f"{endpoint.rstrip('/')}/{quote(bucket)}/"
        self.region = region
        self._pool: Any = None
        self._pool_pid = 0
        self._lock = threading.Lock()

    def _connections(self) -> Any:
        import urllib3
        from botocore.httpsession import get_cert_path

        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():  # none yet, or forked
                retries = urllib3.Retry(
                    total=4, backoff_factor=0.1, status_forcelist=RETRIED_STATUSES, raise_on_status=False
                )
                self._pool = urllib3.PoolManager(
                    maxsize=POOL,
                    retries=retries,
                    timeout=urllib3.Timeout(connect=60.0, read=60.0),
                    ca_certs=get_cert_path(True),
                )
                self._pool_pid = os.getpid()
            return self._pool

    def url(self, key: str) -> str:
        """A GET URL of ``key`` signed now, valid for ``SIGNED_FOR_S``."""
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="GET", url=self.base + quote(key, safe="/~"))
        S3SigV4QueryAuth(self.credentials.get_frozen_credentials(), "s3", self.region, SIGNED_FOR_S).add_auth(
            request
        )
        return str(request.url)

    def get(self, key: str) -> tuple[int, bytes]:
        """The status and body of a GET of ``key`` (a truncated body raises)."""
        reply = self._connections().request("GET", self.url(key), preload_content=True)
        return reply.status, reply.data


def _signed_gets(session: Any, client: Any, bucket: str, region: str) -> SignedGets | None:
    """Signed GETs for ``client``'s endpoint, or None where boto3 must do them (no credentials,
    or a proxy configured: boto3 honours it, a plain pool would not)."""
    credentials = session.get_credentials()
    proxies = urllib.request.getproxies()
    if credentials is None or proxies.get("http") or proxies.get("https"):
        return None
    return SignedGets(credentials, client.meta.endpoint_url, bucket, region)


class S3BlobStore:
    """Content-addressed blobs under ``prefix/ab/abcd...`` in one bucket; safe across threads."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        public_endpoint: str | None = None,
        region: str | None = None,
        redirect: bool = True,
        create_bucket: bool = True,
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.redirect = redirect
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        session = _session()
        self.client = _client(endpoint, region, session)
        self._gets = _signed_gets(session, self.client, bucket, region)
        self._signer = self.client if not public_endpoint else _client(public_endpoint, region, session)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
        )
        self._fetchers: ThreadPoolExecutor | None = None
        self._fetchers_lock = threading.Lock()
        self._fetchers_pid = 0
        if create_bucket:
            self._ensure_bucket()

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """A store from ``s3://bucket/prefix?endpoint=...`` (see the module docstring)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3:// URL with a bucket: {url}")
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        endpoint = (
            q.get("endpoint")
            or os.environ.get("ANNOSTREAM_S3_ENDPOINT")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        public = q.get("public_endpoint") or os.environ.get("ANNOSTREAM_S3_PUBLIC_ENDPOINT") or None
        redirect = q.get("redirect", os.environ.get("ANNOSTREAM_S3_REDIRECT", "1")) not in (
            "0",
            "false",
            "no",
        )
        return cls(
            parsed.netloc,
            parsed.path,
            endpoint=endpoint,
            public_endpoint=public,
            region=q.get("region"),
            redirect=redirect,
        )

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as race:
                if race.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    raise

    def key(self, sha256: str) -> str:
        name = f"{check_sha256(sha256)[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, data: bytes) -> tuple[str, bool]:
        """Upload unless present; objects over 8 MiB go up as a multipart upload in parts."""
        sha = sha256_hex(data)
        if self.exists(sha):
            return sha, False
        self.client.upload_fileobj(io.BytesIO(data), self.bucket, self.key(sha), Config=self._transfer)
        return sha, True

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def get(self, sha256: str) -> bytes:
        if self._gets is not None:
            status, body = self._gets.get(self.key(sha256))
            if status == 200:
                return body
            if status == 404:
                raise FileNotFoundError(f"no blob {sha256} in s3://{self.bucket}/{self.prefix}")
        return self.open(sha256).read()  # boto3 says what went wrong (or reads it after all)

    def get_many(self, shas: Iterable[str]) -> Iterator[bytes]:
        """Many blobs in order, fetched concurrently (FETCHERS at a time, on threads shared by
        every call and sized within the client's connection pool): a round trip each would
        dominate."""
        with self._fetchers_lock:
            if self._fetchers is None or self._fetchers_pid != os.getpid():  # none yet, or forked
                self._fetchers = ThreadPoolExecutor(max_workers=FETCHERS, thread_name_prefix="s3-get")
                self._fetchers_pid = os.getpid()
            fetchers = self._fetchers
        yield from fetchers.map(self.get, shas)

    def open(self, sha256: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"no blob {sha256} in s3://{self.bucket}/{self.prefix}") from exc
            raise

    def local_path(self, sha256: str) -> Path | None:
        return None

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def scan(self) -> Iterator[tuple[str, float]]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if len(name) == 64:
                    yield name, obj["LastModified"].timestamp()

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def presigned_url(self, sha256: str, expires: int = 3600, content_type: str | None = None) -> str | None:
        """A time-limited GET URL clients can fetch without our credentials (None: no redirect)."""
        if not self.redirect:
            return None
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if content_type:
            params["ResponseContentType"] = content_type
        params["ResponseCacheControl"] = "private, max-age=31536000, immutable"
        return self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
