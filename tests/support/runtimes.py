"""The runtimes container tests run under: the built-in one, runc and crun, each probed once.

A runtime that cannot run containers on this machine is skipped with its own one-line error (crun 1.8.1
refuses hybrid cgroup hierarchies: see ../shared/MACHINE.md); the built-in one is skipped while
ctrpy/runtime/builtin.py is absent.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.bundle import make_rootfs

RUNTIMES = ["ctrpy", "runc", "crun"]
CTRPY = str(Path(sys.executable).parent / "ctrpy")


@functools.lru_cache(maxsize=None)
def unusable(name: str) -> str | None:
    """Why `name` cannot run a container here, or None."""
    if name == "ctrpy" and importlib.util.find_spec("ctrpy.runtime.builtin") is None:
        return "the built-in runtime (ctrpy/runtime/builtin.py) is not there yet"
    if name != "ctrpy" and shutil.which(name) is None:
        return f"{name} is not installed"
    with tempfile.TemporaryDirectory(prefix="ctrpy-probe-") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        (Path(tmp) / "config.toml").write_text('[network]\ndefault = "none"\n')
        env = {**os.environ, "CTRPY_CONFIG": str(Path(tmp) / "config.toml")}
        r = subprocess.run([CTRPY, "--root", f"{tmp}/root", "--state", f"{tmp}/state", "run", "--rm",
                            "--runtime", name, "--rootfs", str(rootfs), "probe", "true"],
                           capture_output=True, text=True, env=env, timeout=60)
        subprocess.run(["umount", "-R", "-l", tmp], capture_output=True)
    if r.returncode != 0:
        return f"{name} cannot run containers here: {r.stderr.strip()}"
    return None


def hybrid_cgroup2_controllers() -> str:
    """Controllers the hybrid layout's cgroup2 mount holds (crun 1.8 refuses to run when any)."""
    try:
        return Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(params=RUNTIMES)
def runtime(request: Any) -> str:
    """Each runtime name in turn; skipped with the runtime's own reason where it cannot run."""
    reason = unusable(request.param)
    if reason:
        pytest.skip(reason)
    if request.param == "crun" and hybrid_cgroup2_controllers():
        # Checked per test: the layout can change under a running suite (a benchmark moving hugetlb).
        pytest.skip("crun cannot run containers here: cgroups in hybrid mode not supported "
                    f"(cgroup2 holds {hybrid_cgroup2_controllers()})")
    return str(request.param)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A fresh busybox root filesystem for this test."""
    return make_rootfs(tmp_path / "rootfs")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def cleanup(ctrpy: Any, dirs: Any) -> Any:
    """Delete every container (killing tasks) on teardown, even when the test failed; then kill by pid
    whatever a broken task left (the supervisor and init pids recorded in the test's own state dir).
    Each test gets its own cgroup parent, so suites running side by side never share a task cgroup."""
    parent = f"ctrpy-test-{uuid.uuid4().hex[:10]}"
    # No bridge for these tests (the network tests cover it): a private network namespace with lo only.
    (dirs.root.parent / "config.toml").write_text(f'[cgroup]\nparent = "{parent}"\n\n[network]\ndefault = "none"\n')
    yield parent
    for ns in ("default", "other"):
        r = ctrpy("containers", "ls", "-q", namespace=ns)
        for cid in r.stdout.split():
            ctrpy("containers", "rm", "--force", cid, namespace=ns)
    for pid_file in list(dirs.state.glob("*/*/supervisor.pid")) + list(dirs.state.glob("*/*/init.pid")):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            os.kill(pid, 9)
    for hierarchy in cgroup_hierarchies():
        for d in sorted((hierarchy / parent).glob("**/"), key=lambda p: len(str(p)), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass


def cgroup_hierarchies() -> list[Path]:
    """Mounted cgroup hierarchies (v1 controllers, or the v2 root)."""
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] in ("cgroup", "cgroup2"):
                out.append(Path(fields[1]))
    return out


def cgroup_dirs(cid: str, namespace: str = "default") -> list[Path]:
    """The task cgroups of `cid` that exist in any mounted hierarchy."""
    return [p for h in cgroup_hierarchies() for p in h.glob(f"ctrpy*/{namespace}-{cid}")]
