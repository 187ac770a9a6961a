"""Readiness: whether this store can serve requests now (liveness is only "the process runs").

``readiness`` makes one cheap call to each backend: ``SELECT 1`` on the database (through
the pool, so a connection PostgreSQL dropped is replaced on the way) and the blob store's
``ping`` (a folder check, or S3 ``HeadBucket``). It never raises; it names what is wrong.
"""

from __future__ import annotations

from sqlalchemy import text

from annostream.store import Store


def readiness(store: Store) -> list[str]:
    """Reasons the store is not ready; empty when it is."""
    reasons = []
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure of the backend means "not ready", with its reason
        reasons.append(f"database: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    try:
        store.blobs.ping()
    except Exception as exc:  # the same: report it, never crash the probe
        reasons.append(f"blob store: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return reasons
