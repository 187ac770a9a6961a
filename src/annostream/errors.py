"""One exception hierarchy for the whole package.

Every error carries the HTTP status it maps to and a stable ``code``, so the server can
render it as ``{"error": {"code", "message", "detail"}}`` and the HTTP client can raise the
very same class again on the other side of the wire.
"""

from __future__ import annotations

from typing import Any


class AnnostreamError(Exception):
    """Base class: a message for people, a code for programs, a detail for both."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class QueryError(AnnostreamError):
    """A query that does not parse or names something the project does not have."""

    status = 400
    code = "bad_query"


class BadRequest(AnnostreamError):
    status = 400
    code = "bad_request"


class Unauthorized(AnnostreamError):
    """No credentials, or credentials that match no live key."""

    status = 401
    code = "unauthorized"


class Forbidden(AnnostreamError):
    """Valid credentials that do not grant this operation on this project."""

    status = 403
    code = "forbidden"


class NotFound(AnnostreamError):
    status = 404
    code = "not_found"


class Conflict(AnnostreamError):
    status = 409
    code = "conflict"


class InvalidInput(AnnostreamError):
    """Well-formed request whose content is invalid; ``detail`` names the field or record."""

    status = 422
    code = "invalid"


class PayloadTooLarge(AnnostreamError):
    """A body over its route family's size cap, or an image over the pixel limit; ``detail``
    names the limit."""

    status = 413
    code = "too_large"


class TooCostly(QueryError):
    """A query over the cost budget, or one that ran past the statement timeout."""

    code = "too_costly"


class TooManyRequests(AnnostreamError):
    """Over a per-caller concurrency cap; ``retry_after`` seconds is a fair wait."""

    status = 429
    code = "too_many_requests"
    retry_after = 1


class TransportError(AnnostreamError):
    """The server could not be reached, or kept failing after bounded retries."""

    status = 503
    code = "unavailable"


ERRORS_BY_CODE: dict[str, type[AnnostreamError]] = {
    cls.code: cls
    for cls in (
        AnnostreamError,
        QueryError,
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        InvalidInput,
        PayloadTooLarge,
        TooCostly,
        TooManyRequests,
        TransportError,
    )
}


def from_payload(status: int, payload: Any) -> AnnostreamError:
    """Rebuild the exception the server raised from its JSON error body."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        cls = ERRORS_BY_CODE.get(err.get("code", ""), AnnostreamError)
        exc = cls(str(err.get("message", "")), err.get("detail"))
    else:
        exc = AnnostreamError(f"HTTP {status}: {str(payload)[:200]}")
    exc.status = status
    return exc
