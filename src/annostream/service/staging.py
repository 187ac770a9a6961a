"""Staged blobs: image bytes stored for a project ahead of the commit that names them.

Every image that enters the store is staged first, whatever the transport (an HTTP client
stages with ``PUT .../blobs``, a local import or upload calls ``stage_blobs`` itself):

- the bytes are written first, then the ``blobs`` and ``staged_blobs`` rows are committed,
  so every blob row has its bytes (what ``fsck`` checks); a crash (SIGKILL) between the two
  leaves bytes no row names, which gc collects as orphans;
- gc collects staged blobs that no file took up once they are older than its grace;
- the commit that writes files takes the staged rows it used away in its own transaction.

Scoping rule (``resolve_blob``): a record may name by sha256 only a blob that this project
already holds (a file of the project, at any revision, has it) or one staged for this
project. Any other hash is refused with the same 422, whether or not some other project
holds it, so a hash (which travels in ETags, URLs and exports) is never a key to bytes.
"""

from __future__ import annotations

import io
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import Connection, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite

from annostream.errors import InvalidInput, PayloadTooLarge
from annostream.limits import LIMITS
from annostream.service.projects import ProjectRef
from annostream.store import Store
from annostream.store.blobs import sha256_hex
from annostream.store.tables import blobs, files, staged_blobs

SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class StagedBlob:
    """A staged image: its name, size, pixel size, MIME type, and whether its bytes were new."""

    sha256: str
    size: int
    width: int | None
    height: int | None
    content_type: str
    new: bool = False


def probe_image(data: bytes, where: str) -> tuple[int, int, str]:
    """(width, height, MIME type) of an image, or 422 naming ``where``; 413 for an image of
    more than ``LIMITS.max_image_pixels`` pixels (a decompression bomb is refused here, at
    upload and staging, before anything decodes it)."""
    limit = LIMITS.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
                width, height = img.size
                mime = Image.MIME.get(img.format or "", "application/octet-stream")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            f"{where}: image has more than {limit} pixels", {"field": where, "limit": limit}
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{where}: not a readable image ({exc})", {"field": where}) from exc
    if width * height > limit:
        raise PayloadTooLarge(
            f"{where}: image of {width}x{height} has more than {limit} pixels",
            {"field": where, "limit": limit},
        )
    return width, height, mime


def check_sha256(value: Any, field: str) -> str:
    """``value`` as a sha256 name (64 lowercase hex digits), or 422 naming ``field``."""
    if not isinstance(value, str) or not SHA256.match(value):
        raise InvalidInput(
            f"{field}: not a sha256 (64 lowercase hex digits): {str(value)[:80]!r}", {"field": field}
        )
    return value


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def probe_media(data: bytes, where: str) -> tuple[int | None, int | None, str]:
    """(width, height, MIME type) of an image, else of a video; the image's 422 otherwise."""
    try:
        return probe_image(data, where)
    except InvalidInput as not_image:
        from annostream.service import video

        try:
            info = video.probe_video(data, where)
        except InvalidInput:
            raise not_image from None
        return info.width, info.height, info.content_type


def stage_blobs(
    store: Store,
    ref: ProjectRef,
    payloads: list[tuple[bytes, str]],
    probed: list[tuple[int | None, int | None, str]] | None = None,
) -> list[StagedBlob]:
    """Stage images (bytes, where-for-errors) for ``ref``: bytes written, then rows committed.

    Staging the same bytes again refreshes the row's age and writes nothing new.
    """
    if not payloads:
        return []
    staged = []
    for i, (data, where) in enumerate(payloads):
        width, height, mime = probed[i] if probed is not None else probe_media(data, where)
        staged.append(StagedBlob(sha256_hex(data), len(data), width, height, mime))
    if len(payloads) == 1:
        staged[0].new = store.blobs.put(payloads[0][0])[1]
    else:  # several at once: an object store answers each put after a round trip of its own
        with ThreadPoolExecutor(max_workers=min(8, len(payloads))) as pool:
            written = pool.map(store.blobs.put, [data for data, _ in payloads])
            for blob, (_, new) in zip(staged, written, strict=True):
                blob.new = new
    # A failure from here on leaves bytes no row names: orphans for gc (deleting them could
    # take bytes from under a concurrent stager of the same image).
    with store.engine.begin() as conn:
        insert = _insert(conn)
        for blob in staged:
            conn.execute(
                insert(blobs)
                .values(sha256=blob.sha256, size=blob.size, content_type=blob.content_type)
                .on_conflict_do_nothing()
            )
            conn.execute(
                insert(staged_blobs)
                .values(project_id=ref.id, sha256=blob.sha256, width=blob.width, height=blob.height)
                .on_conflict_do_update(
                    index_elements=["project_id", "sha256"], set_={"created_at": func.now()}
                )
            )
    return staged


