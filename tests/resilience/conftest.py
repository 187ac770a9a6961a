"""A dataset for the resilience tests, its clean epoch, and helpers to run a server by hand.

``corpus`` is a COCO import of real JPEGs on the current stack, served by a server process;
``clean`` is what one undisturbed epoch yields (file id -> fingerprint), the reference every
disturbed epoch must equal exactly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from annostream import Project
from annostream.client.transports import EmbeddedTransport
from annostream.formats.coco import read_coco
from annostream.server.launch import free_port, running_server, serve_command, wait_until_answering
from tests.conftest import make_coco

N_IMAGES = 120


def fingerprint(sample: dict[str, Any]) -> tuple[int, str, bytes]:
    """What must be identical between epochs: id, image bytes (hashed), instances."""
    image = sample["image"]
    return (
        int(sample["file"]["id"]),
        hashlib.sha256(image).hexdigest() if image else "",
        orjson.dumps(sample["instances"], option=orjson.OPT_SORT_KEYS),
    )


@dataclass
class Corpus:
    store_dir: Path
    url: str
    key: dict[str, str]
    clean: dict[int, tuple[int, str, bytes]]

    def project(self, host: str | None = None, **options: Any) -> Project:
        return Project(
            "resilience", self.key["client_id"], self.key["client_secret"], host=host or self.url, **options
        )


def build_store(
    root: Path, new_store_dir: Callable[[Path], Path], n_images: int = N_IMAGES
) -> tuple[Path, dict[str, str]]:
    """A store holding a COCO import of ``n_images`` real JPEGs in project ``resilience``."""
    ann = make_coco(root / "coco", n_images, seed=14)
    store_dir = new_store_dir(root / "store")
    local = EmbeddedTransport(store_dir)
    local.create_project("resilience", None, False)
    local.import_source("resilience", "Default", read_coco(ann, root / "coco" / "images"), "coco")
    return store_dir, local.create_key("resilience", "editor")


def epoch(project: Project, **options: Any) -> list[tuple[int, str, bytes]]:
    ds = project.dataset("Default").with_options(decode=None, **options)
    return [fingerprint(s) for s in ds]


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, new_store_dir: Callable[[Path], Path]
) -> Iterator[Corpus]:
    store_dir, key = build_store(tmp_path_factory.mktemp("resilience"), new_store_dir)
    with running_server(store_dir) as url:
        project = Project("resilience", key["client_id"], key["client_secret"], host=url)
        clean = {fp[0]: fp for fp in epoch(project)}
        assert len(clean) == N_IMAGES
        yield Corpus(store_dir, url, key, clean)


class ServerProcess:
    """``annostream serve`` on a fixed port that a test may kill and start again."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(serve_command(self.store_dir, self.port), env=dict(os.environ))
        answered = wait_until_answering(self.proc, self.url, timeout)
        assert answered, f"server exited with {self.proc.returncode} (port {self.port} taken?)"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
