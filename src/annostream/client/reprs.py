"""How samples and views look in a notebook: ``_repr_html_`` and ``_repr_png_``.

HTML (well-formed XML too, so any parser reads it) is the image (downscaled, as a data:
URL) inside the same SVG overlay the explorer draws (``annostream.overlay.svg``:
coordinates in the image's own pixels, text escaped); PNG is
the image with its instances drawn by Pillow. A view shows its count, query, revision and a
strip of its first few samples. Everything here reads only what the sample or view holds.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from annostream import overlay
from annostream.client.sample import make_sample
from annostream.schema import Sample

if TYPE_CHECKING:
    from annostream.client.dataset import Dataset

SAMPLE_SIDE = 512
STRIP_SIDE = 160
STRIP_COUNT = 8


def _pil(image: Any) -> Image.Image | None:
    """The sample's image as PIL, whichever way it was decoded (None when there is none)."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            return Image.open(io.BytesIO(bytes(image)))
        except OSError:
            return None
    return None


def _data_url(image: Image.Image, side: int) -> str:
    small = image.convert("RGB")
    small.thumbnail((side, side))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _size(sample: Mapping[str, Any], image: Image.Image | None) -> tuple[int, int]:
    f = sample.get("file") or {}
    if f.get("width") and f.get("height"):
        return int(f["width"]), int(f["height"])
    return image.size if image is not None else (1, 1)


def _legend(instances: list[dict[str, Any]]) -> str:
    seen: dict[str, str] = {}
    for inst in instances:
        if inst.get("label") and inst["label"] not in seen:
            seen[inst["label"]] = overlay.label_color(inst.get("label_id"))
    return " ".join(
        f'<span style="color:{color}">&#9632;</span>&#160;{html.escape(name)}' for name, color in seen.items()
    )


def sample_svg(sample: Mapping[str, Any], side: int = SAMPLE_SIDE) -> str:
    image = _pil(sample.get("image"))
    width, height = _size(sample, image)
    href = _data_url(image, side) if image is not None else None
    return overlay.svg(width, height, sample.get("instances") or [], href, css_class="annostream-overlay")


def sample_html(sample: Mapping[str, Any]) -> str:
    """A figure: the picture with its instances, its name and counts, a legend."""
    f = sample.get("file") or {}
    instances = sample.get("instances") or []
    picture = sample_svg(sample)
    return (
        f'<figure class="annostream-sample" style="margin:0;max-width:{SAMPLE_SIDE}px">'
        f'<div style="max-width:{SAMPLE_SIDE}px">{picture}</div>'
        f'<figcaption style="font:12px sans-serif">{html.escape(str(f.get("name", "")))} · file '
        f"{html.escape(str(f.get('id', '')))} · {len(instances)} instance"
        f"{'' if len(instances) == 1 else 's'}<br/>{_legend(instances)}</figcaption></figure>"
    )


def sample_png(sample: Mapping[str, Any], side: int = SAMPLE_SIDE) -> bytes | None:
    """PNG bytes of the image with its instances drawn; None when the sample has no image."""
    image = _pil(sample.get("image"))
    if image is None:
        return None
    out = io.BytesIO()
    overlay.draw(image, sample.get("instances") or [], max_side=side).save(out, format="PNG")
    return out.getvalue()


def _strip(view: Dataset) -> list[Sample]:
    first = [int(i) for i in view.ids[:STRIP_COUNT]]
    return [make_sample(item, blob, "bytes") for item, blob in view.fetch_raw(first, keep=False)]


def _describe(view: Dataset) -> tuple[int, str, int]:
    return len(view), view.query or "", view.revision


def view_html(view: Dataset) -> str:
    """Count, query and revision of the view, and its first samples as a strip."""
    count, query, rev = _describe(view)
    tiles = "".join(
        f'<div style="width:{STRIP_SIDE}px;flex:none" '
        f'title="{html.escape(str(s["file"]["name"]))}">{sample_svg(s, STRIP_SIDE)}</div>'
        for s in _strip(view)
    )
    where = f" matching <code>{html.escape(query)}</code>" if query else ""
    return (
        f'<div class="annostream-view"><div style="font:13px sans-serif">'
        f"<b>{html.escape(view.project.string_id)}/{html.escape(view.name)}</b>: {count} file"
        f"{'' if count == 1 else 's'}{where} at revision {rev}</div>"
        f'<div style="display:flex;gap:4px;overflow-x:auto">{tiles}</div></div>'
    )


def view_png(view: Dataset) -> bytes | None:
    """The view's first samples side by side, each with its instances drawn."""
    pictures = [
        overlay.draw(image, s["instances"], max_side=STRIP_SIDE)
        for s in _strip(view)
        if (image := _pil(s["image"])) is not None
    ]
    if not pictures:
        return None
    strip = Image.new(
        "RGB",
        (sum(p.width for p in pictures) + 4 * (len(pictures) - 1), max(p.height for p in pictures)),
        "white",
    )
    x = 0
    for p in pictures:
        strip.paste(p, (x, 0))
        x += p.width + 4
    out = io.BytesIO()
    strip.save(out, format="PNG")
    return out.getvalue()
