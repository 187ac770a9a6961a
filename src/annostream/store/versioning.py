"""Revisions: every write is a commit with a project-wide increasing number.

A snapshot is a number, not a copy: ``visible(table, rev)`` selects the rows alive after
commit ``rev``; ``rev=None`` means the head, which needs no revision arithmetic at all.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, Table, and_, insert, or_, select, update

from annostream.store.tables import projects, revisions


def visible(table: Table, rev: int | None) -> ColumnElement[bool]:
    """Rows of a versioned table that are alive at ``rev`` (head when None)."""
    if rev is None:
        return table.c.deleted_rev.is_(None)
    return and_(
        table.c.created_rev <= rev,
        or_(table.c.deleted_rev.is_(None), table.c.deleted_rev > rev),
    )


def begin_commit(conn: Connection, project_id: int, message: str) -> int:
    """Allocate the next revision of a project inside the caller's transaction.

    The UPDATE takes the project's row lock, so concurrent writers to one project are
    serialised and revision numbers never repeat or go backwards.
    """
    rev = conn.execute(
        update(projects)
        .where(projects.c.id == project_id)
        .values(head_rev=projects.c.head_rev + 1)
        .returning(projects.c.head_rev)
    ).scalar_one()
    conn.execute(insert(revisions).values(project_id=project_id, rev=rev, message=message[:200]))
    return rev


def head_revision(conn: Connection, project_id: int) -> int:
    return conn.execute(select(projects.c.head_rev).where(projects.c.id == project_id)).scalar_one()


def end_rows(conn: Connection, table: Table, where: ColumnElement[bool], rev: int) -> int:
    """Mark the live rows matching ``where`` as deleted at ``rev``; return how many."""
    result = conn.execute(
        update(table).where(and_(where, table.c.deleted_rev.is_(None))).values(deleted_rev=rev)
    )
    return result.rowcount
