"""Installation: the helper's build script fails clearly without a compiler; the package runs as a module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_missing_compiler_gives_a_clear_install_error(tmp_path: Path) -> None:
    # What `pip install .` runs through setup.py's cffi_modules, with a compiler that does not exist.
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    r = subprocess.run([sys.executable, str(ROOT / "csrc" / "build_helper.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "ctrpy needs a C compiler to build its helper" in r.stderr
    assert "apt-get install gcc python3-dev" in r.stderr
    assert "Traceback" not in r.stderr


def test_python_dash_m_ctrpy_and_helper_version() -> None:
    r = subprocess.run([sys.executable, "-m", "ctrpy", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ctrpy ")
    from ctrpy._helper import ffi, lib

    helper = ffi.string(lib.ctrpy_helper_version()).decode()
    r = subprocess.run([sys.executable, "-m", "ctrpy", "version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert helper in r.stdout


def test_supervisor_build_without_compiler_is_a_clear_error(tmp_path: Path) -> None:
    # What setup.py's build_ext runs after the helper (pip install . and pip install -e . alike).
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    r = subprocess.run([sys.executable, str(ROOT / "csrc" / "build_supervisor.py"), str(tmp_path / "sup")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "ctrpy needs a C compiler to build its supervisor" in r.stderr
    assert "Traceback" not in r.stderr


def test_supervisor_is_built_and_installed_with_the_package() -> None:
    from ctrpy.runtime import supervisor

    path = Path(supervisor.binary())
    assert path.parent == Path(supervisor.__file__).resolve().parent.parent  # inside the ctrpy package
    assert path.read_bytes()[:4] == b"\x7fELF"
    r = subprocess.run([str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "started by ctrpy" in r.stderr
def _elf_interpreter(path: Path) -> bool:
    """Whether the ELF executable at `path` names a dynamic loader (a PT_INTERP program header)."""
    import struct

    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # 64-bit
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def test_init_is_built_static_with_the_package() -> None:
    from ctrpy.runtime import dockerrun, supervisor

    path = Path(dockerrun.INIT_BINARY)
    assert path.parent == Path(supervisor.binary()).parent and path.name == "ctrpy-init"
    assert not _elf_interpreter(path)  # runs in images without any libc
    assert _elf_interpreter(Path(supervisor.binary()))  # the check can tell: the supervisor is dynamic
    r = subprocess.run([str(path)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 125 and r.stderr == "usage: ctrpy-init [-g] [--] PROGRAM [ARG...]\n"


def test_init_build_without_a_static_libc_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "CC": f"gcc --sysroot={tmp_path / 'empty-sysroot'}"}
    r = subprocess.run([sys.executable, str(ROOT / "csrc" / "build_supervisor.py"), "--init", str(tmp_path / "init")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot compile ctrpy-init statically" in r.stderr and "apt-get install libc6-dev" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "init").exists()


def test_missing_libseccomp_gives_a_clear_install_error(tmp_path: Path) -> None:
    # A compiler that finds no system headers or libraries: as on a machine without libseccomp-dev.
    env = {**os.environ, "CC": f"gcc --sysroot={tmp_path / 'empty-sysroot'}"}
    r = subprocess.run([sys.executable, str(ROOT / "csrc" / "build_helper.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "apt-get install libseccomp-dev" in r.stderr
    assert "Traceback" not in r.stderr
