"""The console script exits without Python's finalization (commands.main: 10-15 ms of CPU per command):
what a user sees must not change. The database is closed (its WAL checkpointed and removed) when the command
ends, buffered output reaches a pipe in full, and exit statuses pass through."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import CTRPY, cleanup, rootfs  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")


def test_database_is_closed_when_the_command_ends(ctrpy: Any, dirs: Any) -> None:
    r = ctrpy("namespaces", "create", "exit-test")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dirs.root.glob("meta.db*")) == ["meta.db", "meta.db.reserve"]


def test_piped_output_and_status_pass_through(dirs: Any, rootfs: Path) -> None:
    env = {"CTRPY_CONFIG": str(dirs.root.parent / "config.toml"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "run", "--rm", "--rootfs",
                        str(rootfs), "big", "sh", "-c", "yes | head -c 300000; exit 7"],
                       capture_output=True, env=env, timeout=60)
    assert (r.returncode, len(r.stdout)) == (7, 300000), r.stderr
    r = subprocess.run([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "containers", "ls"],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.decode().startswith("CONTAINER"), r.stderr
