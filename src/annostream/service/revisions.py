"""Named tags on revisions, and explicit garbage collection of old revisions.

A tag is a name for a revision (``v1`` -> 42) so that a training script can say what it
read. Tags are immutable: re-pointing a name would silently change what ``as_of("v1")``
means, so a second tag of the same name is a conflict (delete it first).

Garbage collection is never automatic. ``collect_garbage`` physically deletes versioned
rows whose ``deleted_rev`` is at or before a cutoff revision, except rows that some tagged
revision still sees; revisions that can no longer be read are dropped from the
``revisions`` table so that reading them fails loudly instead of returning a wrong answer.
Blobs that no file row refers to any more are removed last, and so are orphans: objects in
the blob store that no row names (bytes an upload killed before its commit wrote) once they
are older than the cutoff age (``ORPHAN_GRACE`` with a revision cutoff), so that an upload
in progress, whose row is not committed yet, never loses its bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
)

from annostream.errors import Conflict, InvalidInput, NotFound
from annostream.service.projects import ProjectRef
from annostream.service.staging import expire_staged, staged_cutoff
from annostream.store import Store
from annostream.store.tables import (
    attribute_groups,
    attribute_options,
    blobs,
    dataset_counts,
    dataset_files,
    datasets,
    file_attribute_values,
    file_label_counts,
    files,
    instances,
    labels,
    projects,
    revision_tags,
    revisions,
    staged_blobs,
)
from annostream.store.versioning import head_revision

_TAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# --- tags ------------------------------------------------------------------------------


def _tag_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "rev": row.rev,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def create_tag(store: Store, ref: ProjectRef, name: str, rev: int | None = None) -> dict[str, Any]:
    """Name revision ``rev`` (the head when None). A name cannot start with a digit, so
    ``as_of`` can tell a tag from a revision number."""
    if not _TAG_NAME.match(name):
        raise InvalidInput(
            f"name: '{name}' is not a tag name (a letter or _, then letters, digits, _ . -)",
            {"field": "name"},
        )
    with store.engine.begin() as conn:
        head = head_revision(conn, ref.id)
        rev = head if rev is None else rev
        if not 0 <= rev <= head:
            raise NotFound(f"revision {rev} does not exist (head is {head})", {"rev": rev})
        if not revision_readable(conn, ref.id, rev):
            raise NotFound(f"revision {rev} was garbage collected", {"rev": rev})
        taken = conn.execute(
            select(revision_tags.c.rev).where(
                revision_tags.c.project_id == ref.id, revision_tags.c.name == name
            )
        ).first()
        if taken is not None:
            raise Conflict(
                f"tag '{name}' already points at revision {taken.rev}", {"tag": name, "rev": taken.rev}
            )
        conn.execute(insert(revision_tags).values(project_id=ref.id, name=name, rev=rev))
        row = conn.execute(
            select(revision_tags).where(revision_tags.c.project_id == ref.id, revision_tags.c.name == name)
        ).one()
    return _tag_dict(row)


def list_tags(store: Store, ref: ProjectRef) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(revision_tags)
            .where(revision_tags.c.project_id == ref.id)
            .order_by(revision_tags.c.rev, revision_tags.c.name)
        ).all()
    return [_tag_dict(r) for r in rows]


def get_tag(store: Store, ref: ProjectRef, name: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(revision_tags).where(revision_tags.c.project_id == ref.id, revision_tags.c.name == name)
        ).first()
    if row is None:
        raise NotFound(f"tag '{name}' not found in project '{ref.string_id}'", {"tag": name})
    return _tag_dict(row)


def delete_tag(store: Store, ref: ProjectRef, name: str) -> dict[str, Any]:
    """Remove a tag (what it pointed at becomes collectable by a later gc)."""
    found = get_tag(store, ref, name)
    with store.engine.begin() as conn:
        conn.execute(
            delete(revision_tags).where(revision_tags.c.project_id == ref.id, revision_tags.c.name == name)
        )
    return found


def resolve_as_of(store: Store, ref: ProjectRef, as_of: int | str | None) -> int | None:
    """A revision number from a number, a digit string or a tag name (None stays None)."""
    if as_of is None or isinstance(as_of, int):
        return as_of
    if as_of.isdigit():
        return int(as_of)
    return int(get_tag(store, ref, as_of)["rev"])


def revision_readable(conn: Connection, project_id: int, rev: int) -> bool:
    """Whether reading ``as_of=rev`` still gives the true state (not garbage collected).

    Revision 0 (the empty project) is always readable; any other needs its commit record,
    which gc removes exactly when it removes rows that revision needed.
    """
    if rev == 0:
        return True
    return (
        conn.execute(
            select(revisions.c.rev).where(revisions.c.project_id == project_id, revisions.c.rev == rev)
        ).first()
        is not None
    )


# --- garbage collection ----------------------------------------------------------------


@dataclass
class GcReport:
    """What one gc run removed (or, with ``dry_run``, would remove)."""

    cutoffs: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    revisions: int = 0
    blobs: int = 0
    orphans: int = 0
    staged: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoffs": self.cutoffs,
            "rows": self.rows,
            "revisions": self.revisions,
            "blobs": self.blobs,
            "orphans": self.orphans,
            "staged": self.staged,
            "dry_run": self.dry_run,
        }


STAGED_GRACE = timedelta(hours=1)


def parse_older_than(text: str) -> int | timedelta:
    """``"42"`` -> revision 42; ``"7d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"90s"`` -> a duration."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    found = _DURATION.match(text)
    if not found:
        raise InvalidInput(
            f"older-than: '{text}' is neither a revision nor a duration like 7d, 12h, 30m",
            {"field": "older_than"},
        )
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def revision_before(conn: Connection, project_id: int, age: timedelta) -> int:
    """The newest revision committed at least ``age`` ago (0 when none is that old)."""
    cutoff = datetime.now(UTC) - age
    if conn.dialect.name == "sqlite":
        cutoff = cutoff.replace(tzinfo=None)
    found = conn.execute(
        select(func.max(revisions.c.rev)).where(
            revisions.c.project_id == project_id, revisions.c.created_at <= cutoff
        )
    ).scalar()
    return int(found or 0)


