"""A small tmpfs as a ctrpy root, to run out of space on purpose (`mount -t tmpfs -o size=20m`).

    def test_x(tmpfs_root):             # import the fixture: from support.fulldisk import tmpfs_root
        r = tmpfs_root.ctrpy("pull", ...)   # --root on the tmpfs, --state and config beside it
        tmpfs_root.fill()                    # take every free byte (a file under the tmpfs, not the root)
        tmpfs_root.unfill()
        tmpfs_root.free()                    # bytes free on the tmpfs

The tmpfs is unmounted in teardown even when the test fails (and whatever is mounted below it first).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

CTRPY = str(Path(sys.executable).parent / "ctrpy")


class TmpfsRoot:
    def __init__(self, mountpoint: Path, state: Path, size: str) -> None:
        self.mountpoint = mountpoint
        self.root = mountpoint / "root"
        self.state = state
        self.config = state.parent / "config.toml"
        self.filler = mountpoint / "filler"
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711", "tmpfs", str(mountpoint)],
                       check=True, capture_output=True)
        self.root.mkdir()

    def ctrpy(self, *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("CTRPY_NAMESPACE",)}
        env["CTRPY_CONFIG"] = str(self.config)
        return subprocess.run([CTRPY, "--root", str(self.root), "--state", str(self.state), *args],
                              capture_output=True, text=True, timeout=timeout, env=env, input=stdin)

    def free(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take all free space but `leave` bytes."""
        with open(self.filler, "ab") as f:
            block = bytes(1 << 20)
            while self.free() > leave + len(block):
                try:
                    f.write(block)
                    f.flush()
                except OSError:
                    break
            rest = self.free() - leave
            while rest > 0:
                try:
                    f.write(bytes(min(rest, 4096)))
                    f.flush()
                except OSError:
                    break
                rest = self.free() - leave

    def unfill(self) -> None:
        try:
            self.filler.unlink()
        except FileNotFoundError:
            pass

    def unmount(self) -> None:
        from conftest import unmount_all_under

        unmount_all_under(self.mountpoint)


@pytest.fixture
def tmpfs_root(tmp_path: Path) -> Iterator[TmpfsRoot]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    state = tmp_path / "small-state"
    state.mkdir()
    small = TmpfsRoot(mountpoint, state, "20m")
    try:
        yield small
    finally:
        small.unmount()
