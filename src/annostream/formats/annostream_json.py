"""annostream JSON: ``export.json`` (a small header) plus ``files.jsonl`` (one file a line).

The schema is documented, with its version, in docs/export-format.md. A reader never parses
the whole export at once: the header is small, and the files come one line at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from annostream.formats import (
    BlobSource,
    ExportContext,
    ImportSource,
    Sink,
    Spool,
    put_image,
    record_error,
)
from annostream.paths import confine

FORMAT = "annostream-json"
VERSION = 1
HEADER = "export.json"
FILES = "files.jsonl"
_INSTANCE_KEYS = (
    "type",
    "label",
    "geometry",
    "bbox",
    "area",
    "iscrowd",
    "attributes",
    "frame_number",
    "track_id",
    "keyframe",
    "machine_made",
)
_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
}


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def image_rel(file: dict[str, Any]) -> str | None:
    """Content-addressed image path: the same image has the same path in every export."""
    sha = file.get("sha256")
    if not sha:
        return None
    ext = PurePosixPath(file.get("name") or "").suffix.lower() or _EXT.get(file.get("content_type") or "", "")
    return f"images/{sha}{ext}"


def file_line(item: dict[str, Any], with_image: bool) -> dict[str, Any]:
    """One line of files.jsonl for an item (see docs/export-format.md)."""
    f = item["file"]
    return {
        "id": f["id"],
        "name": f["name"],
        "type": f["type"],
        "width": f["width"],
        "height": f["height"],
        "size": f["size"],
        "sha256": f["sha256"],
        "content_type": f["content_type"],
        "image": image_rel(f),
        "image_included": bool(with_image and f["sha256"]),
        "metadata": f["metadata"],
        "frame_count": f["frame_count"],
        "fps": f["fps"],
        "text": f["text"],
        "duration": f.get("duration"),
        "codec": f.get("codec"),
        "keyframes": f.get("keyframes"),
        "instances": [{"id": i["id"], **{k: i[k] for k in _INSTANCE_KEYS}} for i in item["instances"]],
    }


class JsonWriter:
    """Streams items into files.jsonl (spooled) and images/; the header is written last."""

    def __init__(self, sink: Sink, ctx: ExportContext, blobs: BlobSource) -> None:
        self.sink, self.ctx, self.blobs = sink, ctx, blobs
        self.lines = Spool()
        self.instances = 0

    def add(self, item: dict[str, Any]) -> None:
        line = file_line(item, bool(self.ctx.images))
        if line["image_included"]:
            put_image(self.sink, line["image"], line["sha256"], self.blobs, self.ctx.images)
        self.lines.append(_dumps(line) + b"\n")
        self.instances += len(item["instances"])

    def finish(self) -> dict[str, Any]:
        self.sink.write(FILES, self.lines.chunks())
        counts = {"files": self.lines.count, "instances": self.instances}
        self.lines.close()
        header = {
            "format": FORMAT,
            "version": VERSION,
            **self.ctx.provenance(),
            "labels": [{k: lab[k] for k in ("id", "name", "color", "spec")} for lab in self.ctx.labels],
            "attribute_groups": self.ctx.attribute_groups,
            "files": FILES,
            "images_included": bool(self.ctx.images),
            "counts": counts,
        }
        self.sink.write(HEADER, [orjson.dumps(header, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)])
        return counts


def read_json_export(path: Path) -> ImportSource:
    """An annostream JSON export (its folder or its export.json), or a Diffgram JSON file."""
    header_path = path / HEADER if path.is_dir() else path
    try:
        header = orjson.loads(header_path.read_bytes())
    except FileNotFoundError as exc:
        raise record_error(str(header_path), "no such file") from exc
    except orjson.JSONDecodeError as exc:
        if path.is_file() and _looks_like_diffgram(path):
            from annostream.formats.diffgram_json import read_diffgram

            return read_diffgram(path)
        raise record_error(str(header_path), f"not valid JSON, truncated? ({exc})") from exc
    if isinstance(header, dict) and "label_map" in header and "readme" in header:
        from annostream.formats.diffgram_json import read_diffgram

        return read_diffgram(path)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise record_error(str(header_path), f"not an annostream JSON header (format != '{FORMAT}')")
    if header.get("version") != VERSION:
        raise record_error(str(header_path), f"schema version {header.get('version')!r} is not {VERSION}")
    root = header_path.parent
    files_path = root / str(header.get("files") or FILES)
    if not files_path.is_file():
        raise record_error(str(files_path), "no such file")
    labels = [
        {"name": lab["name"], "color": lab.get("color"), "spec": lab.get("spec") or {}}
        for lab in sorted(header.get("labels", []), key=lambda lab: lab.get("id", 0))
    ]
    total = (header.get("counts") or {}).get("files")
    return ImportSource(labels, list(header.get("attribute_groups", [])), _records(root, files_path), total)


def _looks_like_diffgram(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return b'"label_map"' in head or b'"readme"' in head


def _records(root: Path, files_path: Path) -> Iterator[dict[str, Any]]:
    with open(files_path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{files_path.name} line {n}"
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise record_error(f"{files_path} line {n}", f"not valid JSON, truncated? ({exc})") from exc
            if not isinstance(line, dict) or "name" not in line:
                raise record_error(f"{files_path} line {n}", "not a file record (needs 'name')")
            image = confine(root, line["image"], f"{where}.image") if line.get("image") else None
            yield {
                "where": f"{where} ('{line['name']}')",
                "name": line["name"],
                "image_path": str(image) if image is not None and image.exists() else None,
                "sha256": line.get("sha256"),
                "metadata": line.get("metadata") or {},
                "instances": [{k: i[k] for k in _INSTANCE_KEYS if k in i} for i in line.get("instances", [])],
                "width": line.get("width"),
                "height": line.get("height"),
                "text": line.get("text") if line.get("type") == "text" else None,
            }
