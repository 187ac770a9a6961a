"""The demo: real photographs (scikit-image's sample photos), cropped into a COCO dataset.

Each source photo carries hand-drawn boxes (and keypoints and a polygon); random crops
of it keep the objects they still mostly contain, so every item is a real JPEG with real,
slightly different annotations. ``build_photo_coco`` is reused by the benchmarks.

The demo's folder is its store (``annostream serve --data DIR`` serves it), marked by a
file the demo writes; the demo rebuilds only a folder so marked (removing only what it made)
or an empty or missing one, and refuses any other, so a user's files are never deleted.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# photo -> [(label, [x_min, y_min, x_max, y_max])], in the photo's own pixels.
PHOTOS: dict[str, list[tuple[str, list[float]]]] = {
    "astronaut.png": [
        ("person", [0, 12, 366, 512]),
        ("face", [177, 18, 305, 152]),
        ("helmet", [280, 347, 512, 512]),
        ("spaceship", [354, 0, 470, 280]),
    ],
    "chelsea.png": [
        ("cat", [0, 0, 451, 300]),
        ("eye", [136, 87, 208, 149]),
        ("eye", [295, 102, 351, 164]),
        ("nose", [239, 220, 280, 256]),
    ],
    "coffee.png": [
        ("cup", [168, 14, 427, 307]),
        ("saucer", [72, 75, 482, 396]),
        ("spoon", [325, 218, 413, 327]),
    ],
    "rocket.jpg": [
        ("rocket", [298, 121, 342, 412]),
        ("tower", [0, 0, 87, 427]),
        ("tower", [560, 0, 640, 427]),
        ("tower", [167, 121, 218, 412]),
        ("tower", [429, 121, 480, 412]),
    ],
    "motorcycle_left.png": [("motorcycle", [81, 81, 687, 460])],
    "camera.png": [
        ("person", [0, 65, 327, 512]),
        ("tripod", [229, 180, 412, 512]),
        ("camera", [254, 132, 333, 205]),
    ],
}
CAT_KEYPOINTS = ["left_eye", "right_eye", "nose"]
CAT_FACE = [[172, 118], [323, 133], [259, 238]]
SAUCER_RING = [
    [72 + 205 + 205 * _c, 75 + 160 + 160 * _s]
    for _c, _s in [(1, 0), (0.7, 0.7), (0, 1), (-0.7, 0.7), (-1, 0), (-0.7, -0.7), (0, -1), (0.7, -0.7)]
]


def _photo_dir() -> Path:
    from annostream.extras import require

    return Path(str(require("skimage.data", "the demo's photographs").__file__)).parent


def _clip(box: list[float], crop: tuple[int, int, int, int]) -> list[float] | None:
    x0, y0, x1, y1 = crop
    cx0, cy0 = max(box[0], x0), max(box[1], y0)
    cx1, cy1 = min(box[2], x1), min(box[3], y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    visible = (cx1 - cx0) * (cy1 - cy0) / ((box[2] - box[0]) * (box[3] - box[1]))
    if visible < 0.5:
        return None
    return [cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0]


def build_photo_coco(out: Path, n_items: int, seed: int = 0, max_side: int | None = None) -> Path:
    """Write ``n_items`` JPEG crops and ``annotations.json`` (COCO) under ``out``."""
    from PIL import Image

    rng = random.Random(seed)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({label for boxes in PHOTOS.values() for label, _ in boxes})
    cat_id = {name: i + 1 for i, name in enumerate(names)}
    categories = [{"id": cat_id[n], "name": n, "supercategory": "thing"} for n in names]
    categories[cat_id["cat"] - 1]["keypoints"] = CAT_KEYPOINTS
    categories[cat_id["cat"] - 1]["skeleton"] = [[1, 3], [2, 3]]
    sources = {name: Image.open(_photo_dir() / name).convert("RGB") for name in PHOTOS}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    photo_names = sorted(PHOTOS)
    for i in range(n_items):
        photo = photo_names[i % len(photo_names)]
        img = sources[photo]
        scale = rng.uniform(0.6, 1.0)
        w, h = int(img.width * scale), int(img.height * scale)
        x0, y0 = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        crop = (x0, y0, x0 + w, y0 + h)
        tile = img.crop(crop)
        factor = 1.0
        if max_side and max(w, h) > max_side:
            factor = max_side / max(w, h)
            tile = tile.resize((max(1, round(w * factor)), max(1, round(h * factor))))
        file_name = f"{i:06d}_{Path(photo).stem}.jpg"
        tile.save(images_dir / file_name, quality=90)
        image_id = i + 1
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": tile.width,
                "height": tile.height,
                "source": photo,
                "split": "val" if i % 5 == 0 else "train",
            }
        )
        for label, box in PHOTOS[photo]:
            clipped = _clip(box, crop)
            if clipped is None:
                continue
            b = [min(v * factor, lim) for v, lim in zip(clipped, (tile.width, tile.height) * 2, strict=True)]
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cat_id[label],
                "iscrowd": 0,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": (b[2] - b[0]) * (b[3] - b[1]),
            }
            if label == "cat":
                kps: list[float] = []
                for x, y in CAT_FACE:
                    inside = x0 <= x < x0 + w and y0 <= y < y0 + h
                    kps += [(x - x0) * factor, (y - y0) * factor, 2] if inside else [0, 0, 0]
                ann["keypoints"], ann["num_keypoints"] = kps, sum(1 for v in kps[2::3] if v)
            if label == "saucer" and all(x0 <= x < x0 + w and y0 <= y < y0 + h for x, y in SAUCER_RING):
                ann["segmentation"] = [
                    [c for x, y in SAUCER_RING for c in ((x - x0) * factor, (y - y0) * factor)]
                ]
            annotations.append(ann)
    coco = {
        "info": {"description": "annostream demo: crops of scikit-image sample photos"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


MARKER = ".annostream-demo"
PROJECT = "coco-dataset"
# What a demo run puts in its folder; a rebuild removes these and nothing else.
MADE = (MARKER, "source", "annostream.db", "annostream.db-wal", "annostream.db-shm", "blobs", "signing.key")


class NotADemoFolder(ValueError):
    """The folder exists with content the demo did not make: it is left untouched."""


def prepare_folder(data: Path) -> None:
    """Make ``data`` ready for a fresh demo: create it, or empty what an earlier demo made."""
    if data.exists() and not data.is_dir():
        raise NotADemoFolder(f"{data} is a file, not a folder; give the demo another --data")
    if data.is_dir() and any(data.iterdir()):
        if not (data / MARKER).is_file():
            raise NotADemoFolder(
                f"{data} already holds files the demo did not make; it is left "
                "untouched: give the demo an empty or new folder with --data"
            )
        from annostream.client.transports.embedded import close_store

        close_store(data)
        for name in MADE:
            path = data / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    data.mkdir(parents=True, exist_ok=True)
    (data / MARKER).write_text("made by 'annostream demo'; the demo may rebuild this folder\n")


def _shown(path: Path) -> str:
    """``path`` as typed from here: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def commands() -> tuple[str, str]:
    """How to run ``annostream`` and ``python`` from this shell, as this process was run.

    ``make demo`` runs the virtualenv's script, which is usually not on PATH: then the
    printed commands name it by its path, so they work when pasted.
    """
    python = Path(sys.executable)
    on_path = shutil.which("python")
    python_cmd = "python" if on_path and Path(on_path).resolve() == python.resolve() else _shown(python)
    script = Path(sys.argv[0]) if sys.argv and Path(sys.argv[0]).name == "annostream" else None
    if script is None:
        return f"{python_cmd} -m annostream.cli", python_cmd
    found = shutil.which("annostream")
    if found and Path(found).resolve() == script.resolve():
        return "annostream", python_cmd
    return _shown(script.absolute()), python_cmd


