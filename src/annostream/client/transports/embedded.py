"""The service layer in this process, on a local store folder: no server, same calls.

``call`` goes through ``service.dispatch.call``, the same policy and service functions the
server runs, so an embedded store opened with an API key obeys that key's role exactly as
over HTTP; opened without one, the caller owns the folder and acts as the ``local``
principal (full rights). Replies come back in the shapes the HTTP transport decodes.
The service layer is imported lazily: importing this module costs no SQLAlchemy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from annostream.client.transports.base import Transport
from annostream.operations import OPERATIONS

_STORES: dict[tuple[int, str], Any] = {}
_STORES_LOCK = threading.Lock()


def _open_store(path: str, create: bool = False) -> Any:
    """One Store per (process, folder), shared by every Project that opens that folder.

    A folder that holds no store is an error naming the nearest one below it, unless
    ``create`` (an explicit ``project create`` or ``init``).
    """
    from annostream.store import Store

    key = (os.getpid(), path)
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = Store.open(path, create=create)
        return _STORES[key]


def close_store(path: str | os.PathLike[str]) -> None:
    """Close this process's shared Store on ``path`` (before its files are removed)."""
    key = (os.getpid(), str(Path(path).resolve()))
    with _STORES_LOCK:
        store = _STORES.pop(key, None)
    if store is not None:
        store.close()


class EmbeddedTransport(Transport):
    """A store folder used in-process; with ``client_id``/``client_secret``, as that key."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        create: bool = False,
    ) -> None:
        self.path = str(Path(path).resolve())
        self.shown_path = str(path)
        self.create = create
        self._key = (client_id, client_secret) if client_id and client_secret else None
        self._principal: Any = None

    def _store(self, create: bool) -> Any:
        from annostream.errors import NotFound
        from annostream.store import no_store_message

        try:
            return _open_store(self.path, create or self.create)
        except NotFound as exc:
            raise NotFound(no_store_message(Path(self.shown_path)), exc.detail) from None

    @property
    def store(self) -> Any:
        return self._store(False)

    @property
    def principal(self) -> Any:
        """Who calls: the key's principal (checked once, 401 if it matches no live key), else local."""
        if self._principal is None:
            from annostream.service.projects import LOCAL, authenticate

            self._principal = authenticate(self.store, *self._key) if self._key else LOCAL
        return self._principal

    def call(self, name: str, /, **args: Any) -> Any:
        from annostream.service.dispatch import call

        # Creating a project is one of the explicit ways to make a store; nothing else is.
        store = self._store(name == "create_project")
        result = call(store, self.principal, name, args)
        reply = OPERATIONS[name].reply
        if reply == "items":
            return list(result.pairs), result.revision
        if reply in ("blob", "image"):
            return result.read()
        if reply == "zip":
            return b"".join(result.chunks)
        return result

    def _server_keys(self) -> None:
        from annostream.errors import Forbidden

        if not self.principal.is_superuser:
            raise Forbidden("only the store's owner manages server admin keys")

    def list_keys(self, project: str | None) -> list[dict[str, Any]]:
        """A project's keys, or (``None``: the store's owner only) the server admin keys."""
        if project is not None:
            return super().list_keys(project)
        from annostream.service.projects import list_keys

        self._server_keys()
        return list_keys(self.store, None)

    def revoke_key(self, project: str | None, client_id: str) -> dict[str, Any]:
        if project is not None:
            return super().revoke_key(project, client_id)
        from annostream.service.projects import revoke_key

        self._server_keys()
        return revoke_key(self.store, None, client_id)

    def _ref(self, project: str, need: str) -> Any:
        from annostream.service.projects import authorize

        return authorize(self.store, self.principal, project, need)  # type: ignore[arg-type]

    def export(
        self,
        project: str,
        dataset: str,
        fmt: str,
        out: Path,
        query: str | None,
        as_of: int | None,
        images: bool | str,
        progress: Any = None,
    ) -> dict[str, Any]:
        """Write the export straight into the folder ``out`` (``images="link"`` symlinks blobs)."""
        from annostream.formats import DirSink
        from annostream.service.datasets import get_dataset
        from annostream.service.export import export_slice

        ds = get_dataset(
            self.store, self._ref(project, OPERATIONS["export"].role or "viewer"), dataset, as_of
        )
        return export_slice(
            self.store, ds, fmt, DirSink(out), query=query, as_of=as_of, images=images, progress=progress
        )

    def import_source(
        self,
        project: str,
        dataset: str,
        source: Any,
        fmt: str,
        progress: Any = None,
        key: str | None = None,
        duplicates: str = "skip",
    ) -> dict[str, Any]:
        """Stage the images in this process (in batches), then commit: ``service.imports``."""
        from annostream.service.imports import import_source

        ref = self._ref(project, OPERATIONS["import_records"].role or "editor")
        return import_source(
            self.store, ref, dataset, source, progress=progress, fmt=fmt, key=key, duplicates=duplicates
        )
