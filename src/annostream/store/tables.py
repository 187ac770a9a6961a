"""The database schema (SQLAlchemy 2 Core tables).

Versioned rows carry ``created_rev`` and ``deleted_rev``: a row is visible at revision R
when ``created_rev <= R`` and (``deleted_rev`` is null or ``deleted_rev > R``). Content is
never updated in place; an edit ends one row and starts another in the same commit.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an alias of rowid; BigInteger elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")


# A row's lifetime. Indexes that queries search end with these two columns, so the test of a
# match's lifetime at the revision read is answered from the index (migration 0007).
_REVS = ("created_rev", "deleted_rev")


def _versioned() -> list[Column]:
    return [
        Column("created_rev", Integer, nullable=False),
        Column("deleted_rev", Integer, nullable=True),
    ]


projects = Table(
    "projects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("string_id", String(100), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("is_public", Boolean, nullable=False, default=False),
    Column("head_rev", Integer, nullable=False, default=0),
    # The first revision ``dataset_counts`` answers for: 0 for a project the service created,
    # a migrated project's head then; NULL (never) for one written around the service.
    Column("counts_from", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

revisions = Table(
    "revisions",
    metadata,
    Column("project_id", Id, ForeignKey("projects.id"), primary_key=True),
    Column("rev", Integer, primary_key=True),
    Column("message", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

revision_tags = Table(
    "revision_tags",
    metadata,
    Column("project_id", Id, ForeignKey("projects.id"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("rev", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # NULL project: a server admin key, which may create projects.
    Column("project_id", Id, ForeignKey("projects.id"), nullable=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    *_versioned(),
    Index(None, "project_id", "name"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(100), nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("original_filename", String(500), nullable=False),
    Column("blob_sha256", String(64), ForeignKey("blobs.sha256"), nullable=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("frame_count", Integer, nullable=True),
    Column("fps", Float, nullable=True),
    # Video only, probed at upload: seconds, codec name, frame numbers of the keyframes.
    Column("duration", Float, nullable=True),
    Column("codec", String(32), nullable=True),
    Column("keyframes", JSON, nullable=True),
    Column("text", Text, nullable=True),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("parent_id", Id, ForeignKey("files.id"), nullable=True),
    Column("frame_number", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *_versioned(),
    Index(None, "project_id", "blob_sha256"),
    Index(None, "parent_id"),
    Index(None, "project_id", "type"),
)

dataset_files = Table(
    "dataset_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dataset_id", Id, ForeignKey("datasets.id"), nullable=False),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    *_versioned(),
    Index("ix_dataset_files_by_dataset", "dataset_id", "file_id", *_REVS),
    Index("ix_dataset_files_by_file", "file_id", "dataset_id", *_REVS),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id"), nullable=False),
    # Stable, contiguous per project (1..N in creation order); 0 is reserved for background.
    Column("label_index", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("color", String(16), nullable=True),
    Column("schema_name", String(200), nullable=True),
    # Format extras that belong to the label: COCO supercategory, keypoint names, skeleton.
    Column("spec", JSON, nullable=False, default=dict),
    *_versioned(),
    UniqueConstraint("project_id", "label_index"),
)

attribute_groups = Table(
    "attribute_groups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    *_versioned(),
    Index(None, "project_id"),
)

attribute_options = Table(
    "attribute_options",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", Id, ForeignKey("attribute_groups.id"), nullable=False),
    Column("name", String(200), nullable=False),
    *_versioned(),
    Index(None, "group_id"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id"), nullable=False),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    Column("frame_number", Integer, nullable=True),
    Column("label_id", Id, ForeignKey("labels.id"), nullable=True),
    Column("type", String(16), nullable=False),
    Column("geometry", JSON, nullable=False),
    Column("x_min", Float, nullable=True),
    Column("y_min", Float, nullable=True),
    Column("x_max", Float, nullable=True),
    Column("y_max", Float, nullable=True),
    Column("area", Float, nullable=True),
    Column("iscrowd", Boolean, nullable=False, default=False),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("track_id", Integer, nullable=True),
    # On a track: True for an annotated keyframe, False for a stored interpolated instance.
    Column("keyframe", Boolean, nullable=True),
    # Events: first and last frame (inclusive); spans: start and end character (end exclusive).
    Column("range_start", Integer, nullable=True),
    Column("range_end", Integer, nullable=True),
    Column("machine_made", Boolean, nullable=False, default=False),
    *_versioned(),
    Index(None, "file_id", "deleted_rev"),
    Index(None, "file_id", "frame_number"),
    Index(None, "project_id", "created_rev"),
    Index(None, "project_id", "deleted_rev"),
)

# Derived, versioned counts of instances per (file, label), written in the same transaction
# as the instances, so that `labels.cat > 2` is an indexed lookup rather than a scan.
file_label_counts = Table(
    "file_label_counts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    Column("label_id", Id, ForeignKey("labels.id"), nullable=False),
    Column("count", Integer, nullable=False),
    *_versioned(),
    Index("ix_file_label_counts_by_label", "label_id", "count", "file_id", *_REVS),
    Index("ix_file_label_counts_by_file", "file_id", "label_id", "count", *_REVS),
)

# Blobs a caller staged for a project ahead of an import that names them by sha256. The row
# is committed before the bytes are written, so the store always knows of every blob it
# holds; an import that commits removes the rows it used, and gc collects the rest once
# they are older than its grace period (a crashed or abandoned import).
staged_blobs = Table(
    "staged_blobs",
    metadata,
    Column("project_id", Id, ForeignKey("projects.id"), primary_key=True),
    Column("sha256", String(64), ForeignKey("blobs.sha256"), primary_key=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Client-chosen idempotency keys of imports: a retried import answers the stored result.
import_keys = Table(
    "import_keys",
    metadata,
    Column("project_id", Id, ForeignKey("projects.id"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("result", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Derived, versioned index of the attribute values carried by a file's visible instances: one
# row per distinct (file, key, kind, value) while some live instance carries it, written in
# the same transaction as the instances, so that `attributes.weather = "rain"` is an indexed
# lookup. ``kind`` is the JSON type (text, number, true, false, null, array, object) or
# ``item`` for a text element of a list (multi-select values).
file_attribute_values = Table(
    "file_attribute_values",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    Column("key", String(200), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("text", Text, nullable=True),
    Column("number", Float, nullable=True),
    *_versioned(),
    Index("ix_file_attribute_values_by_number", "key", "kind", "number", "file_id", *_REVS),
    Index(None, "file_id", "deleted_rev"),
)
# PostgreSQL's btree refuses entries over ~2.7 kB: its text index holds the short values only,
# and an equality on a short value states that bound so the planner can use it.
INDEXED_TEXT_CHARS = 1000
Index(
    "ix_file_attribute_values_by_text",
    file_attribute_values.c.key,
    file_attribute_values.c.kind,
    file_attribute_values.c.text,
    file_attribute_values.c.file_id,
    file_attribute_values.c.created_rev,
    file_attribute_values.c.deleted_rev,
    postgresql_where=func.length(file_attribute_values.c.text) < INDEXED_TEXT_CHARS,
)

# Derived, versioned per-dataset aggregates of the two tables above: a label row (label_id,
# count) holds how many member files of the dataset have exactly ``count`` instances of that
# label; an attribute row (key, kind, text, number) how many member files carry that value
# (texts of AGGREGATED_TEXT_CHARS or more are not aggregated). Written in the commit that
# changes instances or membership, so a slice's count sums a few rows instead of reading every
# matching file. Valid from ``projects.counts_from`` on; see annostream.service.dataset_counts.
AGGREGATED_TEXT_CHARS = 250
dataset_counts = Table(
    "dataset_counts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dataset_id", Id, ForeignKey("datasets.id"), nullable=False),
    Column("label_id", Id, ForeignKey("labels.id"), nullable=True),
    Column("count", Integer, nullable=True),
    Column("key", String(200), nullable=True),
    Column("kind", String(8), nullable=True),
    Column("text", Text, nullable=True),
    Column("number", Float, nullable=True),
    Column("files", Integer, nullable=False),
    *_versioned(),
    Index(None, "dataset_id", "label_id", "count"),
    Index(None, "dataset_id", "key", "kind", "text"),
    Index(None, "dataset_id", "key", "kind", "number"),
)
