"""Calling a declared operation: the policy, then the service function. Both transports
end here: the server after its FastAPI dependency has run ``authorize``, the embedded
transport through ``call``, so a key obeys the same roles in-process as over the wire.

Policy, stated once: an operation with a ``role`` needs that role on the project in its
path (``projects.authorize``: superusers hold admin, a key its own role on its own project,
anyone may read a public project); an operation without one is server-level and its service
function decides from the principal (listings are filtered to what the caller may read),
except that one declared ``superuser`` (creating a project) is refused here to anyone but a
server admin, before its body is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annostream.errors import Forbidden, Unauthorized
from annostream.operations import OPERATIONS, Op
from annostream.service import handlers  # noqa: F401  (registers the implementations)
from annostream.service.projects import (
    ANONYMOUS,
    Principal,
    ProjectRef,
    Writer,
    at_once,
    authenticate,
    authorize_key,
)
from annostream.service.projects import authorize as authorize_project
from annostream.service.registry import ASYNC_IMPLEMENTATIONS, IMPLEMENTATIONS
from annostream.store import Store

Subject = ProjectRef | Principal

missing = sorted(set(OPERATIONS) - set(IMPLEMENTATIONS))
if missing:
    raise RuntimeError(f"declared operations without a service implementation: {missing}")


def authorize(store: Store, who: Principal, op: Op, path_args: Mapping[str, Any]) -> Subject:
    """What ``op`` runs as: the project granted to ``who`` at ``op.role``, or ``who`` itself
    (a server admin, where ``op.superuser`` says only one may call it)."""
    if op.superuser and not who.is_superuser:
        if who.kind == "anonymous":
            raise Unauthorized(f"{op.name} needs a server admin key")
        raise Forbidden(f"{op.name}: only a server admin key may call it")
    if op.role is None:
        return who
    return authorize_project(store, who, str(path_args["project"]), op.role)


def authorize_credentials(
    store: Store,
    credentials: tuple[str, str] | None,
    op: Op,
    path_args: Mapping[str, Any],
    writer: Writer = at_once,
) -> Subject:
    """``authorize`` for credentials as presented (None: anonymous). With a key and a project,
    the key and the project are read in one statement (``projects.authorize_key``); the key's
    use is recorded through ``writer``."""
    if credentials is None:
        return authorize(store, ANONYMOUS, op, path_args)
    if op.role is None or op.superuser:
        return authorize(store, authenticate(store, *credentials, writer), op, path_args)
    return authorize_key(store, *credentials, str(path_args["project"]), op.role, writer)


def run(store: Store, subject: Subject, op: Op, args: dict[str, Any]) -> Any:
    """The service function of ``op`` on validated ``args`` (``project`` is in ``subject``)."""
    kwargs = {k: v for k, v in args.items() if k != "project"}
    return IMPLEMENTATIONS[op.name](store, subject, **kwargs)


def runs_on_loop(op: Op) -> bool:
    """Whether ``op`` has an async implementation (``run_async`` awaits it on the event loop)."""
    return op.name in ASYNC_IMPLEMENTATIONS


async def run_async(store: Store, subject: Subject, op: Op, args: dict[str, Any]) -> Any:
    """``run`` for the event loop: the async variant where there is one, else a worker thread."""
    import anyio.to_thread

    kwargs = {k: v for k, v in args.items() if k != "project"}
    if op.name in ASYNC_IMPLEMENTATIONS:
        return await ASYNC_IMPLEMENTATIONS[op.name](store, subject, **kwargs)
    return await anyio.to_thread.run_sync(lambda: IMPLEMENTATIONS[op.name](store, subject, **kwargs))


def call(store: Store, who: Principal, name: str, args: dict[str, Any]) -> Any:
    """Validate, authorise and run operation ``name`` in this process (the embedded side)."""
    op = OPERATIONS[name]
    subject = authorize(store, who, op, args)  # first, as on the server: no input is looked at before
    bound = op.bind(args)
    if op.body != "none":
        bound["body"] = op.bind_body(args.get("body"))
    return run(store, subject, op, bound)