def next_steps(data: Path, port: int, key: dict[str, str]) -> str:
    """The copy-paste block the demo ends with: serve, a viewer key, a snippet that runs as is."""
    annostream, python = commands()
    serve = f"{annostream} serve --data {data}" + (f" --port {port}" if port != 8085 else "")
    url = f"http://127.0.0.1:{port}"
    snippet = f"""from annostream import Project

project = Project("{PROJECT}", "{key["client_id"]}", "{key["client_secret"]}", host="{url}")
ds = project.directory.get(name="Default")
print(len(ds), "items; the first:", ds[0]["file"]["name"], [i["label"] for i in ds[0]["instances"]])
cats = ds.slice("labels.cat > 0")
print(len(cats), "items with a cat")"""
    return "\n".join(
        [
            "",
            "Next steps",
            "",
            "1. Serve the store (in another terminal; it keeps running):",
            "",
            f"    {serve}",
            "",
            f"2. A viewer key for project {PROJECT} (read-only):",
            "",
            f"    client_id={key['client_id']}",
            f"    client_secret={key['client_secret']}",
            "",
            f"3. Read it from Python (save as demo_read.py and run: {python} demo_read.py):",
            "",
            "# --- demo_read.py ---",
            snippet,
            "# --- end ---",
        ]
    )


