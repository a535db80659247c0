"""The cffi declarations of the C helper, read from its headers (crun-style: the header is the one
declaration of each type and function; nothing is copied by hand into the binding).

Each header marks what Python sees between two comment lines, as many regions as it needs:

    /* cffi:begin */
    typedef struct { int errno_; char msg[256]; } ctrpy_err_t;
    /* cffi:end */

Inside a region, `#define NAME value` becomes `#define NAME ...` (cffi asks the compiler for the value),
other preprocessor lines and GCC `__attribute__ ((...))` are dropped, and everything else goes to cdef()
as written. Constants of system headers that Python needs (CLONE_NEW*, SECCOMP_FILTER_FLAG_*) are listed
in build_helper.py by name.

Imported by csrc/build_helper.py at build time and by tests/test_helper_cdef.py, which checks the built
module against the headers: no third-party imports here.
"""

from __future__ import annotations

import os
import re

BEGIN = "/* cffi:begin */"
END = "/* cffi:end */"
# In the order cdef() needs them: types before their users.
HEADERS = ("helper.h", "hooks.h", "inroot.h", "seccomp_profile.h", "bpf_devices.h", "pause.h")

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)\s+\S")


def _strip_attributes(text: str) -> str:
    out = []
    i = 0
    while True:
        j = text.find("__attribute__", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = text.index("(", j)
        depth = 0
        while True:
            if text[k] == "(":
                depth += 1
            elif text[k] == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1


def regions(text: str, name: str = "<header>") -> list[str]:
    """The text of every cffi region of a header, in order; ValueError for an unbalanced marker."""
    found = []
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if current is not None:
                raise ValueError(f"{name}:{number}: {BEGIN} inside a region")
            current = []
        elif stripped == END:
            if current is None:
                raise ValueError(f"{name}:{number}: {END} without {BEGIN}")
            found.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        raise ValueError(f"{name}: {BEGIN} never ended")
    return found


def to_cdef(region: str) -> str:
    """One region as cdef() takes it."""
    lines = []
    for line in _strip_attributes(region).splitlines():
        if line.lstrip().startswith("#"):
            m = _DEFINE.match(line)
            if m:
                lines.append(f"#define {m.group(1)} ...")
            continue
        lines.append(line)
    return "\n".join(lines)


def cdef_from_headers(directory: str, headers: tuple[str, ...] = HEADERS) -> str:
    """The cdef of every region of `headers` (in `directory`), in order."""
    parts = []
    for header in headers:
        with open(os.path.join(directory, header)) as f:
            text = f.read()
        for region in regions(text, header):
            parts.append(f"/* {header} */\n" + to_cdef(region))
    return "\n".join(parts) + "\n"
