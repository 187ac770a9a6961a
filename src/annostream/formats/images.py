"""A folder of images as import records, optionally labelled by folder (ImageFolder layout).

Every image below the folder becomes one file named by its path relative to the folder
(``cat/001.jpg``); with ``labels_from_folders`` the first folder of that path is its class,
given as a ``tag`` instance, and the classes become labels (sorted, as torchvision's
ImageFolder numbers them). Symlinks to folders are not followed; names are confined to the
folder (``annostream.paths``). Files whose suffix is not an image's are skipped, not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annostream.formats import ImportSource, record_error
from annostream.paths import confine, safe_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def image_paths(root: Path) -> list[Path]:
    """The images below ``root``, sorted by relative path (hidden files and folders skipped)."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_images(root: str | Path, labels_from_folders: bool = False) -> ImportSource:
    """Every image below ``root`` (one error naming the folder when it is not one)."""
    root = Path(root)
    if not root.is_dir():
        raise record_error(str(root), "no such folder (expected a folder of images)")
    paths = image_paths(root)
    if not paths:
        raise record_error(
            str(root), f"holds no images (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
        )
    classes: list[str] = []
    if labels_from_folders:
        top = {p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1}
        loose = [p for p in paths if len(p.relative_to(root).parts) == 1]
        if loose:
            raise record_error(
                str(loose[0]),
                "is not inside a class folder (--labels-from-folders expects ROOT/<class>/<image>)",
            )
        classes = sorted(top)
    labels: list[dict[str, Any]] = [{"name": c, "color": None, "spec": {}} for c in classes]
    return ImportSource(labels, [], _records(root, paths, labels_from_folders), len(paths))


def _records(root: Path, paths: list[Path], labels_from_folders: bool) -> Iterator[dict[str, Any]]:
    for path in paths:
        name = safe_name(path.relative_to(root).as_posix())
        instances = [{"type": "tag", "label": name.split("/")[0]}] if labels_from_folders else []
        yield {
            "where": name,
            "name": name,
            "image_path": str(confine(root, name)),
            "sha256": None,
            "metadata": {},
            "instances": instances,
            "width": None,
            "height": None,
        }
