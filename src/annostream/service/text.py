"""Texts: spans (character ranges with a label) and relations between spans.

Invariants: a span's ``start``/``end`` are character offsets into the stored UTF-8 text
(Python ``str`` indices, end exclusive) and lie inside it; every span of a file has a key
unique in that file (given by the writer or assigned ``s<n>``); a relation names the keys of
two spans the file holds, so it survives export and re-import, where ids change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from annostream.errors import InvalidInput


def check_instances(items: list[Any], text: str | None, existing_keys: Iterable[str], where: str) -> None:
    """Spans inside ``text`` with unique keys (assigned where missing); relations between
    known spans; 422 naming the field otherwise. ``items`` are InstanceIn models (mutated:
    keys are filled in)."""
    keys = set(existing_keys)
    if text is None:
        for i, inst in enumerate(items):
            if inst.type in ("span", "relation"):
                raise InvalidInput(
                    f"{where}[{i}]: a {inst.type} belongs to a text file", {"field": f"{where}[{i}].type"}
                )
        return
    length = len(text)
    given = {i.geometry.get("key") for i in items if i.type == "span"} - {None}
    n = 0
    for i, inst in enumerate(items):
        at = f"{where}[{i}]"
        if inst.type not in ("span", "relation", "tag", "global"):
            raise InvalidInput(
                f"{at}: a text holds spans, relations, tags and globals, not a {inst.type}",
                {"field": f"{at}.type"},
            )
        if inst.type != "span":
            continue
        end = inst.geometry.get("end")
        if isinstance(end, int) and end > length:
            raise InvalidInput(
                f"{at}.geometry.end: {end} is past the end of the text ({length} characters)",
                {"field": f"{at}.geometry.end", "length": length},
            )
        key = inst.geometry.get("key")
        if key is None:
            while f"s{n}" in keys or f"s{n}" in given:
                n += 1
            key = f"s{n}"
            inst.geometry["key"] = key
        elif key in keys:
            raise InvalidInput(
                f"{at}.geometry.key: span key {key!r} is already used in this text",
                {"field": f"{at}.geometry.key"},
            )
        keys.add(key)
    for i, inst in enumerate(items):
        if inst.type != "relation":
            continue
        for end_name in ("from", "to"):
            key = inst.geometry.get(end_name)
            if key not in keys:
                field = f"{where}[{i}].geometry.{end_name}"
                raise InvalidInput(f"{field}: no span with key {key!r} in this text", {"field": field})