def resolve_blob(
    conn: Connection, ref: ProjectRef, sha: Any, field: str
) -> tuple[int | None, int | None, str]:
    """(width, height, MIME type) of a blob ``ref`` may name (the scoping rule above), else 422."""
    sha = check_sha256(sha, field)
    row = conn.execute(
        select(staged_blobs.c.width, staged_blobs.c.height, blobs.c.content_type)
        .join(blobs, blobs.c.sha256 == staged_blobs.c.sha256)
        .where(staged_blobs.c.project_id == ref.id, staged_blobs.c.sha256 == sha)
    ).first()
    if row is None:
        row = conn.execute(
            select(files.c.width, files.c.height, blobs.c.content_type)
            .join(blobs, blobs.c.sha256 == files.c.blob_sha256)
            .where(files.c.project_id == ref.id, files.c.blob_sha256 == sha)
            .limit(1)
        ).first()
    if row is None:
        raise InvalidInput(
            f"{field}: no blob {sha} is staged for or held by project "
            f"'{ref.string_id}' (stage the image first: PUT .../blobs)",
            {"field": field},
        )
    return row.width, row.height, row.content_type


def release_staged(conn: Connection, ref: ProjectRef, shas: list[str]) -> None:
    """Drop ``ref``'s staged rows of ``shas`` (now held by files written in this transaction)."""
    for start in range(0, len(shas), 500):
        conn.execute(
            delete(staged_blobs).where(
                staged_blobs.c.project_id == ref.id, staged_blobs.c.sha256.in_(shas[start : start + 500])
            )
        )


def unstage(store: Store, ref: ProjectRef, staged: list[StagedBlob]) -> None:
    """Take back what a failed write staged: the blobs whose bytes it added (others may be
    another import's, so their rows are left for gc), unless something uses them by now."""
    new = sorted({b.sha256 for b in staged if b.new})
    if not new:
        return
    unused: list[str] = []
    with store.engine.begin() as conn:
        release_staged(conn, ref, new)
        for start in range(0, len(new), 500):
            chunk = (
                conn.execute(
                    select(blobs.c.sha256).where(
                        blobs.c.sha256.in_(new[start : start + 500]),
                        ~exists().where(files.c.blob_sha256 == blobs.c.sha256),
                        ~exists().where(staged_blobs.c.sha256 == blobs.c.sha256),
                    )
                )
                .scalars()
                .all()
            )
            if chunk:
                conn.execute(delete(blobs).where(blobs.c.sha256.in_(chunk)))
            unused += chunk
    for sha in unused:
        store.blobs.delete(sha)


def staged_cutoff(conn: Connection, grace: timedelta) -> datetime:
    """The staging time before which a staged row counts as abandoned."""
    cutoff = datetime.now(UTC) - grace
    return cutoff.replace(tzinfo=None) if conn.dialect.name == "sqlite" else cutoff


def expire_staged(conn: Connection, grace: timedelta, dry_run: bool = False) -> int:
    """Drop staged rows older than ``grace`` (abandoned or crashed imports); gc then collects
    the blobs that no file and no younger staged row uses."""
    old = staged_blobs.c.created_at <= staged_cutoff(conn, grace)
    if dry_run:
        return int(conn.execute(select(func.count()).select_from(staged_blobs).where(old)).scalar_one())
    return int(conn.execute(delete(staged_blobs).where(old)).rowcount)
