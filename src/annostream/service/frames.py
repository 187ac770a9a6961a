"""Frames of the videos of a slice, selected by a frame query, as (file id, frame number) pairs.

Invariants: the pairs come in (file id, frame number) order; a frame k of a video exists
when 0 <= k < frame_count; ``query`` selects files (as a slice does) and ``frame_query``
selects frames of those files, both compiled to one SQL statement over a recursive
series of frame numbers (no row per frame is stored).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, literal, select

from annostream.errors import InvalidInput
from annostream.query.compile import Compiler
from annostream.query.parse import parse
from annostream.service.datasets import DatasetRef, get_dataset, membership, query_filter, resolve_revision
from annostream.service.projects import ProjectRef
from annostream.service.registry import implements
from annostream.store import Store
from annostream.store.tables import dataset_files, files
from annostream.store.versioning import visible

MAX_STEP = 1_000_000


def frame_ids(
    store: Store,
    ds: DatasetRef,
    query: str | None = None,
    frame_query: str | None = None,
    as_of: int | None = None,
    step: int = 1,
) -> tuple[np.ndarray, int]:
    """(int64 [N, 2] of (file id, frame number), revision): every ``step``-th frame of each
    video in the slice ``query`` for which ``frame_query`` holds."""
    if not 1 <= step <= MAX_STEP:
        raise InvalidInput(f"step: must be 1..{MAX_STEP}, got {step}", {"field": "step"})
    with store.engine.connect() as conn:
        rev = resolve_revision(conn, ds.project, as_of)
        videos = (
            select(files.c.id)
            .join(dataset_files, dataset_files.c.file_id == files.c.id)
            .where(membership(ds, rev), visible(files, rev), files.c.type == "video")
        )
        condition = query_filter(conn, ds, query, rev)
        if condition is not None:
            videos = videos.where(condition)
        longest = conn.execute(
            select(func.max(files.c.frame_count)).where(files.c.id.in_(videos.scalar_subquery()))
        ).scalar()
        if not longest:
            return np.zeros((0, 2), dtype=np.int64), rev
        series = select(literal(0).label("k")).cte("frame_series", recursive=True)
        series = series.union_all(select(series.c.k + step).where(series.c.k + step < longest))
        stmt = (
            select(files.c.id, series.c.k)
            .join(series, series.c.k < files.c.frame_count)
            .where(files.c.id.in_(videos.scalar_subquery()))
        )
        if frame_query is not None and frame_query.strip():
            stmt = stmt.where(
                Compiler(conn, ds.project.id, rev, frame=series.c.k).compile(parse(frame_query))
            )
        rows = conn.execute(stmt.order_by(files.c.id, series.c.k)).all()
    out = np.array([tuple(r) for r in rows], dtype=np.int64).reshape(-1, 2)
    return out, rev


@implements("frame_ids")
def frame_ids_op(
    store: Store,
    ref: ProjectRef,
    dataset: str,
    query: str | None = None,
    frame_query: str | None = None,
    as_of: int | None = None,
    step: int = 1,
) -> tuple[np.ndarray, int]:
    """The ``frame_ids`` operation: the pairs flattened to one int64 list (an ``ids`` reply)."""
    pairs, rev = frame_ids(store, get_dataset(store, ref, dataset, as_of), query, frame_query, as_of, step)
    return pairs.reshape(-1), rev
