"""Static export and import formats, as streams.

A writer takes items (a file with its instances, as the service reads them) one at a time
and writes them to a ``Sink`` (a folder, or a zip stream for HTTP) as it goes; large text
members are spooled to temporary files on disk, never held in memory. A reader yields
import records one at a time for ``service.imports`` (which commits them as one
transaction, whatever the format and the transport); a reader reads images only inside the
folder it was given (``annostream.paths``).

Writers: ``json`` (annostream JSON Lines), ``coco``, ``diffgram`` (Diffgram JSON),
``yolo`` (detection) and ``yolo-seg`` (segmentation). Readers: the same, plus ``images``
(a folder of images, ImageFolder classes optional).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from annostream.errors import InvalidInput
from annostream.paths import confine, safe_name

FORMATS = ("json", "coco", "diffgram", "yolo", "yolo-seg")
CHUNK = 1 << 20
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class Sink(Protocol):
    """Where an export's members go; one member is written at a time."""

    def write(self, rel: str, chunks: Iterable[bytes]) -> None: ...
    def link(self, rel: str, target: Path) -> bool: ...
    def close(self) -> None: ...


class DirSink:
    """Members as files under a folder; images may be symlinked to local blobs."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _target(self, rel: str) -> Path:
        rel = safe_name(rel, "member")
        path = confine(self.root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        confine(self.root, rel)  # again, now that the folders exist
        return path

    def write(self, rel: str, chunks: Iterable[bytes]) -> None:
        path = self._target(rel)
        if path.is_symlink():  # never write through a link left by an earlier export
            path.unlink()
        with open(path, "wb") as out:
            for chunk in chunks:
                out.write(chunk)

    def link(self, rel: str, target: Path) -> bool:
        path = self._target(rel)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
        return True

    def close(self) -> None:
        return None


class ZipSink:
    """Members in a zip written to any writable stream, seekable or not (HTTP bodies)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(stream, "w", allowZip64=True)

    def write(self, rel: str, chunks: Iterable[bytes]) -> None:
        if safe_name(rel, "member") != rel:
            raise InvalidInput(f"zip member '{rel}' would leave the archive's folder", {"member": rel})
        info = zipfile.ZipInfo(rel, _ZIP_TIME)
        compressible = not rel.startswith("images/")
        info.compress_type = zipfile.ZIP_DEFLATED if compressible else zipfile.ZIP_STORED
        with self.zip.open(info, "w", force_zip64=True) as out:
            for chunk in chunks:
                out.write(chunk)

    def link(self, rel: str, target: Path) -> bool:
        return False

    def close(self) -> None:
        self.zip.close()


class BlobSource(Protocol):
    """Blob bytes by sha256, and a local path when the store has one (for links)."""

    def get(self, sha256: str) -> bytes: ...
    def local_path(self, sha256: str) -> Path | None: ...


@dataclass
class ExportContext:
    """What every writer needs besides the items: vocabulary, provenance and options."""

    project: str
    dataset: str
    query: str | None
    revision: int
    labels: list[dict[str, Any]]
    attribute_groups: list[dict[str, Any]]
    images: bool | str = True
    exported_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def provenance(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "dataset": self.dataset,
            "query": self.query,
            "revision": self.revision,
            "exported_at": self.exported_at,
        }


class Writer(Protocol):
    def add(self, item: dict[str, Any]) -> None: ...
    def finish(self) -> dict[str, Any]: ...


class Spool:
    """A temporary file that text members accumulate in, read back in chunks at the end."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 -- held open across calls, closed by close()
        self.count = 0

    def append(self, data: bytes, separator: bytes = b"") -> None:
        if self.count and separator:
            self.file.write(separator)
        self.file.write(data)
        self.count += 1

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self.file.close()


class UniqueNames:
    """File names made unique within an export (``name``, then ``<file id>_name``).

    Holds one string per file (not per instance): what a folder of images needs anyway.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, name: str, file_id: int) -> str:
        try:
            clean = safe_name(name)
        except InvalidInput:
            clean = f"file_{file_id}"
        if clean in self.seen:
            path = PurePosixPath(clean)
            clean = str(path.with_name(f"{file_id}_{path.name}"))
        self.seen.add(clean)
        return clean


