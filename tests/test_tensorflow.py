"""TensorFlow face: a real tf.data pipeline over a server on loopback gives the SDK's samples."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from annostream import Project  # noqa: E402
from annostream.integrations.tensorflow import output_signature  # noqa: E402
from tests.conftest import Source  # noqa: E402


def _http(source: Source) -> Project:
    return Project(
        "coco-dataset", source.viewer["client_id"], source.viewer["client_secret"], host=source.url
    )


def test_pipeline_gives_the_sdk_samples(project: Project) -> None:
    ds = project.dataset("Default")
    expected = {s["file"]["id"]: s for s in ds.with_options(decode="numpy")}
    tf_ds = ds.to_tensorflow(target="detection")
    assert tf_ds.element_spec == output_signature("detection")
    assert int(tf_ds.cardinality()) == len(ds)
    seen = []
    for element in tf_ds.prefetch(tf.data.AUTOTUNE):
        fid = int(element["file_id"])
        sample = expected[fid]
        seen.append(fid)
        assert element["image"].dtype == tf.uint8
        np.testing.assert_array_equal(element["image"].numpy(), sample["image"])
        np.testing.assert_array_equal(element["boxes"].numpy(), sample["boxes"])
        assert element["boxes"].shape == (len(sample["boxes"]), 4)
        np.testing.assert_array_equal(element["labels"].numpy(), sample["label_ids"])
        assert element["area"].shape == element["iscrowd"].shape == (len(sample["boxes"]),)
    assert seen == ds.ids.tolist()


def test_ragged_and_padded_batches(source: Source) -> None:
    ds = _http(source).dataset("Default")
    samples = list(ds)
    tf_ds = ds.to_tensorflow()
    ragged = list(tf_ds.ragged_batch(8).prefetch(2))
    assert len(ragged) == 5
    first = ragged[0]
    assert isinstance(first["boxes"], tf.RaggedTensor)
    for k in range(8):
        np.testing.assert_array_equal(first["boxes"][k].numpy().reshape(-1, 4), samples[k]["boxes"])
        np.testing.assert_array_equal(first["labels"][k].numpy(), samples[k]["label_ids"])
    padded = next(
        iter(
            tf_ds.padded_batch(
                8,
                padding_values={
                    "image": tf.constant(0, tf.uint8),
                    "boxes": -1.0,
                    "labels": tf.constant(-1, tf.int64),
                    "file_id": tf.constant(0, tf.int64),
                },
            )
        )
    )
    most = max(len(s["boxes"]) for s in samples[:8])
    assert padded["boxes"].shape == (8, most, 4) and padded["labels"].shape == (8, most)
    n0 = len(samples[0]["boxes"])
    np.testing.assert_array_equal(padded["boxes"][0, :n0].numpy(), samples[0]["boxes"])
    assert np.all(padded["labels"][0, n0:].numpy() == -1)


def test_shuffled_passes_and_shards(source: Source) -> None:
    ds = _http(source).dataset("Default")
    tf_ds = ds.to_tensorflow(decode=None, shuffle=True, seed=3)
    first, second = ([int(e["file_id"]) for e in tf_ds] for _ in range(2))
    assert sorted(first) == sorted(second) == ds.ids.tolist() and first != second
    assert [int(e["file_id"]) for e in ds.to_tensorflow(decode=None, shuffle=True, seed=3)] == first
    shards = [
        [int(e["file_id"]) for e in ds.to_tensorflow(decode=None, rank=r, world_size=3)] for r in range(3)
    ]
    assert [len(s) for s in shards] == [14, 14, 14]
    assert {i for s in shards for i in s} == set(ds.ids.tolist())


def test_bad_file_surfaces_its_id(source: Source) -> None:
    ds = _http(source).dataset("Default")
    mixed = next(s["file"]["id"] for s in ds if len(set(s["labels"])) > 1)
    tf_ds = ds.to_tensorflow(target="classification")
    with pytest.raises(Exception, match=rf"file {mixed} .* classification needs exactly one"):
        for _element in tf_ds:
            pass
