"""Projects, API keys, and who may do what.

Secrets are 32 random bytes, shown once and stored as their sha256: with that much entropy
a slow password hash buys nothing, and a fast one keeps every request's auth check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, bindparam, func, insert, or_, select, update

from annostream.errors import Conflict, Forbidden, NotFound, Unauthorized
from annostream.schema import ProjectCreate, Role
from annostream.store import Store
from annostream.store.db import inserted_id, reading
from annostream.store.tables import api_keys, dataset_files, datasets, projects

ROLE_RANK: dict[str, int] = {"viewer": 1, "editor": 2, "admin": 3}
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the local owner (embedded), a server admin, a project key, or nobody."""

    kind: Literal["local", "server_admin", "key", "anonymous"]
    project_id: int | None = None
    role: Role | None = None
    client_id: str | None = None

    @property
    def is_superuser(self) -> bool:
        return self.kind in ("local", "server_admin")


LOCAL = Principal(kind="local")
ANONYMOUS = Principal(kind="anonymous")


@dataclass(frozen=True)
class ProjectRef:
    """A project the caller has been authorised on, with the role that was granted, and the
    project's head revision read with the grant (None where it was not): a read at head right
    after the grant (``items:batch``) needs no statement of its own to learn it."""

    id: int
    string_id: str
    name: str
    is_public: bool
    role: Role
    head_rev: int | None = field(default=None, compare=False)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_key(store: Store, project_id: int | None, role: Role) -> dict[str, Any]:
    client_id = "as_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with store.engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                project_id=project_id, client_id=client_id, secret_hash=_hash(secret), role=role
            )
        )
    return {"client_id": client_id, "client_secret": secret, "role": role}


def create_server_admin_key(store: Store) -> dict[str, Any]:
    """A key that may create projects. Only the store's owner (CLI, embedded) can mint one."""
    return _new_key(store, None, "admin")


def has_server_admin_key(store: Store) -> bool:
    """Whether the store holds a live server admin key (``serve --init`` mints one only if not)."""
    with store.engine.connect() as conn:
        return (
            conn.execute(
                select(api_keys.c.id)
                .where(api_keys.c.project_id.is_(None), api_keys.c.revoked_at.is_(None))
                .limit(1)
            ).first()
            is not None
        )


Writer = Callable[[Callable[[], None]], None]


def at_once(write: Callable[[], None]) -> None:
    """A ``Writer`` that writes before the caller goes on."""
    write()


def _touch(store: Store, key_id: int, last: datetime | None, writer: Writer = at_once) -> None:
    """Record a key's use, at most once a minute (a write per request would serialise reads),
    through ``writer`` (the server's event loop hands it to a worker thread: a write may wait
    for another process's transaction)."""
    now = datetime.now(UTC)
    if last is not None and (last if last.tzinfo else last.replace(tzinfo=UTC)) > now - TOUCH_EVERY:
        return

    def write() -> None:
        with store.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))

    writer(write)


def _principal_of(row: Any, client_id: str, secret: str) -> Principal:
    """The principal of a live key's row (``_KEY_COLUMNS`` by name); 401 unless ``secret`` matches."""
    if row is None or row.key_id is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthorized("invalid API key")
    if row.key_project_id is None:
        return Principal(kind="server_admin", client_id=client_id, role="admin")
    return Principal(kind="key", project_id=row.key_project_id, role=row.role, client_id=client_id)


