"""cffi build script for ctrpy's C helper (out-of-line API mode), run by `pip install` via setup.py.

The cdef is read from the headers (csrc/cffi_cdef.py): what they mark with /* cffi:begin */ ... /* cffi:end */
is the whole C surface Python sees, declared once.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

# Constants of the system headers that Python reads through the helper (the values come from the compiler).
SYSTEM_CONSTANTS = (
    "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID", "CLONE_NEWNET",
    "CLONE_NEWCGROUP", "CLONE_NEWTIME",
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
)


def cdef() -> str:
    """The whole C surface Python sees: the headers' cffi regions, then the system constants."""
    sys.path.insert(0, HERE)
    try:
        from cffi_cdef import cdef_from_headers
    finally:
        sys.path.remove(HERE)
    return cdef_from_headers(HERE) + "".join(f"#define {name} ...\n" for name in SYSTEM_CONSTANTS)


def _require_compiler() -> None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.stderr.write(
            f"error: ctrpy needs a C compiler to build its helper, and {cc!r} was not found.\n"
            "       On Debian/Ubuntu: apt-get install gcc python3-dev\n"
        )
        raise SystemExit(1)


def _require_libseccomp() -> None:
    """libseccomp compiles the seccomp profiles: without its header and library (as the compiler sees
    them), say which package to install instead of failing half way through the build."""
    import subprocess
    import tempfile

    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(cc + ["-x", "c", "-", "-lseccomp", "-o", os.path.join(tmp, "probe")],
                           input="#include <seccomp.h>\nint main (void) { return seccomp_api_get () < 0; }\n",
                           capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(
            "error: ctrpy's helper applies seccomp profiles with libseccomp, and the compiler cannot find it\n"
            "       (seccomp.h, -lseccomp). On Debian/Ubuntu: apt-get install libseccomp-dev\n"
        )
        raise SystemExit(1)


_require_compiler()
_require_libseccomp()

ffibuilder = FFI()
ffibuilder.cdef(cdef())
ffibuilder.set_source(
    "ctrpy._helper",
    '#define _GNU_SOURCE\n#include <sched.h>\n#include <linux/seccomp.h>\n#include "helper.h"\n'
    '#include "hooks.h"\n#include "inroot.h"\n#include "seccomp_profile.h"\n#include "bpf_devices.h"\n'
    '#include "pause.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, name))
             for name in ("helper.c", "error.c", "hooks.c", "inroot.c", "seccomp.c", "userns.c", "pause.c",
                         "bpf_devices.c")],
    libraries=["seccomp"],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
