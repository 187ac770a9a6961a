"""A full epoch through a proxy that cuts connections, delays, answers 502/503 and damages
bytes: every item exactly once, identical to a clean epoch, on both stacks and through
every way of reading (``for s in ds``, ``to_pytorch`` with two DataLoader workers,
``stream()``)."""

from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import DataLoader

from tests.resilience.conftest import Corpus, epoch, fingerprint
from tests.resilience.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.timeout(240)

# The corpus is ~120 KB of JPEGs; a 4-item batch reply is 5-10 KB. Cutting every
# connection within 40 KB gives 10 or more cuts an epoch while most replies still get through.
HOSTILE = Faults(cut=1.0, cut_bytes=(0, 40_000), error=0.15, delay=0.2, max_delay=0.02)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _assert_exactly_once(corpus: Corpus, got: list[tuple[int, str, bytes]]) -> None:
    ids = Counter(fp[0] for fp in got)
    assert not [i for i, n in ids.items() if n > 1], "an item was delivered twice"
    assert set(ids) == set(corpus.clean), "an item was lost"
    assert {fp[0]: fp for fp in got} == corpus.clean, "content differs from a clean epoch"


def test_iteration_survives_a_hostile_network(corpus: Corpus) -> None:
    with FaultProxy(_port(corpus.url), HOSTILE, seed=1) as proxy:
        got = epoch(corpus.project(proxy.url), batch_size=4)
    _assert_exactly_once(corpus, got)
    assert proxy.counts["cuts"] >= 5, proxy.stats()


def test_pytorch_workers_survive_a_hostile_network(corpus: Corpus) -> None:
    with FaultProxy(_port(corpus.url), HOSTILE, seed=2) as proxy:
        ds = corpus.project(proxy.url).dataset("Default").with_options(batch_size=4)
        torch_ds = ds.to_pytorch(decode=None, transform=fingerprint)
        loader = DataLoader(torch_ds, batch_size=4, num_workers=2, collate_fn=list)
        got = [fp for batch in loader for fp in batch]
    _assert_exactly_once(corpus, got)
    assert proxy.counts["cuts"] >= 5, proxy.stats()


def test_stream_survives_a_hostile_network(corpus: Corpus) -> None:
    with FaultProxy(_port(corpus.url), HOSTILE, seed=3) as proxy:
        ds = corpus.project(proxy.url).dataset("Default").with_options(batch_size=4)
        got = list(ds.stream(decode=None, transform=fingerprint, seed=7))
    _assert_exactly_once(corpus, got)
    assert proxy.counts["cuts"] >= 5, proxy.stats()


def test_damaged_bytes_are_fetched_again_never_delivered(corpus: Corpus) -> None:
    """Bytes flipped inside images pass HTTP's checks; the sha256 check catches every one."""
    with FaultProxy(_port(corpus.url), Faults(corrupt=0.5), seed=4) as proxy:
        got = epoch(corpus.project(proxy.url), batch_size=4)
    _assert_exactly_once(corpus, got)
    assert proxy.counts["corruptions"] >= 3, proxy.stats()
