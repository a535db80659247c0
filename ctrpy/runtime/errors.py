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
    ├── Internal               exit 11  (INTERNAL)  corrupt store, helper failure without errno, a bug
    ├── Aborted                exit 12  (ABORTED)  concurrent modification lost a race
    └── NoSpace                exit 13  (RESOURCE_EXHAUSTED)  ENOSPC/EDQUOT: the disk or a quota is full

`EXIT_CODES` below is the one table of exit codes; README's table is tested against it (tests/test_errors.py).

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


class NoSpace(CtrpyError):
    """The file system (or a quota) ran out of space. The message says where; the store stays usable: free
    space and run the next command (partial ingests stay resumable, `gc` removes abandoned ones)."""

    exit_code = 13
    grpc_code = "RESOURCE_EXHAUSTED"
    kind = "no space left on device"

    def __init__(self, message: str = "", *, errno: int | None = None) -> None:
        text = message or self.kind
        if "no space left on device" not in text.lower() and "quota exceeded" not in text.lower():
            text = f"{text}: no space left on device"
        super().__init__(text, errno=errno if errno is not None else _errno.ENOSPC)


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
    NoSpace,
)

# code -> meaning: README's exit-code table, row by row (tests/test_errors.py checks README against it).
EXIT_CODES: dict[int | tuple[int, ...], str] = {
    EXIT_OK: "success",
    EXIT_GENERIC: "generic error",
    EXIT_USAGE: "usage error (bad flags or arguments)",
    InvalidArgument.exit_code: "invalid argument (bad reference, malformed input or config)",
    NotFound.exit_code: "not found",
    AlreadyExists.exit_code: "already exists",
    FailedPrecondition.exit_code: "failed precondition (digest mismatch, object in use, wrong state)",
    Unavailable.exit_code: "unavailable (registry unreachable, runtime binary missing, store busy)",
    PermissionDenied.exit_code: "permission denied (not root, credentials refused)",
    DeadlineExceeded.exit_code: "deadline exceeded (stalled transfer, timeout)",
    NotImplemented_.exit_code: "not implemented",
    Internal.exit_code: "internal error (a bug: please report it with the `--debug` traceback)",
    Aborted.exit_code: "aborted (lost a race with a concurrent command)",
    NoSpace.exit_code: "no space left on device (disk or quota full; free space and retry)",
    (EXIT_RUNTIME_FAILURE, EXIT_CANNOT_EXEC, EXIT_COMMAND_NOT_FOUND):
        "`run`: runtime failure / cannot execute / command not found (as docker and podman)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_table() -> str:
    """EXIT_CODES as the Markdown table README.md shows."""
    rows = ["| code | meaning |", "|---|---|"]
    for code, meaning in EXIT_CODES.items():
        label = " / ".join(str(c) for c in code) if isinstance(code, tuple) else str(code)
        rows.append(f"| {label} | {meaning} |")
    return "\n".join(rows) + "\n"

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
    _errno.ENOSPC: NoSpace,
    _errno.EDQUOT: NoSpace,
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


def is_no_space(exc: BaseException) -> bool:
    """An OSError (or SQLite's SQLITE_FULL) that means the disk or a quota is full."""
    if isinstance(exc, OSError):
        return exc.errno in (_errno.ENOSPC, _errno.EDQUOT)
    return "database or disk is full" in str(exc)


def no_space(where: str, path: object = None) -> NoSpace:
    """The one message for a full disk: what ran out of space, and on which path."""
    on = f" ({path})" if path else ""
    return NoSpace(f"{where}{on}: no space left on device")