def _untagged(table: Table, project_id: Any) -> ColumnElement[bool]:
    """No tag of the project sees the row (created_rev <= tag.rev < deleted_rev)."""
    return ~exists().where(
        revision_tags.c.project_id == project_id,
        revision_tags.c.rev >= table.c.created_rev,
        revision_tags.c.rev < table.c.deleted_rev,
    )


def _collectable(table: Table, project_id: Any, cutoff: int) -> ColumnElement[bool]:
    return and_(table.c.deleted_rev.is_not(None), table.c.deleted_rev <= cutoff, _untagged(table, project_id))


def _gc_project(conn: Connection, project_id: int, cutoff: int, dry_run: bool, counts: dict[str, int]) -> int:
    """Delete the collectable rows of one project, children before parents."""
    in_project_files = select(files.c.id).where(files.c.project_id == project_id)
    in_project_datasets = select(datasets.c.id).where(datasets.c.project_id == project_id)
    in_project_groups = select(attribute_groups.c.id).where(attribute_groups.c.project_id == project_id)
    pid = literal(project_id)

    def step(
        table: Table, scope: ColumnElement[bool], *children: Column[Any]
    ) -> tuple[Table, ColumnElement[bool]]:
        """Rows of ``table`` in the project that gc may take: collectable, and no child row names them."""
        unused = [~exists().where(child == table.c.id) for child in children]
        return table, and_(scope, _collectable(table, pid, cutoff), *unused)

    plan = [
        step(instances, instances.c.project_id == project_id),
        step(file_label_counts, file_label_counts.c.file_id.in_(in_project_files)),
        step(file_attribute_values, file_attribute_values.c.file_id.in_(in_project_files)),
        step(dataset_files, dataset_files.c.dataset_id.in_(in_project_datasets)),
        step(dataset_counts, dataset_counts.c.dataset_id.in_(in_project_datasets)),
        step(attribute_options, attribute_options.c.group_id.in_(in_project_groups)),
        step(
            files,
            files.c.project_id == project_id,
            instances.c.file_id,
            file_label_counts.c.file_id,
            file_attribute_values.c.file_id,
            dataset_files.c.file_id,
        ),
        step(
            labels,
            labels.c.project_id == project_id,
            instances.c.label_id,
            file_label_counts.c.label_id,
            dataset_counts.c.label_id,
        ),
        step(
            datasets,
            datasets.c.project_id == project_id,
            dataset_files.c.dataset_id,
            dataset_counts.c.dataset_id,
        ),
        step(attribute_groups, attribute_groups.c.project_id == project_id, attribute_options.c.group_id),
    ]
    for table, where in plan:
        if dry_run:
            n = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
        else:
            n = conn.execute(delete(table).where(where)).rowcount
        counts[table.name] = counts.get(table.name, 0) + int(n)
    tagged = select(revision_tags.c.rev).where(revision_tags.c.project_id == project_id)
    lost = and_(
        revisions.c.project_id == project_id, revisions.c.rev < cutoff, revisions.c.rev.not_in(tagged)
    )
    if dry_run:
        return int(conn.execute(select(func.count()).select_from(revisions).where(lost)).scalar_one())
    return int(conn.execute(delete(revisions).where(lost)).rowcount)


