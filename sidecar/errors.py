"""Errors the service answers callers with, each with a stable `code` and HTTP status.

    SidecarError                     answered as {"error": {type, code, message, param}}
    ├── BadRequest          400      malformed JSON, a body that does not fit the wire model
    ├── Unauthorized        401      missing or wrong bearer key
    ├── NotFound            404      unknown route or resource
    │   └── ToolNotFound    404      a tool reference that matches no tool
    ├── MethodNotAllowed    405
    ├── Conflict            409      a key that is taken, a read-only (manifest) tool
    ├── PayloadTooLarge     413      a body over the configured limit
    ├── TooManyRequests     429      a limit said no for now (Retry-After)
    ├── ShuttingDown        503      the service is stopping
    ├── StoreUnavailable    503      the database cannot answer now (Retry-After)
    └── ManifestError       422      a manifest or tool definition that does not validate

Failures of a tool that ran are not raised through here: they are `tools.base.ToolError`s
and come back as a `Failed` outcome the model can read.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Conflict",
    "ManifestError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ShuttingDown",
    "SidecarError",
    "StoreUnavailable",
    "TooManyRequests",
    "ToolNotFound",
    "Unauthorized",
]


class SidecarError(Exception):
    """An error answered to the caller."""

    status = 500
    type = "api_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def with_message(self, message: str) -> SidecarError:
        """A copy of this error (its class, code and param) that says `message` instead.

        For a redacted copy: the error raised stays as it was.
        """
        # Not `copy.copy`: it would call `__init__` again, with the message as its arguments.
        changed = type(self).__new__(type(self), message)
        changed.__dict__.update(self.__dict__)
        changed.message = message
        changed.args = (message,)
        return changed


class BadRequest(SidecarError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(SidecarError):
    status = 401
    type = "authentication_error"
    code = "unauthorized"


class NotFound(SidecarError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ToolNotFound(NotFound):
    code = "tool_not_found"


class MethodNotAllowed(SidecarError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(SidecarError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(SidecarError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class TooManyRequests(SidecarError):
    """A limit said no for now: answered 429 with `Retry-After` (whole seconds)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class ShuttingDown(SidecarError):
    """The service is stopping: new work is refused, work cut at the end of the grace."""

    status = 503
    type = "api_error"
    code = "shutting_down"


class StoreUnavailable(SidecarError):
    """The database (SQLite file, PostgreSQL) cannot answer now: down, restarting, full."""

    status = 503
    type = "api_error"
    code = "store_unavailable"


class ManifestError(SidecarError):
    status = 422
    type = "invalid_request_error"
    code = "invalid_tool_definition"
