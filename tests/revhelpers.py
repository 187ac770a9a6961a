"""Helpers shared by the revision, follow and offline tests: writable projects, and samples
serialised to bytes so that "the same samples" means byte for byte."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
from PIL import Image

from annostream import Dataset, Project
from annostream.client.transports import EmbeddedTransport, HttpTransport

_names = itertools.count()


def png(w: int = 64, h: int = 48, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def box(x0: float, y0: float, x1: float, y1: float, label: str = "cat", **kw: Any) -> dict[str, Any]:
    return {
        "type": "box",
        "label": label,
        "geometry": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
        **kw,
    }


def new_project(
    kind: str, url: str | httpx.Client, store_dir: Path, prefix: str = "r", vocabulary: bool = True
) -> Project:
    """A fresh project over ``kind`` ("http" with its admin key, or "embedded"); with
    ``vocabulary``, labels cat/dog and a weather attribute (rain, sun) exist already.
    ``url``: a server's, or an httpx client over the app in this process."""
    local = EmbeddedTransport(store_dir)
    name = f"{prefix}-{next(_names)}-{kind}"
    admin = local.create_project(name, None, False)["admin_key"]
    if vocabulary:
        local.create_label(name, "cat", None)
        local.create_label(name, "dog", None)
        local.create_attribute_group(name, "weather", "select", ["rain", "sun"])
    return connect_as(kind, name, url, store_dir, admin)


def connect_as(
    kind: str, name: str, url: str | httpx.Client, store_dir: Path, key: dict[str, str]
) -> Project:
    """Another, cache-cold Project object on the same project."""
    if kind == "http" and isinstance(url, httpx.Client):
        transport = HttpTransport(str(url.base_url), key["client_id"], key["client_secret"], client=url)
        return Project(name, host=transport.host, transport=transport)
    if kind == "http":
        return Project(name, key["client_id"], key["client_secret"], host=url)
    return Project(name, host=f"file://{store_dir}")


def fresh(project: Project) -> Project:
    """The same project through a new Project object (empty cache, own connection pool)."""
    return Project(project.string_id, host=project.host, transport=_clone(project))


def _clone(project: Project) -> Any:
    t = project.transport
    if isinstance(t, EmbeddedTransport):
        return EmbeddedTransport(t.path)
    auth = t._auth or (None, None)
    return HttpTransport(t.host, auth[0], auth[1], client=t._injected)


def sample_bytes(sample: dict[str, Any]) -> bytes:
    """A sample as bytes: every field, arrays included, and the sha256 of the image bytes."""
    body = {k: v for k, v in sample.items() if k not in ("image", "event")}
    image = sample["image"]
    body["image_sha256"] = hashlib.sha256(image).hexdigest() if isinstance(image, bytes) else None
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)


def view_bytes(view: Dataset) -> list[bytes]:
    """Every sample of a view (raw image bytes), serialised, in id order."""
    return [sample_bytes(s) for s in view.with_options(decode=None)]
