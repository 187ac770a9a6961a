"""``running_server`` yields a server only once the process it started answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from annostream.client.transports import EmbeddedTransport
from annostream.server.launch import running_server


def test_a_port_another_server_holds_is_not_taken_for_ours(tmp_path: Path) -> None:
    for name in ("a", "b"):
        EmbeddedTransport(tmp_path / name, create=True).create_project(name, None, True)
    with running_server(tmp_path / "a") as first:
        taken = int(first.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="exited"), running_server(tmp_path / "b", port=taken):
            pass  # before: /healthz of the first server answered, and its URL was yielded as ours
        assert httpx.get(f"{first}/api/v2/projects/a").status_code == 200
    with running_server(tmp_path / "b", workers=2) as second:  # a worker answers: its parent is ours
        assert httpx.get(f"{second}/api/v2/projects/b").status_code == 200
