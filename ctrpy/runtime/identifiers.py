"""Identifiers: the names of namespaces, containers, leases and execs follow containerd's identifiers
package (letters and digits, single `.`, `_` or `-` between them, at most 76 characters), so that they are
safe as path components, in labels and in cgroup paths."""

from __future__ import annotations

from ctrpy.runtime import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

MAX_LENGTH = 76
# The patterns are compiled on first use (module __getattr__): every command validates its namespace, and
# `re` is not otherwise imported on the listings' fast path (issue 17). valid() checks PATTERN by hand.
_PATTERNS = {
    "PATTERN": r"\A[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*\Z",
    # What an OCI runtime accepts as a container ID (runc's rule, which the built-in runtime follows as a
    # drop-in runtime): wider than ctrpy's own IDs, because other tools call runtimes with their own names.
    "RUNTIME_ID_PATTERN": r"\A[\w+.-]{1,128}\Z",
}
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_SEPARATORS = frozenset("._-")


def __getattr__(name: str) -> re.Pattern[str]:
    if name in _PATTERNS:
        import re

        value = globals()[name] = re.compile(_PATTERNS[name])
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def valid(name: str) -> bool:
    """PATTERN's rule: alphanumeric runs joined by single separators, at most MAX_LENGTH characters."""
    if not name or len(name) > MAX_LENGTH:
        return False
    if name[0] not in _ALNUM or name[-1] not in _ALNUM:
        return False
    previous_separator = False
    for ch in name:
        if ch in _SEPARATORS:
            if previous_separator:
                return False
            previous_separator = True
        elif ch in _ALNUM:
            previous_separator = False
        else:
            return False
    return True


def validate(name: str, what: str) -> str:
    """`name` if it is a valid identifier, else InvalidArgument naming `what` ("container id", ...)."""
    if not valid(name):
        raise errors.InvalidArgument(
            f"invalid {what} {name!r}: use letters, digits and single '.', '_' or '-' between them "
            f"(at most {MAX_LENGTH} characters)")
    return name
