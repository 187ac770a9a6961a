"""The retry policy's edges: Retry-After honoured, idempotent writes retried, other writes
never repeated once they may have done something, waits drawn with full jitter."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from annostream import Project, Retry
from annostream.client.transports import EmbeddedTransport, HttpTransport
from annostream.errors import AnnostreamError, TransportError
from annostream.server.launch import running_server
from tests.conftest import make_coco
from tests.resilience.conftest import build_store
from tests.resilience.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[tuple[int, dict[str, str], Path]]:
    store_dir, key = build_store(tmp_path_factory.mktemp("retry"), new_store_dir, 4)
    with running_server(store_dir) as url:
        yield int(url.rsplit(":", 1)[1]), key, store_dir


def _transport(proxy: FaultProxy, key: dict[str, str], **retry: float) -> HttpTransport:
    return HttpTransport(proxy.url, key["client_id"], key["client_secret"], retry=Retry(**retry))


def test_retry_after_is_honoured(served: tuple[int, dict[str, str], Path]) -> None:
    port, key, _ = served
    with FaultProxy(port, Faults(error_first=2, statuses=(429,), retry_after="1")) as proxy:
        started = time.monotonic()
        count, _ = _transport(proxy, key).count("resilience", "Default", None, None)
    assert count == 4 and proxy.counts["429"] == 2
    assert time.monotonic() - started >= 2.0, "waited as asked, not the (shorter) backoff"


def test_a_write_that_may_have_happened_is_not_repeated(served: tuple[int, dict[str, str], Path]) -> None:
    port, key, store_dir = served
    with (
        FaultProxy(port, Faults(cut=1.0, cut_bytes=(1, 1))) as proxy,  # every reply cut short
        pytest.raises(TransportError, match="not safe to repeat"),
    ):
        _transport(proxy, key).upload_file("resilience", "Default", "once.txt", b"once", [], {})
    ids, rev = EmbeddedTransport(store_dir).ids("resilience", "Default", "file.type = text", None)
    names = [
        i["file"]["name"]
        for i, _ in EmbeddedTransport(store_dir).items("resilience", [int(x) for x in ids], rev, False)
    ]
    assert names.count("once.txt") == 1, "committed once, and not again by a retry"


def test_a_write_refused_with_503_is_reported_not_repeated(served: tuple[int, dict[str, str], Path]) -> None:
    port, key, _ = served
    with (
        FaultProxy(port, Faults(error_first=1, statuses=(503,))) as proxy,
        pytest.raises(AnnostreamError) as caught,
    ):
        _transport(proxy, key).upload_file("resilience", "Default", "refused.txt", b"x", [], {})
    assert caught.value.status == 503 and proxy.counts["503"] == 1 and proxy.counts["connections"] == 1


def test_staging_blobs_is_retried_and_the_import_lands(
    tmp_path: Path, served: tuple[int, dict[str, str], Path]
) -> None:
    port, key, _ = served
    ann = make_coco(tmp_path / "more", 3, seed=99)
    with FaultProxy(port, Faults(error_first=3, statuses=(502, 503, 504))) as proxy:
        project = Project("resilience", key["client_id"], key["client_secret"], host=proxy.url)
        result = project.import_coco(json.loads(ann.read_text()), tmp_path / "more" / "images", "Imported")
    assert result["files"] == 3
    assert sum(proxy.counts[s] for s in ("502", "503", "504")) == 3


def test_waits_are_full_jitter_below_a_growing_ceiling() -> None:
    policy = Retry(backoff=0.1, max_backoff=2.0)
    rng = random.Random(0)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (4, 0.8), (6, 2.0), (60, 2.0)]:
        waits = [policy.wait(failures, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8, "the whole range is used"
    with pytest.raises(ValueError):
        Retry(tries=0)


def test_a_batch_cut_anywhere_or_with_a_wrong_blob_is_corrupt_never_items() -> None:
    from annostream import frames
    from annostream.client.integrity import verified_frames
    from annostream.client.retry import Corrupt

    blobs = [b"first image bytes", None, b"third"]
    items = [
        {"id": i, "file": {"sha256": hashlib.sha256(b).hexdigest() if b else None}}
        for i, b in enumerate(blobs)
    ]
    body = b"".join(
        frames.encode_header(item, None if b is None else len(b)) + (b or b"")
        for item, b in zip(items, blobs, strict=True)
    )
    assert [b for _, b in verified_frames(body, [0, 1, 2])] == blobs
    for cut in range(len(body)):  # a cut at a record boundary too: an item is missing
        with pytest.raises(Corrupt):
            verified_frames(body[:cut], [0, 1, 2])
    with pytest.raises(Corrupt, match="hash"):
        verified_frames(body.replace(b"third", b"thirD"), [0, 1, 2])
