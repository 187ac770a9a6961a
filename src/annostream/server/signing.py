"""Signed, expiring blob URLs: a client with no credentials (Diffgram's image loader) may fetch
one blob of one project until a deadline, and nothing else.

The signature is HMAC-SHA256 over ``project``, ``sha256`` and ``expires`` with a per-store
secret. The secret is 32 random bytes kept in ``<data dir>/signing.key`` (created once, mode
0600, atomically, so every server process on that data dir agrees), or given as hex in
``ANNOSTREAM_SIGNING_KEY`` (for processes on several hosts that share a database but no data
dir). URLs carry only the expiry and the signature, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from pathlib import Path

SECRET_FILE = "signing.key"
SECRET_ENV = "ANNOSTREAM_SIGNING_KEY"
DEFAULT_TTL_S = 3600


def load_secret(data_dir: str | os.PathLike[str] | None) -> bytes:
    """The store's signing secret: from the environment, else the data dir's key file (made
    on first use), else (no data dir at all) a random one that lives as long as the process."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return bytes.fromhex(from_env)
    if data_dir is None:
        return secrets.token_bytes(32)
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def signature(secret: bytes, project: str, sha256: str, expires: int) -> str:
    message = f"{project}\n{sha256}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(
    secret: bytes, project: str, sha256: str, ttl_s: int = DEFAULT_TTL_S, now: float | None = None
) -> tuple[int, str]:
    """(expires as unix seconds, signature) for a URL to one blob of one project."""
    expires = int(now if now is not None else time.time()) + ttl_s
    return expires, signature(secret, project, sha256, expires)


def verify(
    secret: bytes, project: str, sha256: str, expires: int, sig: str, now: float | None = None
) -> bool:
    """True when ``sig`` was made with ``secret`` for exactly these values and has not expired."""
    if expires < (now if now is not None else time.time()):
        return False
    # As bytes: compare_digest refuses non-ASCII str, and a forged signature may be anything.
    return hmac.compare_digest(signature(secret, project, sha256, expires).encode(), sig.encode())
