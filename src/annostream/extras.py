"""Optional dependencies, imported on first use, with the install line when one is missing.

The core package needs none of them; each integration or backend names the extra that
brings its dependency, so a missing one reads ``pip install 'annostream[torch]'`` instead of
a bare ``No module named 'torch'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# module -> the extra of pyproject.toml that installs it
EXTRA_OF: dict[str, str] = {
    "torch": "torch",
    "torchdata": "torch",
    "tensorflow": "tensorflow",
    "ray": "ray",
    "fastapi": "server",
    "uvicorn": "server",
    "fastapi_offline": "server",
    "psycopg": "postgres",
    "boto3": "s3",
    "skimage": "demo",
    "pycocotools": "coco",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message gives the pip line."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise ``MissingExtra`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but something it imports is broken: show that
        extra = EXTRA_OF.get(top, top)
        raise MissingExtra(
            f"{purpose} needs {top}, which is not installed: pip install 'annostream[{extra}]'", name=top
        ) from None
