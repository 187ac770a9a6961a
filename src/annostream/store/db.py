"""Database engines and schema migrations.

SQLite runs in WAL mode with a busy timeout, so readers never block the writer and a
second process (the CLI beside a running server) waits instead of failing.

A server's engine also bounds what one statement may cost: a statement timeout (SQLite: a
progress handler that interrupts a statement past its deadline; PostgreSQL:
``statement_timeout``), and a query cost budget that the query compiler reads from each
connection's ``info`` (``QUERY_BUDGET_KEY``). An engine made without them (embedded use,
the store's owner) is unbounded.

A pooled PostgreSQL connection is pinged before use only when it sat idle for a second or
more (``PING_AFTER_IDLE_S``), not on every checkout: a ping is a round trip.

The hottest reads (a batch of items) run through ``driver_rows``: the driver's cursor, the
statement compiled once, the statement timeout, errors and timings kept; on PostgreSQL a
batch's statements go in one pipeline (one round trip).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, CursorResult, Engine, Select, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError

from annostream.store import timings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (SQLAlchemy would pick psycopg2)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


QUERY_BUDGET_KEY = "annostream_query_budget"
STATEMENT_TIMEOUT_KEY = "annostream_statement_timeout_s"
_DEADLINE_KEY = "annostream_deadline"
# SQLite calls the progress handler every this many virtual machine steps (~ms apart).
_PROGRESS_STEPS = 20_000


def _sqlite_timeout(engine: Engine, timeout_s: float) -> None:
    """Interrupt any SQLite statement still running ``timeout_s`` after it started (its rows
    fetched included): sqlite3 raises OperationalError('interrupted')."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        deadline = record.info.setdefault(_DEADLINE_KEY, [0.0, timeout_s])  # [deadline, timeout]
        dbapi_connection.set_progress_handler(
            lambda: 1 if deadline[0] and time.monotonic() > deadline[0] else 0, _PROGRESS_STEPS
        )

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, *_args: Any) -> None:
        _arm_deadline(conn.connection.info)


def _arm_deadline(info: dict[str, Any]) -> None:
    """Start the timeout of the statement a SQLite connection runs next (when it has one)."""
    deadline = info.get(_DEADLINE_KEY)
    if deadline is not None:
        deadline[0] = time.monotonic() + deadline[1]


def _limits(engine: Engine, query_budget: int | None, timeout_s: float | None) -> None:
    @event.listens_for(engine, "connect")
    def _connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[QUERY_BUDGET_KEY] = query_budget
        record.info[STATEMENT_TIMEOUT_KEY] = timeout_s


# A pooled connection idle longer than this is pinged before use (a database restarted
# meanwhile has closed it); one used more recently is not: a ping per checkout would be a
# round trip more per request, and a statement on a connection dropped within that second
# fails as 503 (database unavailable), which clients retry.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE_KEY = "annostream_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE_KEY] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE_KEY)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards it and connects afresh
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def create_db_engine(
    url: str, *, statement_timeout_s: float | None = None, query_budget: int | None = None
) -> Engine:
    """An engine for ``url`` with the settings annostream relies on (orjson for JSON columns),
    and, for a server, the bounds on one statement (see the module docstring)."""
    url = normalize_url(url)
    json_options = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **json_options)
        event.listen(engine, "connect", _sqlite_pragmas)
        if statement_timeout_s:
            _sqlite_timeout(engine, statement_timeout_s)
    else:
        if url.startswith("postgresql+psycopg"):
            from annostream.extras import require

            require("psycopg", "a PostgreSQL store")
        connect_args = {}
        if statement_timeout_s:
            connect_args["options"] = f"-c statement_timeout={max(1, int(statement_timeout_s * 1000))}"
        engine = create_engine(url, pool_size=10, max_overflow=20, connect_args=connect_args, **json_options)
        _ping_when_idle(engine)
    _limits(engine, query_budget, statement_timeout_s)
    timings.instrument_engine(engine)
    return engine


