"""Compile the per-task supervisor (supervisor.c) into a standalone executable; called by setup.py's build_ext.

A plain program, not a Python extension: it must run without an interpreter (about 0.3 MB per task).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["supervisor.c"]


def _compiler() -> str:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.stderr.write(
            f"error: ctrpy needs a C compiler to build its supervisor, and {cc!r} was not found.\n"
            "       On Debian/Ubuntu: apt-get install gcc python3-dev\n"
        )
        raise SystemExit(1)
    return cc


def compile_supervisor(target: str) -> None:
    cc = _compiler()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-std=gnu11", "-o", target] + [os.path.join(HERE, s) for s in SOURCES] + ["-ldl"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"error: cannot compile the ctrpy supervisor:\n{r.stderr}")
        raise SystemExit(1)


if __name__ == "__main__":
    compile_supervisor(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "ctrpy", "ctrpy-supervisor"))
