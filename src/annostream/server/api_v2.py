"""The native wire API, ``/api/v2``, mounted from the table of operations.

Every declared operation (annostream/operations.py) becomes one route made the same way:
1. the policy (``policy(op)``) authenticates the caller and grants the project at the
   declared role, before anything of the request body is read;
2. path and query parameters are validated against the declaration (422 naming the field);
3. the body, if the operation has one, is read under its family's size cap (server/limits.py);
4. the service function runs (service/dispatch.py), in a worker thread or on the loop; a
   long poll holds one of its caller's few slots meanwhile (server/throttle.py);
5. the result is rendered by the declared reply kind (server/replies.py), in the same worker
   thread where the function ran in one.
No route holds domain logic, and none is written by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import nullcontext
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from annostream.operations import API_PREFIX, OPERATIONS, Op
from annostream.schema import ERROR_RESPONSES
from annostream.server.auth import credentials_from_header
from annostream.server.limits import read_body
from annostream.server.replies import RESPONSES_BY_REPLY, render
from annostream.server.throttle import long_poll_slot
from annostream.service import dispatch
from annostream.service.dispatch import Subject
from annostream.service.projects import at_once


def policy(op: Op, on_loop: bool = False) -> Callable[[Request], Subject]:
    """The policy of ``op`` for a request: who calls (401 on bad credentials), granted what the
    declaration's ``role`` needs on the project in the path (401/403/404), or, for a
    server-level operation, the principal itself. Blocking (it reads the store). ``on_loop``:
    it runs on the event loop, which hands the key's use record (a write, which may wait for
    another process's transaction) to a worker thread."""
    writer = _in_worker_thread if on_loop else at_once

    def grant(request: Request) -> Subject:
        creds = credentials_from_header(request.headers.get("authorization"))
        return dispatch.authorize_credentials(request.app.state.store, creds, op, request.path_params, writer)

    grant.__name__ = f"policy_{op.name}"
    return grant


def _in_worker_thread(write: Callable[[], None]) -> None:
    asyncio.get_running_loop().run_in_executor(None, write)


def _args(op: Op, request: Request) -> dict[str, Any]:
    """``op``'s path, query and header parameters, validated (422 naming the field)."""
    given = {k: v for k, v in request.query_params.items() if k in op.query_params}
    given.update({k: request.headers[h] for k, h in op.headers.items() if h in request.headers})
    return op.bind({**given, **request.path_params})


Here = Callable[[dict[str, Any] | None], bool]


def endpoint(op: Op, here: Here | None = None) -> Callable[..., Coroutine[Any, Any, Response]]:
    """The route handler of ``op``: authorise, validate, read the body (capped), run, render.

    Worker-thread hops are few, as each costs more than the small work it carries: an
    operation without a body is authorised, run and rendered in one; one with a body in two
    (the policy, then run and render), the body being read on the loop in between.

    ``here`` (server/hot.py, where the database is a local file) says whether the policy
    (``here(None)``) and then the rest (``here(args)``) run on the event loop itself, without a
    hop: for small, local work the hop there and back costs more CPU than the work."""
    grant, grant_here = policy(op), policy(op, on_loop=True)
    in_one_hop = here is None and op.body == "none" and not op.long_poll and not dispatch.runs_on_loop(op)

    async def handle(request: Request) -> Response:
        store = request.app.state.store
        if in_one_hop:

            def whole() -> Response:
                subject = grant(request)
                return render(op, dispatch.run(store, subject, op, _args(op, request)), request)

            return await anyio.to_thread.run_sync(whole)
        if here is not None and here(None):
            subject = grant_here(request)
        else:
            subject = await anyio.to_thread.run_sync(grant, request)
        args = _args(op, request)
        body = None
        if op.body != "none":
            body = await read_body(request, op, request.app.state.limits)
            args["body"] = op.bind_body(body)
        slot = long_poll_slot(request) if op.long_poll and args.get("wait") else nullcontext()
        try:
            with slot:
                if dispatch.runs_on_loop(op):
                    return render(op, await dispatch.run_async(store, subject, op, args), request)
                if here is not None and here(args):
                    return render(op, dispatch.run(store, subject, op, args), request)
                return await anyio.to_thread.run_sync(
                    lambda: render(op, dispatch.run(store, subject, op, args), request)
                )
        finally:
            if op.body == "ndjson" and body is not None:
                body.close()

    handle.__name__ = op.name
    handle.__doc__ = op.summary or None
    return handle


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined (an OpenAPI body has no ``$defs``)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _body_schema(op: Op) -> tuple[str, dict[str, Any]] | None:
    """The media type and schema of ``op``'s request body, by its declared kind."""
    if op.body == "json" and op.model is not None:
        return "application/json", _inline_refs(op.model.model_json_schema())
    if op.body == "any_json":
        return "application/json", {}
    if op.body == "raw":
        return "application/octet-stream", {"type": "string", "format": "binary"}
    if op.body == "ndjson":
        return "application/x-ndjson", {"type": "string"}
    if op.body == "multipart":
        fields = {name: {"type": "string"} for name in op.form_fields}
        properties = {"file": {"type": "string", "format": "binary"}, **fields}
        return "multipart/form-data", {"type": "object", "properties": properties, "required": ["file"]}
    return None


def documented(op: Op) -> dict[str, Any]:
    """OpenAPI parameters and request body of ``op`` from its declaration (the handler itself
    declares none, so that nothing of the body is read before the policy has run)."""
    schema = op.args_model.model_json_schema()
    required = set(schema.get("required", ()))
    doc: dict[str, Any] = {
        "parameters": [
            {
                "name": op.headers.get(name, name),
                "in": "path" if name in op.path_params else "header" if name in op.headers else "query",
                "required": name in required,
                "schema": prop,
            }
            for name, prop in schema["properties"].items()
        ]
    }
    body = _body_schema(op)
    if body is not None:
        media, body_schema = body
        doc["requestBody"] = {"required": True, "content": {media: {"schema": body_schema}}}
    return doc


def build_router() -> APIRouter:
    """One route per declared operation, in declaration order."""
    router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    for op in OPERATIONS.values():
        router.add_api_route(
            op.path,
            endpoint(op),
            methods=[op.method],
            status_code=op.status,
            name=op.name,
            summary=op.summary or None,
            openapi_extra=documented(op),
            responses=RESPONSES_BY_REPLY[op.reply],
        )
    return router
