"""annostream: an annotation store with a streaming SDK.

from annostream import Project
project = Project("coco-dataset", host="http://127.0.0.1:8085")
ds = project.directory.get(name="Default")
len(ds); ds[7]; ds.slice("labels.cat > 2")
"""

from __future__ import annotations

__version__ = "0.1.0"

from annostream.client.dataset import Dataset
from annostream.client.project import Project, open
from annostream.client.retry import Retry
from annostream.errors import (
    AnnostreamError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    QueryError,
    TransportError,
    Unauthorized,
)

__all__ = [
    "AnnostreamError",
    "Conflict",
    "Dataset",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "Project",
    "QueryError",
    "Retry",
    "TransportError",
    "Unauthorized",
    "__version__",
    "open",
]