def collect_garbage(
    store: Store,
    older_than: int | timedelta,
    *,
    project: str | None = None,
    keep_tags: bool = False,
    dry_run: bool = False,
    staged_grace: timedelta = STAGED_GRACE,
) -> GcReport:
    """Physically delete history older than a cutoff; see the module docstring.

    ``older_than`` is a revision (then ``project`` is required, revisions being per project)
    or an age, turned per project into the newest revision at least that old. Revisions a
    tag points at stay readable; with ``keep_tags=False`` gc refuses to run while a tag
    would otherwise lose rows, because it never removes what a tag points at. Blobs staged
    for an import that never committed (abandoned, or killed) are collected once they are
    older than ``staged_grace``; younger ones may belong to an import still in flight.
    """
    if isinstance(older_than, int) and project is None:
        raise InvalidInput(
            "older-than: a revision number needs --project (revisions are per "
            "project); give a duration like 7d to collect every project",
            {"field": "older_than"},
        )
    report = GcReport(dry_run=dry_run)
    with store.engine.begin() as conn:
        query = select(projects.c.id, projects.c.string_id, projects.c.head_rev)
        if project is not None:
            query = query.where(projects.c.string_id == project)
        targets = conn.execute(query.order_by(projects.c.id)).all()
        if project is not None and not targets:
            raise NotFound(f"project '{project}' not found", {"project": project})
        for p in targets:
            cutoff = (
                min(older_than, p.head_rev)
                if isinstance(older_than, int)
                else revision_before(conn, p.id, older_than)
            )
            if not keep_tags:
                tagged = (
                    conn.execute(
                        select(revision_tags.c.name).where(
                            revision_tags.c.project_id == p.id, revision_tags.c.rev < cutoff
                        )
                    )
                    .scalars()
                    .all()
                )
                if tagged:
                    raise Conflict(
                        f"project '{p.string_id}' has tags older than the cutoff "
                        f"({', '.join(tagged)}): gc never removes what a tag points "
                        "at; pass --keep-tags or delete those tags first",
                        {"tags": list(tagged)},
                    )
            report.cutoffs[p.string_id] = cutoff
            report.revisions += _gc_project(conn, p.id, cutoff, dry_run, report.rows)
        report.staged = expire_staged(conn, staged_grace, dry_run)
        orphans = select(blobs.c.sha256).where(
            ~exists().where(files.c.blob_sha256 == blobs.c.sha256),
            ~exists().where(
                staged_blobs.c.sha256 == blobs.c.sha256,
                staged_blobs.c.created_at > staged_cutoff(conn, staged_grace),
            ),
        )
        gone = conn.execute(orphans).scalars().all()
        report.blobs = len(gone)
        if not dry_run:
            for start in range(0, len(gone), 500):
                conn.execute(delete(blobs).where(blobs.c.sha256.in_(gone[start : start + 500])))
    if not dry_run:
        for sha in gone:
            store.blobs.delete(sha)
    report.orphans = _collect_orphans(
        store, older_than if isinstance(older_than, timedelta) else ORPHAN_GRACE, dry_run
    )
    return report


ORPHAN_GRACE = timedelta(hours=1)


def _collect_orphans(store: Store, grace: timedelta, dry_run: bool) -> int:
    """Delete blob objects no row names, and half-written temporaries, older than ``grace``."""
    import time

    cutoff = time.time() - grace.total_seconds()
    aged = [sha for sha, mtime in store.blobs.scan() if mtime <= cutoff]
    with store.engine.connect() as conn:
        named: set[str] = set()
        for start in range(0, len(aged), 500):
            chunk = aged[start : start + 500]
            named.update(conn.execute(select(blobs.c.sha256).where(blobs.c.sha256.in_(chunk))).scalars())
    orphans = [sha for sha in aged if sha not in named]
    temporaries = getattr(store.blobs, "temporaries", None)
    stale = [p for p in (temporaries() if temporaries else []) if p.stat().st_mtime <= cutoff]
    if not dry_run:
        for sha in orphans:
            store.blobs.delete(sha)
        for path in stale:
            path.unlink(missing_ok=True)
    return len(orphans) + len(stale)
