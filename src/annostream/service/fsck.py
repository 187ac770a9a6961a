"""Checking a store: its rows against its blobs, and the database against itself.

``check_store`` never writes. A store is *clean* when the database passes its own integrity
check, every blob the ``blobs`` table names is present in the blob store with the recorded
size and bytes that hash to its name, every file row points at a blob row, and the live
per-dataset counts agree with the live derived rows they aggregate. Objects in
the blob store that no row names (*orphans*: bytes a killed upload wrote before its
transaction committed) and half-written temporaries are reported but do not make a store
unclean: they hold nothing anyone can read, and ``gc`` collects them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DatabaseError

from annostream.service.dataset_counts import count_problems
from annostream.store import Store
from annostream.store.tables import blobs, files

_BATCH = 256


@dataclass
class FsckReport:
    """What ``check_store`` found; ``clean`` says whether anything readable is damaged."""

    database: list[str] = field(default_factory=list)
    blobs_checked: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    dangling_files: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.database or self.missing or self.damaged or self.dangling_files)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def _database_problems(conn: Connection) -> list[str]:
    """The database's own check: SQLite's integrity and foreign key checks; a PostgreSQL
    server checks its pages itself, so there only the catalogue is read."""
    if conn.dialect.name == "sqlite":
        found = [str(row[0]) for row in conn.execute(text("PRAGMA integrity_check"))]
        problems = [] if found == ["ok"] else [f"integrity_check: {line}" for line in found]
        broken = conn.execute(text("PRAGMA foreign_key_check"))
        problems += [f"foreign_key_check: {tuple(row)}" for row in broken]
        return problems
    conn.execute(text("SELECT count(*) FROM pg_catalog.pg_class"))
    return []


def _batches(conn: Connection) -> Iterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    for sha, size in conn.execute(select(blobs.c.sha256, blobs.c.size).order_by(blobs.c.sha256)):
        batch.append((sha, int(size)))
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_blob(store: Store, sha: str, size: int, verify: bool) -> str | None:
    """None when the blob is fine, else "missing" or "damaged"."""
    try:
        data = store.blobs.get(sha)
    except (FileNotFoundError, KeyError):
        return "missing"
    except ValueError:  # the row's name is not a sha256: the row is damaged
        return "damaged"
    if len(data) != size or (verify and hashlib.sha256(data).hexdigest() != sha):
        return "damaged"
    return None


def check_store(store: Store, *, verify_hashes: bool = True) -> FsckReport:
    """Check ``store`` (see the module docstring); ``verify_hashes=False`` only compares sizes."""
    from concurrent.futures import ThreadPoolExecutor

    report = FsckReport()
    known: set[str] = set()
    with store.engine.connect() as conn:
        report.database = _database_problems(conn)
        try:
            report.database += count_problems(conn)
            dangling = (
                select(files.c.id)
                .where(files.c.blob_sha256.is_not(None), files.c.blob_sha256.not_in(select(blobs.c.sha256)))
                .order_by(files.c.id)
            )
            report.dangling_files = [int(i) for i in conn.execute(dangling).scalars()]
            batches = list(_batches(conn))
        except DatabaseError as exc:
            report.database.append(f"reading rows: {str(exc.orig).splitlines()[0]}")
            batches = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for batch in batches:
            verdicts = pool.map(lambda b: _check_blob(store, b[0], b[1], verify_hashes), batch)
            for (sha, _), verdict in zip(batch, verdicts, strict=True):
                known.add(sha)
                report.blobs_checked += 1
                if verdict == "missing":
                    report.missing.append(sha)
                elif verdict == "damaged":
                    report.damaged.append(sha)
    report.orphans = sorted(sha for sha, _ in store.blobs.scan() if sha not in known)
    temporaries = getattr(store.blobs, "temporaries", None)
    report.temporaries = [str(p) for p in temporaries()] if temporaries is not None else []
    return report
