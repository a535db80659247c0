"""cffi build script for ctrpy's C helper (out-of-line API mode), run by `pip install` via setup.py.

The cdef below is the whole C surface Python sees; keep it in step with csrc/helper.h.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = """
typedef struct { int errno_; char msg[256]; } ctrpy_err_t;
const char *ctrpy_helper_version (void);
"""


def _require_compiler() -> None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.stderr.write(
            f"error: ctrpy needs a C compiler to build its helper, and {cc!r} was not found.\n"
            "       On Debian/Ubuntu: apt-get install gcc python3-dev\n"
        )
        raise SystemExit(1)


_require_compiler()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ctrpy._helper",
    '#include "helper.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "helper.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
