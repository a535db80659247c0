"""`run --rm` mounts its overlay root filesystem `volatile` (as podman does): the rootfs is thrown away when
the container exits, so overlayfs need not sync the upper layer's file system (which a plain overlay does
for the whole file system at unmount: the largest single cost of `run --rm` on a busy disk). A container that
outlives its task keeps a plain, durable overlay; a restarted `--rm` container mounts its rootfs again."""

from __future__ import annotations

from typing import Any

import pytest

from support.runtimes import cleanup  # noqa: F401 - fixture
from support.store import busybox_image, busybox_layout  # noqa: F401 - the image and layout fixtures

pytestmark = pytest.mark.usefixtures("cleanup")

# The super options of the container's root mount, as the container sees them.
ROOT_OPTIONS = "awk '$5 == \"/\" {print $NF}' /proc/self/mountinfo"


def is_volatile(options: str) -> bool:
    # Linux 6.x shows the option as fsync=volatile, older kernels as volatile.
    return bool({"volatile", "fsync=volatile"} & set(options.strip().split(",")))


def test_run_rm_rootfs_is_volatile_and_others_are_not(ctrpy: Any, image: str) -> None:
    r = ctrpy("run", "--rm", image, "sh", "-c", ROOT_OPTIONS)
    assert r.returncode == 0, r.stderr
    assert is_volatile(r.stdout), r.stdout
    r = ctrpy("run", "--name", "kept", image, "sh", "-c", ROOT_OPTIONS)
    assert r.returncode == 0, r.stderr
    assert "upperdir=" in r.stdout and not is_volatile(r.stdout), r.stdout


def test_restarted_rm_container_mounts_its_rootfs_again(ctrpy: Any, image: str) -> None:
    """The kernel refuses to mount a volatile upper layer twice (its marker says it may be torn); ctrpy
    clears the marker of a rootfs that is disposable anyway, and what the container wrote is still there."""
    assert ctrpy("run", "-d", "--rm", "--name", "again", image, "sleep", "60").returncode == 0
    assert ctrpy("exec", "again", "sh", "-c", "echo kept > /written").returncode == 0
    r = ctrpy("restart", "-t", "0", "again")
    assert r.returncode == 0, r.stderr
    r = ctrpy("exec", "again", "sh", "-c", f"cat /written; {ROOT_OPTIONS}")
    assert r.returncode == 0, r.stderr
    written, options = r.stdout.split()
    assert written == "kept" and is_volatile(options)
