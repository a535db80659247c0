"""Killed commands leave nothing behind (issue 11): `containers run` (ctr's shape, a fixed ID), `run` (docker's
shape, a generated ID) and `containers rm` SIGKILLed at each step (through the CTRPY_TEST_KILL_AT hook,
deterministic points in ctrpy.runtime.tasks) or at a few delays; the next command (`rm -f`, `containers run` of
the same id, `gc`) repairs everything: no process, mount, cgroup or state dir."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import CTRPY, cgroup_dirs, cleanup  # noqa: F401 - fixtures
from support.store import busybox_image, busybox_layout  # noqa: F401 - the image and layout fixtures

pytestmark = pytest.mark.usefixtures("cleanup")


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def processes_of(dirs: Any) -> list[int]:
    """Live processes whose command line names the test's state or root directory (supervisors, launchers)
    or that sit in the test's cgroups (container inits)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(dirs.state).encode() in cmdline or str(dirs.root).encode() in cmdline):
            out.append(int(entry))
    return out


def assert_clean(ctrpy: Any, dirs: Any, cid: str) -> None:
    deadline = time.monotonic() + 5
    while processes_of(dirs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(dirs) == []
    assert mounts_under(dirs.state) == []
    assert cgroup_dirs(cid) == []
    assert not (dirs.state / "default" / cid).exists()
    assert cid not in ctrpy("snapshots", "ls", "-q").stdout.split()


def killed_run(dirs: Any, point: str, cid: str, docker: bool = False) -> int:
    """`containers run -d bb CID sleep 60` (or docker's `run -d --name CID bb sleep 60`) killed at `point`."""
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml"), "CTRPY_TEST_KILL_AT": point}
    shape = ["run", "-d", "--name", cid, "bb"] if docker else ["containers", "run", "-d", "bb", cid]
    r = subprocess.run([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), *shape, "sleep", "60"],
                       env=env, capture_output=True, timeout=60)
    return r.returncode


RUN_POINTS = ["create-after-prepare", "create-after-mkdir", "create-before-launch", "create-after-launch"]


@pytest.mark.parametrize("point", RUN_POINTS)
def test_run_killed_then_rm_force_repairs(ctrpy: Any, dirs: Any, image: str, point: str) -> None:
    assert killed_run(dirs, point, "k1") == -9
    # `rm -f` of the container (or, killed before the record was written, a new `run` of the id) repairs.
    if ctrpy("containers", "ls", "-q").stdout.split() == ["k1"]:
        r = ctrpy("containers", "rm", "-f", "k1")
        assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "ls", "-q").stdout.split() == []
    r = ctrpy("containers", "run", "--rm", "bb", "k1", "echo", "again")
    assert (r.returncode, r.stdout) == (0, "again\n"), r.stderr
    assert_clean(ctrpy, dirs, "k1")


@pytest.mark.parametrize("point", ["create-after-prepare", "create-after-launch"])
def test_run_killed_then_gc_repairs(ctrpy: Any, dirs: Any, image: str, point: str) -> None:
    assert killed_run(dirs, point, "k2") == -9
    ctrpy("containers", "rm", "-f", "k2")  # whatever the record, the rest is gc's
    r = ctrpy("gc", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert_clean(ctrpy, dirs, "k2")


@pytest.mark.parametrize("point", RUN_POINTS)
def test_docker_run_killed_then_rm_and_gc_repair(ctrpy: Any, dirs: Any, image: str, point: str) -> None:
    """docker's shape: the ID is generated, so a new `run --name` cannot meet the leftovers; `rm -f NAME` (when
    the record was written) and `gc` clear them, and the name is free again."""
    assert killed_run(dirs, point, "k6", docker=True) == -9
    # The container's rootfs snapshot is keyed by its generated ID (64 hex digits; layers are keyed otherwise).
    ids = [k for k in ctrpy("snapshots", "ls", "-q").stdout.split() if re.fullmatch("[0-9a-f]{64}", k)]
    assert len(ids) == 1, ids
    cid = ids[0]
    if ctrpy("containers", "ls", "-q").stdout.split():
        assert ctrpy("containers", "ls", "-q").stdout.split() == [cid]
        r = ctrpy("rm", "-f", "k6")
        assert r.returncode == 0, r.stderr
    r = ctrpy("gc")
    assert r.returncode == 0, r.stderr
    assert_clean(ctrpy, dirs, cid)
    r = ctrpy("run", "--rm", "--name", "k6", "bb", "echo", "again")
    assert (r.returncode, r.stdout) == (0, "again\n"), r.stderr
    assert ctrpy("containers", "ls", "-q").stdout == ""


def test_run_killed_then_run_same_id(ctrpy: Any, dirs: Any, image: str) -> None:
    """Killed after preparing the rootfs snapshot, before the record: the id is free again at once."""
    assert killed_run(dirs, "create-after-prepare", "k3") == -9
    assert ctrpy("containers", "ls", "-q").stdout.split() == []
    r = ctrpy("containers", "run", "--rm", "bb", "k3", "true")
    assert r.returncode == 0, r.stderr
    assert_clean(ctrpy, dirs, "k3")


@pytest.mark.parametrize("point", ["rm-after-task", "rm-after-unref", "rm-after-snapshot"])
def test_rm_killed_then_rm_and_run_repair(ctrpy: Any, dirs: Any, image: str, point: str) -> None:
    assert ctrpy("containers", "run", "-d", "bb", "k4", "sleep", "60").returncode == 0
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml"), "CTRPY_TEST_KILL_AT": point}
    r = subprocess.run([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "containers", "rm", "-f",
                        "k4"], env=env, capture_output=True, timeout=60)
    assert r.returncode == -9
    assert ctrpy("containers", "rm", "-f", "k4").returncode in (0, 4)  # 4: the record was already gone
    r = ctrpy("containers", "run", "--rm", "bb", "k4", "echo", "back")
    assert (r.returncode, r.stdout) == (0, "back\n"), r.stderr
    assert_clean(ctrpy, dirs, "k4")


@pytest.mark.parametrize("delay", [0.15, 0.3])
def test_run_killed_at_delays(ctrpy: Any, dirs: Any, image: str, delay: float) -> None:
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    p = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "containers", "run", "-d",
                          "bb", "k5", "sleep", "60"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    ctrpy("containers", "rm", "-f", "k5")
    ctrpy("gc")
    assert ctrpy("containers", "ls", "-q").stdout.split() == []
    assert_clean(ctrpy, dirs, "k5")
    # The id is usable at once.
    r = ctrpy("containers", "run", "--rm", "bb", "k5", "true")
    assert r.returncode == 0, r.stderr
    assert_clean(ctrpy, dirs, "k5")