def put_image(sink: Sink, rel: str, sha: str | None, blobs: BlobSource, mode: bool | str) -> None:
    """Copy (or, with ``mode="link"`` on a folder over local blobs, symlink) one image."""
    if not sha or not mode:
        return
    if mode == "link":
        local = blobs.local_path(sha)
        if local is not None and sink.link(rel, local):
            return
    sink.write(rel, [blobs.get(sha)])


def num(value: float | int | None) -> float | int | None:
    """A coordinate as JSON wants it: integral floats as ints (0.0 -> 0), never dropped."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def record_error(record: str, reason: str) -> InvalidInput:
    """The one error every reader raises: file and record first, then what is wrong."""
    return InvalidInput(f"{record}: {reason}", {"record": record, "reason": reason})


@dataclass
class ImportSource:
    """What a reader found: the vocabulary to create, then records one at a time.

    A record is a plain dict (so it can travel as NDJSON): ``where`` (named in errors),
    ``name``, ``image_path`` (a local path, confined by the reader, or None), ``sha256`` (of
    a blob the project holds or has staged, or None), ``metadata``, ``instances`` (instance
    dicts in pixels), ``width``, ``height`` (declared; checked against the image). In-process
    records may carry the image's bytes as ``data`` instead of a path.
    """

    labels: list[dict[str, Any]]
    attribute_groups: list[dict[str, Any]]
    records: Iterator[dict[str, Any]]
    total: int | None = None


def make_writer(fmt: str, sink: Sink, ctx: ExportContext, blobs: BlobSource) -> Writer:
    """The streaming writer for ``fmt`` (one of FORMATS)."""
    if fmt == "json":
        from annostream.formats.annostream_json import JsonWriter

        return JsonWriter(sink, ctx, blobs)
    if fmt == "coco":
        from annostream.formats.coco import CocoWriter

        return CocoWriter(sink, ctx, blobs)
    if fmt == "diffgram":
        from annostream.formats.diffgram_json import DiffgramWriter

        return DiffgramWriter(sink, ctx, blobs)
    if fmt in ("yolo", "yolo-seg"):
        from annostream.formats.yolo import YoloWriter

        return YoloWriter(sink, ctx, blobs, segment=fmt == "yolo-seg")
    raise InvalidInput(
        f"format: unsupported export format '{fmt}' (use one of {', '.join(FORMATS)})", {"field": "format"}
    )


def read_record_image(rec: dict[str, Any]) -> bytes | None:
    """The image bytes of a record (its ``data``, else its file), None when it names a blob."""
    if rec.get("data") is not None:
        return bytes(rec["data"])
    if not rec.get("image_path"):
        return None
    try:
        return Path(rec["image_path"]).read_bytes()
    except OSError as exc:
        raise record_error(
            rec["where"], f"image file cannot be read ({exc.strerror or exc}: {rec['image_path']})"
        ) from exc


IMPORT_FORMATS = ("coco", "json", "diffgram", "yolo", "images")


def read_source(
    fmt: str,
    path: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    shapes: str = "auto",
    labels_from_folders: bool = False,
) -> ImportSource:
    """The reader for ``fmt``: ``coco`` (``images``: its images folder; ``shapes``), ``json``
    (annostream JSON, or Diffgram JSON by its keys), ``diffgram``, ``yolo``, ``images``."""
    if fmt == "coco":
        from annostream.formats.coco import read_coco

        return read_coco(path, images if images is not None else Path(path).parent, shapes)
    if fmt == "json":
        from annostream.formats.annostream_json import read_json_export

        return read_json_export(Path(path))
    if fmt == "diffgram":
        from annostream.formats.diffgram_json import read_diffgram

        return read_diffgram(Path(path))
    if fmt == "yolo":
        from annostream.formats.yolo import read_yolo

        return read_yolo(Path(path))
    if fmt == "images":
        from annostream.formats.images import read_images

        return read_images(Path(path), labels_from_folders)
    raise InvalidInput(
        f"format: unsupported import format '{fmt}' (use one of {', '.join(IMPORT_FORMATS)})",
        {"field": "format"},
    )
