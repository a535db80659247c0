"""Identifiers: the names of namespaces, containers, leases and execs follow containerd's identifiers
package (letters and digits, single `.`, `_` or `-` between them, at most 76 characters), so that they are
safe as path components, in labels and in cgroup paths."""

from __future__ import annotations

import re

from ctrpy.runtime import errors

MAX_LENGTH = 76
PATTERN = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
# What an OCI runtime accepts as a container ID (runc's rule, which the built-in runtime follows as a drop-in
# runtime): wider than ctrpy's own IDs, because other tools call runtimes with their own names.
RUNTIME_ID_PATTERN = re.compile(r"^[\w+.-]{1,128}$")


def valid(name: str) -> bool:
    return bool(name) and len(name) <= MAX_LENGTH and PATTERN.match(name) is not None


def validate(name: str, what: str) -> str:
    """`name` if it is a valid identifier, else InvalidArgument naming `what` ("container id", ...)."""
    if not valid(name):
        raise errors.InvalidArgument(
            f"invalid {what} {name!r}: use letters, digits and single '.', '_' or '-' between them "
            f"(at most {MAX_LENGTH} characters)")
    return name