def reading(engine: Engine) -> Connection:
    """A connection for reads that need no transaction of their own: the grant of a request, or
    items at a committed revision (versioned rows read at a committed revision are the same
    whenever they are read). On PostgreSQL it runs in autocommit, so neither the BEGIN before
    its first statement nor the ROLLBACK when it goes back to the pool is a round trip; SQLite
    begins no transaction for a read anyway (and setting its level would be a statement more)."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


# The SQL of each statement ``driver_rows`` ran, by statement and paramstyle (the same for
# every engine of a dialect: a SELECT compiles alike whatever the file or server).
_DRIVER_SQL: dict[tuple[Select[Any], str], tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}


def _driver_sql(conn: Connection, statement: Select[Any], params: Mapping[str, Any]) -> tuple[str, Any]:
    """``statement``'s SQL for this dialect (compiled once) and ``params`` in the driver's form."""
    key = (statement, conn.dialect.paramstyle)
    compiled = _DRIVER_SQL.get(key)
    if compiled is None:
        done = statement.compile(dialect=conn.dialect)
        if "__[POSTCOMPILE" in done.string:
            raise ValueError("driver_rows runs statements without expanding parameters only")
        names = tuple(done.positiontup) if done.positiontup is not None else None
        compiled = _DRIVER_SQL[key] = (done.string, names, dict(done.params))
    sql, names, defaults = compiled
    if names is None:  # named parameters (psycopg's %(name)s)
        return sql, {name: params.get(name, default) for name, default in defaults.items()}
    return sql, [params[name] if name in params else defaults[name] for name in names]


def driver_rows(conn: Connection, runs: Sequence[tuple[Select[Any], Mapping[str, Any]]]) -> list[list[Any]]:
    """The rows of each ``(statement, params)`` in ``runs`` (statements built once, at import),
    in order, as the driver returns them: run on the driver's own cursors with each statement's
    SQL compiled once per dialect. SQLAlchemy's execution (its context, events and result rows)
    costs more CPU than the database takes to read a batch of items (on PostgreSQL a third of
    the rows' CPU). What every statement gets is kept: the statement timeout (SQLite's
    deadline armed as the event does; PostgreSQL's is the server's own), database errors
    raised as SQLAlchemy's (``DBAPIError``), and the ``database`` timing. Values are neither
    bound nor read through column types (on SQLite a Boolean is 0 or 1; parameters go as
    given, a list as an array on PostgreSQL), and an expanding IN has no SQL of its own: it is
    refused. On PostgreSQL the statements are sent together in one pipeline (psycopg over
    libpq >= 14), one round trip for all instead of one each; elsewhere they run one after
    another. So no statement may depend on another's result."""
    if not runs:
        return []
    prepared = [_driver_sql(conn, statement, params) for statement, params in runs]
    fairy = conn.connection
    t0 = time.perf_counter() if timings.ENABLED else 0.0
    driver = fairy.driver_connection
    assert driver is not None  # a connection checked out of the pool has one
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursors = [driver.cursor() for _ in prepared]
    sql, values = prepared[0]  # the statement an error names
    try:
        if len(prepared) > 1 and _pipelines(conn):
            # PostgreSQL's statement timeout is its own. An error surfaces when the pipeline
            # syncs, not at the statement that caused it: it names them all.
            sql, values = "; ".join(p[0] for p in prepared), [p[1] for p in prepared]
            with driver.pipeline():
                for cursor, (one_sql, one_values) in zip(cursors, prepared, strict=True):
                    cursor.execute(one_sql, one_values)
            return [list(cursor.fetchall()) for cursor in cursors]
        out = []
        for cursor, (sql, values) in zip(cursors, prepared, strict=True):
            _arm_deadline(fairy.info)  # each statement its own timeout
            out.append(list(cursor.execute(sql, values).fetchall()))
        return out
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, values, exc, dbapi_error) from exc
    finally:
        for cursor in cursors:
            cursor.close()
        if timings.ENABLED:
            timings.add("database", time.perf_counter() - t0, len(prepared))


def _pipelines(conn: Connection) -> bool:
    """Whether ``conn``'s driver sends statements in a pipeline (psycopg over libpq >= 14)."""
    return conn.dialect.driver == "psycopg" and _libpq_pipelines()


@functools.cache
def _libpq_pipelines() -> bool:
    import psycopg  # only with a PostgreSQL engine: the driver is an optional extra

    return bool(psycopg.Pipeline.is_supported())


def is_timeout(exc: BaseException) -> bool:
    """Whether a database error is a statement interrupted by the statement timeout."""
    orig = getattr(exc, "orig", exc)
    if type(orig).__name__ == "QueryCanceled":  # psycopg: statement_timeout
        return True
    return type(orig).__name__ == "OperationalError" and str(orig) == "interrupted"


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the one row an INSERT wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the statement inserted no row")
    return int(key[0])


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
