"""Ray Data: ``ds.to_ray()`` reads the pinned slice by id ranges and equals the SDK's view."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from annostream import Project
from annostream.client.sample import make_sample
from tests.services import use_fake_aws_credentials

ray = pytest.importorskip("ray")


@pytest.fixture
def project(wire_project: Project) -> Project:
    """Ray's workers are other processes: HTTP through a real server (and embedded)."""
    return wire_project


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """Ray on this machine, two CPUs, no dashboard; workers inherit the S3 credentials."""
    use_fake_aws_credentials()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_to_ray_count_and_map_batches_equal_the_sdk(local_ray: None, project: Project) -> None:
    view = project.dataset("Default").slice("labels.cat >= 1 or labels.dog >= 1")
    expected = {
        item["id"]: (len(blob or b""), make_sample(item, None, None)) for item, blob in view.iter_raw()
    }
    assert 0 < len(expected) < len(project.dataset("Default"))

    rds = view.to_ray(parallelism=4, batch_size=3)
    assert rds.count() == len(view)

    def summarise(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "id": batch["id"],
            "bytes": np.array([len(b) for b in batch["image"]]),
            "labels": np.array(["|".join(sorted(x)) for x in batch["labels"]]),
        }

    rows = rds.map_batches(summarise, batch_format="numpy").take_all()
    got = {int(r["id"]): (int(r["bytes"]), [x for x in str(r["labels"]).split("|") if x]) for r in rows}
    assert got == {i: (size, sorted(sample["labels"])) for i, (size, sample) in expected.items()}


def test_ray_rows_hold_the_samples_columns(local_ray: None, project: Project) -> None:
    """boxes, labels, label_ids, polygons, keypoints and tags mean what they mean in ``ds[i]``."""
    view = project.dataset("Default")
    samples = {s["file"]["id"]: s for s in view.with_options(decode=None)}
    box_only = [sum(i["type"] == "box" for i in s["instances"]) for s in samples.values()]
    assert [len(s["boxes"]) for s in samples.values()] != box_only, (
        "the data has spatial instances other than boxes (polygons, keypoints)"
    )
    rows = view.to_ray(parallelism=3, batch_size=4).take_all()
    assert sorted(r["id"] for r in rows) == sorted(samples)
    for row in rows:
        sample = samples[row["id"]]
        boxes = np.asarray(row["boxes"], dtype=np.float32).reshape(-1, 4)
        assert np.array_equal(boxes, sample["boxes"]), row["id"]
        assert list(row["labels"]) == sample["labels"] and len(row["labels"]) == len(boxes)
        assert np.array_equal(np.asarray(row["label_ids"], dtype=np.int64), sample["label_ids"])
        polygons = [np.asarray([list(p) for p in poly], dtype=np.float32) for poly in row["polygons"]]
        assert [p.tolist() for p in polygons] == [p.tolist() for p in sample["polygons"]]
        assert len(row["keypoints"]) == len(sample["keypoints"])
        assert list(row["tags"]) == sample["tags"]
        assert row["image"] == sample["image"]


def test_read_tasks_are_id_ranges_of_one_revision(project: Project) -> None:
    from annostream.integrations.ray import AnnostreamDatasource

    view = project.dataset("Default")
    source = AnnostreamDatasource(view)
    tasks = source.get_read_tasks(4)
    assert len(tasks) == 4 and sum(t.metadata.num_rows for t in tasks) == len(view)
    assert source.revision == view.revision
    assert np.array_equal(source.ids, view.ids)
