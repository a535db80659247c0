"""Compile ctrpy's standalone executables; called by setup.py's build_ext.

- supervisor.c -> ctrpy-supervisor, one per task: a plain program, not a Python extension, as it must run
  without an interpreter (about 0.3 MB per task).
- init.c -> ctrpy-init, `run --init`'s PID 1: linked statically, because it is bind-mounted into images that
  may have no libc at all (busybox-static, scratch-based ones).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["supervisor.c"]
INIT_SOURCES = ["init.c"]


def _compiler() -> list[str]:
    """CC as a command: the compiler and the flags CC carries (e.g. --sysroot), as make and setuptools take it."""
    words = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cc = words[0]
    if shutil.which(cc) is None:
        sys.stderr.write(
            f"error: ctrpy needs a C compiler to build its supervisor, and {cc!r} was not found.\n"
            "       On Debian/Ubuntu: apt-get install gcc python3-dev\n"
        )
        raise SystemExit(1)
    return words


def compile_supervisor(target: str) -> None:
    cc = _compiler()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    cmd = cc + ["-O2", "-Wall", "-std=gnu11", "-o", target] + [os.path.join(HERE, s) for s in SOURCES] + ["-ldl"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"error: cannot compile the ctrpy supervisor:\n{r.stderr}")
        raise SystemExit(1)


def compile_init(target: str) -> None:
    cc = _compiler()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    cmd = cc + ["-static", "-O2", "-s", "-Wall", "-std=gnu11", "-o", target]
    cmd += [os.path.join(HERE, s) for s in INIT_SOURCES]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"error: cannot compile ctrpy-init statically (it needs libc.a: on Debian/Ubuntu, "
                         f"apt-get install libc6-dev):\n{r.stderr}")
        raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--init"]:
        compile_init(sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "ctrpy", "ctrpy-init"))
    else:
        compile_supervisor(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "ctrpy", "ctrpy-supervisor"))