_KEY_COLUMNS = (
    api_keys.c.id.label("key_id"),
    api_keys.c.secret_hash,
    api_keys.c.project_id.label("key_project_id"),
    api_keys.c.role,
    api_keys.c.last_used_at,
)
_LIVE_KEY = select(*_KEY_COLUMNS).where(
    api_keys.c.client_id == bindparam("client_id"), api_keys.c.revoked_at.is_(None)
)
_PROJECT_COLUMNS = (
    projects.c.id,
    projects.c.string_id,
    projects.c.name,
    projects.c.is_public,
    projects.c.head_rev,
)
# A project and the caller's live key in one statement (the key columns are NULL when the key
# is unknown or revoked): what every authenticated request on a project reads first.
_PROJECT_WITH_KEY = (
    select(*_PROJECT_COLUMNS, *_KEY_COLUMNS)
    .select_from(
        projects.outerjoin(
            api_keys,
            and_(api_keys.c.client_id == bindparam("client_id"), api_keys.c.revoked_at.is_(None)),
        )
    )
    .where(projects.c.string_id == bindparam("project"))
)


def authenticate(store: Store, client_id: str, secret: str, writer: Writer = at_once) -> Principal:
    """Turn presented credentials into a principal, or raise 401 (revoked keys included); the
    key's use is recorded through ``writer``."""
    if "\x00" in client_id:  # no key holds one (and PostgreSQL cannot even compare it)
        raise Unauthorized("invalid API key")
    with store.engine.connect() as conn:
        row = conn.execute(_LIVE_KEY, {"client_id": client_id}).first()
    who = _principal_of(row, client_id, secret)
    assert row is not None  # _principal_of refused a missing key
    _touch(store, row.key_id, row.last_used_at, writer)
    return who


def authorize(store: Store, principal: Principal, project_string_id: str, need: Role) -> ProjectRef:
    """The project, if ``principal`` holds at least role ``need`` on it; else 401/403/404."""
    if "\x00" in project_string_id:  # no project is named so (and PostgreSQL cannot compare it)
        raise NotFound("no project has NUL in its name", {"project": project_string_id})
    with store.engine.connect() as conn:
        row = conn.execute(select(*_PROJECT_COLUMNS).where(projects.c.string_id == project_string_id)).first()
    return _grant(principal, row, project_string_id, need)


def authorize_key(
    store: Store, client_id: str, secret: str, project_string_id: str, need: Role, writer: Writer = at_once
) -> ProjectRef:
    """``authorize(authenticate(...), ...)`` in one statement: the project joined with the live
    key (a key revoked by any process is refused by the very next request, as there is no cache).
    Where the project is missing, the key alone decides between 401 and 404, as before."""
    if "\x00" in client_id or "\x00" in project_string_id:  # refused as each check alone refuses it
        return authorize(store, authenticate(store, client_id, secret, writer), project_string_id, need)
    with reading(store.engine) as conn:
        row = conn.execute(_PROJECT_WITH_KEY, {"client_id": client_id, "project": project_string_id}).first()
    if row is None:
        return authorize(store, authenticate(store, client_id, secret, writer), project_string_id, need)
    who = _principal_of(row, client_id, secret)
    _touch(store, row.key_id, row.last_used_at, writer)
    return _grant(who, row, project_string_id, need)


def _grant(principal: Principal, row: Any, project_string_id: str, need: Role) -> ProjectRef:
    """The policy, on the project's row (None when there is no such project)."""
    if row is None:
        raise NotFound(f"project '{project_string_id}' not found", {"project": project_string_id})
    role: Role
    if principal.is_superuser:
        role = "admin"
    elif principal.kind == "key" and principal.project_id == row.id:
        role = principal.role or "viewer"
    elif principal.kind == "key" and not (row.is_public and need == "viewer"):
        # A key of another project reads public projects as anyone may, and nothing more.
        raise Forbidden(f"this key does not grant access to project '{project_string_id}'")
    elif row.is_public and need == "viewer":
        role = "viewer"
    else:
        raise Unauthorized(f"project '{project_string_id}' needs an API key")
    if ROLE_RANK[role] < ROLE_RANK[need]:
        raise Forbidden(f"role '{role}' cannot do this; it needs '{need}'")
    return ProjectRef(row.id, row.string_id, row.name, row.is_public, role, row.head_rev)


