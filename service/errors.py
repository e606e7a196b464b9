"""The itmstream exception tree and the HTTP status each one maps to.

Every error the service raises on purpose is an :class:`ItmError`. Each subclass also inherits the builtin a
caller would naturally catch (as PyAV's ``InvalidDataError(FFmpegError, ValueError)`` does), so code that
only knows Python still handles them sensibly::

    ItmError
    ├── InputError (ValueError)                 the request or its media is unusable: 422
    │   ├── UnsupportedFormatError              readable, but not something we convert: 415
    │   ├── CorruptStreamError                  truncated, damaged or not media at all: 422
    │   └── AlreadyHDRError                     tagged PQ or HLG: refusing to expand HDR again: 422
    ├── OutputError (OSError)                   the result could not be written: 500
    │   └── InsufficientStorageError            the disk is full (ENOSPC, EDQUOT): 507
    ├── OverloadedError                         queue full, come back later: 503 + Retry-After
    ├── DeadlineExceededError (TimeoutError)    the job ran past its deadline: 504
    ├── EngineError (RuntimeError)              encoder/operator/inference failure: 500
    └── JobCancelledError                       cancelled by the caller: 499 (client closed request)

Third-party errors are translated at the boundary of the module that imports the library (for PyAV,
:func:`service.video.errors.map_av_errors`), so nothing above that layer sees ``av.error.*``.
"""

import errno
from http import HTTPStatus


class ItmError(Exception):
    """Base of every error itmstream raises deliberately; its message is meant for a person."""


class InputError(ItmError, ValueError):
    """The input cannot be converted (missing, unreadable, unsupported or invalid options for it)."""


class UnsupportedFormatError(InputError):
    """The input is readable media but not a kind we convert (no video, odd sizes, unknown codec...)."""


class CorruptStreamError(InputError):
    """The input is damaged: not media at all, truncated, or with undecodable packets."""


class AlreadyHDRError(InputError):
    """The input is tagged PQ or HLG; expanding HDR again would be wrong, so it is refused, not passed on."""


class OutputError(ItmError, OSError):
    """The output could not be written (disk full, permissions, muxer refused the stream layout)."""


class InsufficientStorageError(OutputError):
    """The disk is full or over quota: a state of the server, not a bug, so 507 (RFC 4918 clause 11.5)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` or an error it was raised from is ENOSPC / EDQUOT (mapped errors keep the cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class OverloadedError(ItmError):
    """The service has no capacity now; the API answers 503 with ``Retry-After: retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(ItmError, TimeoutError):
    """The job did not finish within its deadline."""


class EngineError(ItmError, RuntimeError):
    """An internal stage (operator, encoder, inference engine) failed on valid input: a bug or a resource."""


class JobCancelledError(ItmError):
    """The caller cancelled the job; partial output has been removed."""


HTTP_STATUS: dict[type[ItmError], HTTPStatus | int] = {
    UnsupportedFormatError: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    CorruptStreamError: HTTPStatus.UNPROCESSABLE_ENTITY,
    AlreadyHDRError: HTTPStatus.UNPROCESSABLE_ENTITY,
    InputError: HTTPStatus.UNPROCESSABLE_ENTITY,
    InsufficientStorageError: HTTPStatus.INSUFFICIENT_STORAGE,
    OutputError: HTTPStatus.INTERNAL_SERVER_ERROR,
    OverloadedError: HTTPStatus.SERVICE_UNAVAILABLE,
    DeadlineExceededError: HTTPStatus.GATEWAY_TIMEOUT,
    EngineError: HTTPStatus.INTERNAL_SERVER_ERROR,
    JobCancelledError: 499,  # nginx's "client closed request"; HTTPStatus has no member for it
    ItmError: HTTPStatus.INTERNAL_SERVER_ERROR,
}
"""Status per error class; look errors up with :func:`http_status`, which walks the MRO."""


def http_status(exc: ItmError) -> int:
    """HTTP status for an error: the entry of its most specific class in :data:`HTTP_STATUS`."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return int(HTTP_STATUS[cls])
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)