def run_demo(data: Path, n_items: int, out: Console, port: int = 8085) -> None:
    """Build, import into the store at ``data``, serve, stream over HTTP, summarise, stop,
    then print how to go on (serve command, viewer key, Python snippet)."""
    from annostream.client.project import Project
    from annostream.client.transports import EmbeddedTransport
    from annostream.formats.coco import read_coco
    from annostream.server.launch import running_server

    prepare_folder(data)
    t0 = time.perf_counter()
    annotations = build_photo_coco(data / "source", n_items)
    out.print(f"built {n_items} photographs in {time.perf_counter() - t0:.1f} s -> {data / 'source'}")

    local = EmbeddedTransport(data)
    local.create_project(PROJECT, "annostream demo", False)
    source = read_coco(annotations, data / "source" / "images")
    result = local.import_source(PROJECT, "Default", source, "coco")
    key = local.create_key(PROJECT, "viewer")
    out.print(
        f"imported {result['files']} files, {result['instances']} instances into {PROJECT}/Default "
        f"(revision {result['revision']}); the store is {data}"
    )
    from annostream.demo_video import build_demo_video

    video, tracked = build_demo_video()
    local.create_label(PROJECT, "crossing", None)
    made = local.upload_file(PROJECT, "Video", "cat_crossing.mp4", video, tracked, {})
    out.print(
        f"made a {made['frame_count']}-frame mp4 ({len(video) / 1024:.0f} KiB) from the photographs: "
        f"a tracked cat face, {len(tracked) - 1} keyframes, one event"
    )

    with running_server(data) as url:
        out.print(f"a server on {url} for a moment; streaming with a viewer key")
        project = Project(PROJECT, key["client_id"], key["client_secret"], host=url)
        ds = project.directory.get(name="Default")
        per_label: Counter[str] = Counter()
        pixels = 0
        t0 = time.perf_counter()
        for sample in ds:
            per_label.update(inst["label"] for inst in sample["instances"] if inst["label"] is not None)
            sample["image"].load()
            pixels += sample["image"].width * sample["image"].height
        elapsed = time.perf_counter() - t0
        sliced = ds.slice("labels.cat > 0 or labels.person > 0")
        n_slice = len(sliced)
        clips = project.dataset("Video").clips(length=16, stride=8, interpolate=True)
        t1 = time.perf_counter()
        lines = []
        for clip in clips:
            boxes = [t["boxes"][0].round().astype(int).tolist() for t in clip["targets"]]
            lines.append(
                f"  clip at frame {clip['start']:>2}: {tuple(clip['clip'].shape)}, cat box "
                f"{boxes[0]} -> {boxes[-1]}, events {[e['event'] for e in clip['events']]}"
            )
        clip_rate = len(clips) / (time.perf_counter() - t1)

    table = Table("label", "instances", title=f"{len(ds)} items streamed over HTTP")
    for label, n in sorted(per_label.items()):
        table.add_row(label, str(n))
    out.print(table)
    out.print(
        f"{len(ds) / elapsed:.0f} items/s with images decoded ({pixels / elapsed / 1e6:.1f} Mpx/s); "
        f"slice 'labels.cat > 0 or labels.person > 0' holds {n_slice} items"
    )
    out.print(
        f"video streamed as {len(clips)} clips of 16 frames (stride 8, boxes interpolated between "
        f"keyframes), decoded on the client at {clip_rate:.0f} clips/s:"
    )
    for line in lines:
        out.print(line)
    out.print("that server is stopped")
    out.print(next_steps(data, port, key))