def create_project(store: Store, principal: Principal, spec: ProjectCreate) -> dict[str, Any]:
    """Create a project and return it with its first admin key (shown only now)."""
    if principal.kind == "anonymous":
        raise Unauthorized("creating a project needs a server admin key")
    if not principal.is_superuser:
        raise Forbidden("only a server admin key can create projects")
    with store.engine.begin() as conn:
        exists = conn.execute(select(projects.c.id).where(projects.c.string_id == spec.string_id)).first()
        if exists:
            raise Conflict(f"project '{spec.string_id}' already exists")
        project_id = inserted_id(
            conn.execute(
                insert(projects).values(
                    string_id=spec.string_id,
                    name=spec.name or spec.string_id,
                    is_public=spec.is_public,
                    head_rev=0,
                    counts_from=0,  # its writes keep dataset_counts from the start
                )
            )
        )
    key = _new_key(store, project_id, "admin")
    return {
        "string_id": spec.string_id,
        "name": spec.name or spec.string_id,
        "is_public": spec.is_public,
        "admin_key": key,
    }


def create_key(store: Store, ref: ProjectRef, role: Role) -> dict[str, Any]:
    """A new key on a project the caller was authorised on as admin (the declaration says so)."""
    return _new_key(store, ref.id, role)


def _keys_of(ref: ProjectRef | None) -> Any:
    return api_keys.c.project_id.is_(None) if ref is None else api_keys.c.project_id == ref.id


def list_keys(store: Store, ref: ProjectRef | None) -> list[dict[str, Any]]:
    """The keys of a project the caller was authorised on as admin, or (``None``, for the
    store's owner only) the server admin keys: ids, roles, creation, last use and revocation;
    never a secret nor its hash."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(api_keys).where(_keys_of(ref)).order_by(api_keys.c.id)).all()
    return [
        {
            "client_id": r.client_id,
            "role": r.role,
            "created_at": _iso(r.created_at),
            "last_used_at": _iso(r.last_used_at),
            "revoked_at": _iso(r.revoked_at),
        }
        for r in rows
    ]


def revoke_key(store: Store, ref: ProjectRef | None, client_id: str) -> dict[str, Any]:
    """Revoke a key of the project (``None``: a server admin key); every later request with
    it is refused with 401. Revoking twice keeps the first time."""
    with store.engine.begin() as conn:
        row = conn.execute(select(api_keys).where(_keys_of(ref), api_keys.c.client_id == client_id)).first()
        if row is None:
            where = f"project '{ref.string_id}'" if ref else "this server"
            raise NotFound(f"no key '{client_id[:64]}' on {where}", {"client_id": client_id[:64]})
        revoked = row.revoked_at or datetime.now(UTC)
        conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=revoked))
    return {"client_id": client_id, "role": row.role, "revoked_at": _iso(revoked)}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def list_projects(store: Store, principal: Principal) -> list[dict[str, Any]]:
    """Projects the caller can read, with dataset and file counts."""
    n_datasets = (
        select(func.count())
        .where(datasets.c.project_id == projects.c.id, datasets.c.deleted_rev.is_(None))
        .scalar_subquery()
    )
    n_files = (
        select(func.count(func.distinct(dataset_files.c.file_id)))
        .select_from(dataset_files.join(datasets, datasets.c.id == dataset_files.c.dataset_id))
        .where(
            datasets.c.project_id == projects.c.id,
            dataset_files.c.deleted_rev.is_(None),
            datasets.c.deleted_rev.is_(None),
        )
        .scalar_subquery()
    )
    query = select(projects, n_datasets.label("datasets"), n_files.label("files")).order_by(
        projects.c.string_id
    )
    if principal.kind == "key":
        query = query.where(or_(projects.c.id == principal.project_id, projects.c.is_public.is_(True)))
    elif principal.kind == "anonymous":
        query = query.where(projects.c.is_public.is_(True))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "string_id": r.string_id,
            "name": r.name,
            "is_public": r.is_public,
            "revision": r.head_rev,
            "datasets": r.datasets,
            "files": r.files,
        }
        for r in rows
    ]
