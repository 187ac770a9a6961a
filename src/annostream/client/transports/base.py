"""What every transport offers the SDK: ``call`` one declared operation, plus the three
transfers whose mechanics differ by transport (export, and imports: every format, COCO
included, is a reader's records sent through ``import_source``).

``call(name, **args)`` takes the declaration's path and query parameters by name and, when
the operation has one, ``body``; it returns the same value on every transport (JSON as
dicts and lists; ``(ids, revision)``; ``(pairs, revision)`` of items with their blob bytes;
blob bytes). The named methods below are the SDK's vocabulary, written once here on top of
``call``; a new operation needs none: ``transport.call("label_counts", project=..., ...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, cast

import numpy as np

from annostream.schema import Role

Item = dict[str, Any]


class Transport(ABC):
    """The operations the SDK needs, whatever carries them."""

    @abstractmethod
    def call(self, name: str, /, **args: Any) -> Any:
        """Run declared operation ``name`` (annostream.operations.OPERATIONS)."""

    @abstractmethod
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
        """Write the slice in format ``fmt`` into the folder ``out``; return its manifest."""

    @abstractmethod
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
        """Import what a format reader yields: stage its images, then one commit. ``key``: an
        idempotency key (an import sent again with it commits once); ``duplicates``: skip
        files the dataset holds with the same name and bytes, or keep them."""

    # --- projects, keys, vocabulary --------------------------------------------------------

    def project(self, project: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("get_project", project=project))

    def list_projects(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_projects"))

    def create_project(self, string_id: str, name: str | None, is_public: bool) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.call("create_project", body={"string_id": string_id, "name": name, "is_public": is_public}),
        )

    def create_key(self, project: str, role: Role) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("create_key", project=project, body={"role": role}))

    def list_keys(self, project: str | None) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_keys", project=project))

    def revoke_key(self, project: str | None, client_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("revoke_key", project=project, client_id=client_id))

    def labels(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_labels", project=project, as_of=as_of))

    def create_label(self, project: str, name: str, color: str | None) -> dict[str, Any]:
        return cast(
            "dict[str, Any]", self.call("create_label", project=project, body={"name": name, "color": color})
        )

    def attribute_groups(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_attribute_groups", project=project, as_of=as_of))

    def create_attribute_group(
        self, project: str, name: str, kind: str, options: list[str]
    ) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.call(
                "create_attribute_group",
                project=project,
                body={"name": name, "kind": kind, "options": options},
            ),
        )

    # --- datasets and reads ----------------------------------------------------------------

    def list_datasets(self, project: str, as_of: int | None) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_datasets", project=project, as_of=as_of))

    def get_dataset(self, project: str, name: str, as_of: int | None) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("get_dataset", project=project, dataset=name, as_of=as_of))

    def create_dataset(self, project: str, name: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("create_dataset", project=project, body={"name": name}))

    def ids(self, project: str, dataset: str, query: str | None, as_of: int | None) -> tuple[np.ndarray, int]:
        return cast(
            "tuple[np.ndarray, int]",
            self.call("slice_ids", project=project, dataset=dataset, query=query, as_of=as_of),
        )

    def frame_ids(
        self,
        project: str,
        dataset: str,
        query: str | None,
        frame_query: str | None,
        as_of: int | None,
        step: int,
    ) -> tuple[np.ndarray, int]:
        """(file id, frame number) pairs [N, 2] of the slice's video frames, and the revision."""
        flat, rev = self.call(
            "frame_ids",
            project=project,
            dataset=dataset,
            query=query,
            frame_query=frame_query,
            as_of=as_of,
            step=step,
        )
        return flat.reshape(-1, 2), rev

    def count(self, project: str, dataset: str, query: str | None, as_of: int | None) -> tuple[int, int]:
        reply = self.call("slice_count", project=project, dataset=dataset, query=query, as_of=as_of)
        return reply["count"], reply["revision"]

    def items(
        self, project: str, ids: list[int], as_of: int | None, blobs: bool
    ) -> list[tuple[Item, bytes | None]]:
        pairs, _ = self.call(
            "items_batch",
            project=project,
            body={"ids": ids, "as_of": as_of, "blobs": "inline" if blobs else "none"},
        )
        return cast("list[tuple[Item, bytes | None]]", pairs)

    def page(
        self,
        project: str,
        dataset: str,
        query: str | None,
        as_of: int | None,
        after: int | None,
        limit: int,
        blobs: bool,
    ) -> tuple[list[tuple[Item, bytes | None]], int]:
        """A keyset page of a slice: (items with file id > ``after``, revision read)."""
        pairs, rev = self.call(
            "slice_page",
            project=project,
            dataset=dataset,
            query=query,
            as_of=as_of,
            after=after,
            limit=limit,
            blobs="inline" if blobs else "none",
        )
        return pairs, rev

    def blob(self, project: str, sha256: str) -> bytes:
        return cast("bytes", self.call("get_blob", project=project, sha256=sha256))

    # --- writes ----------------------------------------------------------------------------

    def upload_file(
        self,
        project: str,
        dataset: str,
        filename: str,
        data: bytes,
        instances: list[dict[str, Any]],
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.call(
                "upload_file",
                project=project,
                dataset=dataset,
                body={"filename": filename, "data": data, "instances": instances, "metadata": metadata},
            ),
        )

    def write_instances(
        self, project: str, file_id: int, instances: list[dict[str, Any]], replace: bool
    ) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.call(
                "replace_instances" if replace else "add_instances",
                project=project,
                file_id=file_id,
                body={"instances": instances},
            ),
        )

    def delete_instance(self, project: str, instance_id: int) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("delete_instance", project=project, instance_id=instance_id))

    def remove_file(self, project: str, dataset: str, file_id: int) -> dict[str, Any]:
        return cast(
            "dict[str, Any]", self.call("remove_file", project=project, dataset=dataset, file_id=file_id)
        )

    # --- revisions -------------------------------------------------------------------------

    def create_tag(self, project: str, name: str, rev: int | None) -> dict[str, Any]:
        return cast(
            "dict[str, Any]", self.call("create_tag", project=project, body={"name": name, "rev": rev})
        )

    def list_tags(self, project: str) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self.call("list_tags", project=project))

    def get_tag(self, project: str, name: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("get_tag", project=project, name=name))

    def delete_tag(self, project: str, name: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.call("delete_tag", project=project, name=name))

    def changes(
        self, project: str, since: int, wait: float, dataset: str | None, query: str | None, limit: int
    ) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.call(
                "changes", project=project, since=since, wait=wait, dataset=dataset, query=query, limit=limit
            ),
        )
