"""Credentials from a request: HTTP Basic ``client_id:client_secret`` or ``Bearer``.

The Bearer token is the same pair joined by a colon, so one API key works for both forms
(Diffgram's SDK sends Basic; scripts and browsers find Bearer easier).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from annostream.errors import Unauthorized
from annostream.service.projects import ANONYMOUS, Principal, authenticate


def _split(pair: str) -> tuple[str, str]:
    client_id, sep, secret = pair.partition(":")
    if not sep or not client_id or not secret:
        raise Unauthorized("malformed credentials: expected client_id:client_secret")
    return client_id, secret


def credentials_from_header(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            return _split(base64.b64decode(value.strip(), validate=True).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise Unauthorized("malformed Basic credentials") from exc
    if scheme == "bearer":
        return _split(value.strip())
    # Never echo the header: without a scheme its first word may be the secret itself.
    raise Unauthorized("unsupported authorization scheme: send 'Basic' or 'Bearer' credentials")


def principal(request: Request) -> Principal:
    """FastAPI dependency: who is calling (anonymous when no credentials are sent)."""
    creds = credentials_from_header(request.headers.get("authorization"))
    if creds is None:
        return ANONYMOUS
    return authenticate(request.app.state.store, *creds)


KEY_COOKIE = "annostream_key"


def page_principal(request: Request) -> Principal:
    """The explorer's caller: an Authorization header as the API takes it, else the key the
    browser was given back in the explorer's cookie (HttpOnly, SameSite=Strict, scoped to one
    project's pages), checked by the very same ``authenticate``."""
    if request.headers.get("authorization"):
        return principal(request)
    cookie = request.cookies.get(KEY_COOKIE)
    if not cookie:
        return ANONYMOUS
    return authenticate(request.app.state.store, *_split(cookie))
