"""Domain exceptions: one root, names that say what went wrong.

Services raise these; only ``api/errors.py`` maps them to HTTP. Each class has a
stable machine ``code`` (clients switch on it) and its docstring is the default
message, so ``raise NotFound()`` still says something useful.
"""

from __future__ import annotations


class AutomationError(Exception):
    """The automation server could not do what was asked."""

    code = "error"

    def __init__(
        self, message: str | None = None, *, field: str | None = None, code: str | None = None
    ) -> None:
        self.detail = message or (self.__doc__ or self.code).strip()
        self.field = field
        if code is not None:
            self.code = code
        super().__init__(self.detail)


class BadRequest(AutomationError):
    """The request could not be read."""

    code = "bad_request"


class Invalid(AutomationError):
    """The request was read but breaks a rule."""

    code = "invalid"


class InvalidArchive(Invalid):
    """The archive is not a safe, valid .tar.gz."""

    code = "invalid_archive"


class TooLarge(AutomationError):
    """The request body is larger than allowed."""

    code = "too_large"


class Unauthorized(AutomationError):
    """A valid API key is required: send 'Authorization: Bearer ak_...'."""

    code = "unauthorized"


class Forbidden(AutomationError):
    """This API key's scope does not allow the action."""

    code = "forbidden"


class NotFound(AutomationError):
    """Not found."""

    code = "not_found"


class Conflict(AutomationError):
    """The request conflicts with the current state."""

    code = "conflict"


class RateLimited(AutomationError):
    """Too many requests; retry later."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(AutomationError):
    """A backing service (database or object store) is unreachable."""

    code = "unavailable"


class SandboxError(AutomationError):
    """The sandbox could not run the code."""

    code = "sandbox_error"


class BlobMissing(AutomationError):
    """The object store has no object under that key."""

    code = "blob_missing"


class DigestMismatch(AutomationError):
    """Stored bytes no longer match their sha256 digest."""

    code = "digest_mismatch"
