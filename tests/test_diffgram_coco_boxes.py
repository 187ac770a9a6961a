"""A COCO instances file (bbox plus segmentation, as COCO ships it) imported with
``--shapes box`` reaches the official Diffgram SDK (``diffgram==0.15.0``) with boxes and labels
that line up, one box per annotation, in the detection example's shape."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.revhelpers import new_project
from tests.test_imports import make_instances_coco

diffgram = pytest.importorskip("diffgram")
torch = pytest.importorskip("torch")


def _target(sample: dict[str, Any]) -> dict[str, Any]:
    """What a torchvision detection model takes, from the SDK's own lists only (as
    examples/train_detection.py would, were it written against the Diffgram SDK)."""
    boxes = torch.stack(
        [
            torch.as_tensor(sample[k], dtype=torch.float32)
            for k in ("x_min_list", "y_min_list", "x_max_list", "y_max_list")
        ],
        dim=1,
    ).reshape(-1, 4)
    return {
        "name": sample["diffgram_file"].original_filename,
        "boxes": boxes,
        "labels": torch.tensor(sample["label_id_list"], dtype=torch.int64),
    }


def test_coco_boxes_and_labels_line_up_in_the_diffgram_sdk(
    server_store: tuple[str, Path], tmp_path: Path
) -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", ResourceWarning)
    url, store_dir = server_store
    ours = new_project("http", url, store_dir, prefix="dgcoco", vocabulary=False)
    ann = make_instances_coco(tmp_path, 8, seed=5)
    coco = json.loads(ann.read_text())
    ours.import_coco(ann, tmp_path / "images", dataset="Boxes", shapes="box")
    ours.import_coco(ann, tmp_path / "images", dataset="Auto")
    key = ours.transport._auth  # type: ignore[attr-defined]
    dg = diffgram.Project(project_string_id=ours.string_id, client_id=key[0], client_secret=key[1], host=url)

    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: img["file_name"] for img in coco["images"]}
    want: dict[str, list[tuple[list[float], int]]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        want.setdefault(files[a["image_id"]], []).append(
            ([x, y, x + w, y + h], ours.labels[names[a["category_id"]]])
        )

    dataset = dg.directory.get(name="Boxes").to_pytorch(transform=_target)
    assert len(dataset) == len(want)
    for i in range(len(dataset)):
        got = dataset[torch.tensor(i)]
        assert len(got["boxes"]) == len(got["labels"]), "one label per box"
        expected = want[got["name"]]
        torch.testing.assert_close(
            got["boxes"], torch.tensor([b for b, _ in expected], dtype=torch.float32), rtol=0, atol=1e-3
        )
        assert got["labels"].tolist() == [label for _, label in expected]

    # Why the flag exists: with the default shapes, polygons give labels but no boxes.
    auto = dg.directory.get(name="Auto").to_pytorch(transform=_target)
    assert any(
        len(auto[torch.tensor(i)]["boxes"]) != len(auto[torch.tensor(i)]["labels"]) for i in range(len(auto))
    )
