"""Projects, API keys, and who may do what.

Secrets are 32 random bytes, shown once and stored as their sha256: with that much entropy
a slow password hash buys nothing, and a fast one keeps every request's auth check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, insert, select

from annostream.errors import Conflict, Forbidden, NotFound, Unauthorized
from annostream.schema import ProjectCreate, Role
from annostream.store import Store
from annostream.store.db import inserted_id
from annostream.store.tables import api_keys, dataset_files, datasets, projects

ROLE_RANK: dict[str, int] = {"viewer": 1, "editor": 2, "admin": 3}


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
    """A project the caller has been authorised on, with the role that was granted."""

    id: int
    string_id: str
    name: str
    is_public: bool
    role: Role


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


def authenticate(store: Store, client_id: str, secret: str) -> Principal:
    """Turn presented credentials into a principal, or raise 401."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(api_keys).where(api_keys.c.client_id == client_id, api_keys.c.revoked_at.is_(None))
        ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthorized("invalid API key")
    if row.project_id is None:
        return Principal(kind="server_admin", client_id=client_id, role="admin")
    return Principal(kind="key", project_id=row.project_id, role=row.role, client_id=client_id)


def authorize(store: Store, principal: Principal, project_string_id: str, need: Role) -> ProjectRef:
    """The project, if ``principal`` holds at least role ``need`` on it; else 401/403/404."""
    with store.engine.connect() as conn:
        row = conn.execute(select(projects).where(projects.c.string_id == project_string_id)).first()
    if row is None:
        raise NotFound(f"project '{project_string_id}' not found", {"project": project_string_id})
    role: Role
    if principal.is_superuser:
        role = "admin"
    elif principal.kind == "key":
        if principal.project_id != row.id:
            raise Forbidden(f"this key does not grant access to project '{project_string_id}'")
        role = principal.role or "viewer"
    elif row.is_public and need == "viewer":
        role = "viewer"
    else:
        raise Unauthorized(f"project '{project_string_id}' needs an API key")
    if ROLE_RANK[role] < ROLE_RANK[need]:
        raise Forbidden(f"role '{role}' cannot do this; it needs '{need}'")
    return ProjectRef(row.id, row.string_id, row.name, row.is_public, role)


def create_project(store: Store, principal: Principal, spec: ProjectCreate) -> dict[str, Any]:
    """Create a project and return it with its first admin key (shown only now)."""
    if not principal.is_superuser:
        raise Forbidden("only a server admin key can create projects")
    with store.engine.begin() as conn:
        exists = conn.execute(
            select(projects.c.id).where(projects.c.string_id == spec.string_id)
        ).first()
        if exists:
            raise Conflict(f"project '{spec.string_id}' already exists")
        project_id = inserted_id(conn.execute(
            insert(projects).values(
                string_id=spec.string_id,
                name=spec.name or spec.string_id,
                is_public=spec.is_public,
                head_rev=0,
            )
        ))
    key = _new_key(store, project_id, "admin")
    return {"string_id": spec.string_id, "name": spec.name or spec.string_id,
            "is_public": spec.is_public, "admin_key": key}


def create_key(store: Store, ref: ProjectRef, role: Role) -> dict[str, Any]:
    """A new key on a project the caller was authorised on as admin (the declaration says so)."""
    return _new_key(store, ref.id, role)


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
        query = query.where(projects.c.id == principal.project_id)
    elif principal.kind == "anonymous":
        query = query.where(projects.c.is_public.is_(True))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"string_id": r.string_id, "name": r.name, "is_public": r.is_public,
         "revision": r.head_rev, "datasets": r.datasets, "files": r.files}
        for r in rows
    ]
