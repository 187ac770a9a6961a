"""Faster R-CNN on a slice of a dataset, straight from the store: no files, no mapping code.

    python examples/train_detection.py --host http://127.0.0.1:8085 --project coco-dataset \
        --query "labels.person >= 1" --steps 20

Credentials come from --client-id/--client-secret (or ANNOSTREAM_CLIENT_ID/_SECRET); a
public project needs none. Needs torch and torchvision (pip install torchvision).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from annostream import Project
from annostream.integrations.torch import StreamLoader

try:
    import torchvision
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
    from torchvision.transforms import v2
except ImportError:
    sys.exit(
        "this example trains a torchvision Faster R-CNN: install torchvision "
        "(pip install torchvision) and run it again"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ANNOSTREAM_HOST", "http://127.0.0.1:8085"))
    parser.add_argument("--project", default="coco-dataset")
    parser.add_argument("--dataset", default="Default")
    parser.add_argument("--query", default=None, help="train on the files matching this query")
    parser.add_argument("--client-id", default=os.environ.get("ANNOSTREAM_CLIENT_ID"))
    parser.add_argument("--client-secret", default=os.environ.get("ANNOSTREAM_CLIENT_SECRET"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    project = Project(args.project, args.client_id, args.client_secret, host=args.host)
    view = project.dataset(args.dataset)
    if args.query:
        view = view.slice(args.query)
    num_classes = view.labels.num_classes
    print(f"{len(view)} files, {num_classes - 1} labels, torchvision {torchvision.__version__}")

    # A transform on the image only; boxes are in pixels of the image as stored.
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    stream = view.stream(transform, target="detection", seed=0)
    loader = StreamLoader(stream, batch_size=args.batch_size, num_workers=args.workers)

    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=num_classes)
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, weight_decay=1e-4)
    step, epoch = 0, 0
    while step < args.steps:
        loader.set_epoch(epoch)
        for images, targets in loader:
            # Faster R-CNN refuses degenerate boxes (points, lines): keep those with area.
            keep = [(t["boxes"][:, 2:] > t["boxes"][:, :2]).all(dim=1) for t in targets]
            targets = [
                {"boxes": t["boxes"][k], "labels": t["labels"][k]} for t, k in zip(targets, keep, strict=True)
            ]
            losses = model(images, targets)
            loss = sum(losses.values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            print(f"epoch {epoch} step {step}: loss {loss.item():.3f}")
            if step >= args.steps:
                torch.save({"model": model.state_dict(), "data": loader.state_dict()}, "checkpoint.pt")
                break
        epoch += 1
    print("saved checkpoint.pt (model and stream position, for an exact resume)")


if __name__ == "__main__":
    main()
