"""The one error hierarchy of ctrpy, shaped like containerd's errdefs.

    CtrpyError                 exit 1   (gRPC UNKNOWN)
    ├── InvalidArgument        exit 3   (INVALID_ARGUMENT)  bad reference, bad flag value, malformed input
    ├── NotFound               exit 4   (NOT_FOUND)
    ├── AlreadyExists          exit 5   (ALREADY_EXISTS)
    ├── FailedPrecondition     exit 6   (FAILED_PRECONDITION)  digest mismatch, object in use, wrong state
    ├── Unavailable            exit 7   (UNAVAILABLE)  registry unreachable, runtime binary missing
    ├── PermissionDenied       exit 8   (PERMISSION_DENIED)  not root, registry refused credentials
    ├── DeadlineExceeded       exit 9   (DEADLINE_EXCEEDED)  stalled transfer, timeout
    ├── NotImplemented         exit 10  (UNIMPLEMENTED)
    ├── Internal               exit 11  (INTERNAL)  corrupt store, helper failure without errno
    └── Aborted                exit 12  (ABORTED)  concurrent modification lost a race

`run` reserves 125 (runtime failure), 126 (cannot exec), 127 (command not found), as docker/podman do;
a task's own exit status is passed through; 130 means interrupted (Ctrl-C).

Call sites add context and keep the class: ``raise NotFound(f"image {ref!r}")``. The CLI root prints
``ctrpy: <message>`` and exits with ``exit_code``; the CRI server maps ``grpc_code``.
"""

from __future__ import annotations

import errno as _errno
import os as _os

EXIT_OK = 0
EXIT_GENERIC = 1
EXIT_USAGE = 2
EXIT_RUNTIME_FAILURE = 125
EXIT_CANNOT_EXEC = 126
EXIT_COMMAND_NOT_FOUND = 127
EXIT_INTERRUPTED = 130


class CtrpyError(Exception):
    """Base class: every error ctrpy raises on purpose."""

    exit_code = EXIT_GENERIC
    grpc_code = "UNKNOWN"
    kind = "error"

    def __init__(self, message: str = "", *, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message or self.kind


class InvalidArgument(CtrpyError):
    exit_code = 3
    grpc_code = "INVALID_ARGUMENT"
    kind = "invalid argument"


class NotFound(CtrpyError):
    exit_code = 4
    grpc_code = "NOT_FOUND"
    kind = "not found"


class AlreadyExists(CtrpyError):
    exit_code = 5
    grpc_code = "ALREADY_EXISTS"
    kind = "already exists"


class FailedPrecondition(CtrpyError):
    exit_code = 6
    grpc_code = "FAILED_PRECONDITION"
    kind = "failed precondition"


class Unavailable(CtrpyError):
    exit_code = 7
    grpc_code = "UNAVAILABLE"
    kind = "unavailable"


class PermissionDenied(CtrpyError):
    exit_code = 8
    grpc_code = "PERMISSION_DENIED"
    kind = "permission denied"


class DeadlineExceeded(CtrpyError):
    exit_code = 9
    grpc_code = "DEADLINE_EXCEEDED"
    kind = "deadline exceeded"


class NotImplemented_(CtrpyError):
    exit_code = 10
    grpc_code = "UNIMPLEMENTED"
    kind = "not implemented"


class Internal(CtrpyError):
    exit_code = 11
    grpc_code = "INTERNAL"
    kind = "internal error"


class Aborted(CtrpyError):
    exit_code = 12
    grpc_code = "ABORTED"
    kind = "aborted"


ALL_ERRORS: tuple[type[CtrpyError], ...] = (
    CtrpyError,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    PermissionDenied,
    DeadlineExceeded,
    NotImplemented_,
    Internal,
    Aborted,
)

_ERRNO_CLASSES: dict[int, type[CtrpyError]] = {
    _errno.ENOENT: NotFound,
    _errno.ESRCH: NotFound,
    _errno.EEXIST: AlreadyExists,
    _errno.EINVAL: InvalidArgument,
    _errno.ENAMETOOLONG: InvalidArgument,
    _errno.EPERM: PermissionDenied,
    _errno.EACCES: PermissionDenied,
    _errno.EBUSY: FailedPrecondition,
    _errno.ENOTEMPTY: FailedPrecondition,
    _errno.ENOTDIR: FailedPrecondition,
    _errno.EISDIR: FailedPrecondition,
    _errno.EAGAIN: Unavailable,
    _errno.ECONNREFUSED: Unavailable,
    _errno.ETIMEDOUT: DeadlineExceeded,
    _errno.ENOSYS: NotImplemented_,
    _errno.EOPNOTSUPP: NotImplemented_,
    _errno.ENOSPC: Unavailable,
}


def from_errno(err: int, message: str) -> CtrpyError:
    """Map an errno (from the C helper or an OSError) to its error class, keeping the errno."""
    cls = _ERRNO_CLASSES.get(err, Internal)
    text = f"{message}: {_os.strerror(err)}" if err else message
    return cls(text, errno=err)


def from_oserror(exc: OSError, context: str) -> CtrpyError:
    """Wrap an OSError raised while doing `context`."""
    target = f" {exc.filename}" if exc.filename else ""
    return from_errno(exc.errno or 0, f"{context}{target}")
