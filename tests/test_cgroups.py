"""ctrpy.runtime.cgroups on this host's real cgroup file systems (hybrid here; v1 and v2 code paths alike).

Every test makes its own cgroup under "ctrpy-test/", puts real processes in it and destroys it in a
finally, so nothing is left behind even when an assertion fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ctrpy.runtime import cgroups, errors
from ctrpy.runtime.cgroups import Cgroup


@pytest.fixture
def cg() -> Iterator[Cgroup]:
    group = Cgroup(f"ctrpy-test/cg-{uuid.uuid4().hex[:8]}")
    try:
        yield group
    finally:
        if group.exists():
            group.kill_all(signal.SIGKILL)
            group.destroy()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _mount_types() -> set[str]:
    types = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fstype = line.split(" - ")[1].split()[0]
        if fstype in ("cgroup", "cgroup2"):
            types.add(fstype)
    return types


def test_mode_matches_the_mounted_file_systems() -> None:
    types = _mount_types()
    expected = {frozenset({"cgroup"}): "v1", frozenset({"cgroup2"}): "v2",
                frozenset({"cgroup", "cgroup2"}): "hybrid"}[frozenset(types)]
    assert cgroups.mode() == expected
    if expected != "v2":
        # controllers are driven through v1 on hybrid hosts
        assert cgroups.layout().v1("memory") is not None and cgroups.layout().v1("pids") is not None


def test_paths_follow_runc(cg: Cgroup) -> None:
    own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    if cgroups.mode() != "v2":
        mem = cg._v1_dir("memory")
        assert mem == os.path.normpath(f"/sys/fs/cgroup/memory/{own['memory']}/{cg.path}")
    absolute = Cgroup("/ctrpy-test/abs")
    for mount_point, d in absolute.dirs.items():
        assert d == f"{mount_point}/ctrpy-test/abs"
    with pytest.raises(errors.InvalidArgument):
        Cgroup("ctrpy-test/../../escape")


def test_create_applies_limits(cg: Cgroup) -> None:
    cg.create({"memory": {"limit": 64 << 20}, "cpu": {"shares": 512, "quota": 50000, "period": 100000},
               "pids": {"limit": 42}})
    stats = cg.stats()
    assert stats["memory"]["limit"] == 64 << 20
    assert stats["pids"]["limit"] == 42
    if cgroups.mode() != "v2":
        cpu = Path(cg._v1_dir("cpu") or "")
        assert (cpu / "cpu.shares").read_text().strip() == "512"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        mem = Path(cg._v1_dir("memory") or "")
        if (mem / "memory.memsw.limit_in_bytes").exists():
            # no swap beyond the limit: the limit is the real limit
            assert int((mem / "memory.memsw.limit_in_bytes").read_text()) == 64 << 20
    else:
        d = Path(cg._v2_dir() or "")
        assert (d / "cpu.max").read_text().strip() == "50000 100000"


def test_add_procs_stats_and_destroy(cg: Cgroup, sleeper: subprocess.Popen[bytes]) -> None:
    cg.create({})
    cg.add(sleeper.pid)
    assert cg.procs() == [sleeper.pid]
    for f in cg.procs_files():
        assert str(sleeper.pid) in Path(f).read_text().split()
    stats = cg.stats()
    assert stats["pids"]["current"] == 1
    # charges made before the move stay behind (v1 does not move them), so only their kind is certain
    assert isinstance(stats["memory"]["usage"], int) and isinstance(stats["cpu"]["usage_ns"], int)
    assert not cg.oom_killed()
    # busy while a process lives in it
    with pytest.raises(errors.FailedPrecondition):
        cg.destroy(timeout=0.1)
    sleeper.kill()
    sleeper.wait()
    cg.destroy()
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in cg.dirs.values())


def test_freeze_and_thaw(cg: Cgroup, tmp_path: Path) -> None:
    cg.create({})
    counter = tmp_path / "n"
    # Written through a rename, so a reader never sees the file truncated mid-write. The shell joins the
    # cgroup before the loop starts: an `mv` forked before a late join would finish outside the freeze.
    loop = f"i=0; while true; do i=$((i+1)); echo $i > {counter}.t; mv {counter}.t {counter}; done"
    proc = subprocess.Popen(["sh", "-c", " ".join(f"echo $$ > {f};" for f in cg.procs_files())
                             + ' exec sh -c "$0"', loop])
    try:
        deadline = time.monotonic() + 5
        while not counter.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        cg.freeze()
        assert cg.frozen()
        # The kernel's own report, not the task state: a v1-frozen task sleeps in D, a v2-frozen one in S
        # (it waits in the signal-delivery path), so the state letter says nothing portable.
        if cgroups.mode() == "v2":
            assert "frozen 1" in Path(cg._v2_dir() or "", "cgroup.events").read_text().splitlines()
        else:
            assert Path(cg._v1_dir("freezer") or "", "freezer.state").read_text().strip() == "FROZEN"
        before = counter.read_text()
        time.sleep(0.15)
        assert counter.read_text() == before
        cg.thaw()
        assert not cg.frozen()
        deadline = time.monotonic() + 5
        while counter.read_text() in ("", before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counter.read_text() not in ("", before)
    finally:
        if cg.frozen():
            cg.thaw()  # a frozen task would not die: the wait below would hang instead of reporting the failure
        proc.kill()
        proc.wait()


def test_kill_all_reaches_children(cg: Cgroup) -> None:
    cg.create({})
    proc = subprocess.Popen(["sh", "-c", "read go; sleep 1000 & sleep 1000 & wait"], stdin=subprocess.PIPE)
    try:
        cg.add(proc.pid)
        # children forked after the move inherit the cgroup
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        deadline = time.monotonic() + 5
        while len(cg.procs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(cg.procs()) == 3
        cg.kill_all(signal.SIGKILL)
        proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while cg.procs() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cg.procs() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_memory_limit_oom_is_reported(cg: Cgroup) -> None:
    cg.create({"memory": {"limit": 16 << 20}})
    assert not cg.oom_killed()
    procs = cg.procs_files()
    # join before exec (as the helper does), then allocate 48 MB in the shell's memory
    script = "x=$(head -c 50331648 /dev/zero | tr '\\0' a); echo survived"
    proc = subprocess.run(
        ["sh", "-c", " ".join(f"echo $$ > {f};" for f in procs) + " exec sh -c \"$0\"", script],
        capture_output=True, text=True, timeout=60)
    assert "survived" not in proc.stdout
    assert cg.oom_killed()
    assert cg.stats()["memory"]["oom_kills"] >= 1


def test_create_applies_cpuset(cg: Cgroup) -> None:
    cpus = Path("/sys/fs/cgroup/cpuset/cpuset.cpus" if cgroups.mode() != "v2"
                else "/sys/fs/cgroup/cpuset.cpus.effective").read_text().strip()
    first = cpus.split(",")[0].split("-")[0]
    cg.create({"cpu": {"cpus": first, "mems": "0"}})
    d = Path((cg._v2_dir() if cgroups.mode() == "v2" else cg._v1_dir("cpuset")) or "")
    assert (d / "cpuset.cpus").read_text().strip() == first
    assert (d / "cpuset.mems").read_text().strip() == "0"


def test_create_applies_block_io_throttles(cg: Cgroup) -> None:
    disks = sorted(Path("/sys/block").iterdir(), key=lambda p: (p.name.startswith(("loop", "ram")), p.name))
    disk = disks[0]  # a real disk here, the ram disk in the v2 guest
    major, minor = (int(x) for x in (disk / "dev").read_text().split(":"))
    cg.create({"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                           "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]}})
    if cgroups.mode() == "v2":
        line = Path(cg._v2_dir() or "", "io.max").read_text().strip()
        assert line == f"{major}:{minor} rbps=1048576 wbps=max riops=max wiops=100"
    else:
        blkio = Path(cg._v1_dir("blkio") or "")
        assert (blkio / "blkio.throttle.read_bps_device").read_text().split() == [f"{major}:{minor}", "1048576"]
        assert (blkio / "blkio.throttle.write_iops_device").read_text().split() == [f"{major}:{minor}", "100"]
        with pytest.raises(errors.NotImplemented_, match="unified"):  # refused by name: no v2 here
            cg.apply({"unified": {"memory.high": "1000000"}})


def test_bad_device_rules_are_refused(cg: Cgroup) -> None:
    with pytest.raises(errors.InvalidArgument):
        cgroups.device_rule({"allow": True, "type": "x", "access": "rwm"})
    with pytest.raises(errors.InvalidArgument):
        cgroups.device_rule({"allow": True, "type": "c", "access": "rwq"})
    rule = cgroups.device_rule({"allow": True, "type": "c", "major": 136, "access": "rwm"})  # minor: any
    assert (rule.allow, rule.type, rule.major, rule.minor, rule.access) == (True, "c", 136, -1, 7)


@pytest.fixture
def unified_cgroup() -> Iterator[Path]:
    h = cgroups.layout().unified
    if h is None:
        pytest.skip("no cgroup2 mount on this host (pure v1): no eBPF device hook to test")
    d = Path(h.mount_point, f"ctrpy-test-bpf-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    try:
        yield d
    finally:
        for pid in (d / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while True:
            try:
                d.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def _opens(cgroup_dir: Path, *paths: str) -> list[str]:
    """Which of `paths` a shell moved into `cgroup_dir` can open (for reading, writing or both: r:, w:, b:)."""
    redirect = {"r": "<", "w": ">", "b": "<>"}
    probes = " ".join(f"(: {redirect[p[0]]} {p[2:]}) && echo {p};" for p in paths)
    out = subprocess.run(["sh", "-c", f"echo $$ > {cgroup_dir}/cgroup.procs; {probes} true"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def test_bpf_device_program_enforces_and_is_replaced(unified_cgroup: Path) -> None:
    # The eBPF device hook works on any cgroup2 directory, so the hybrid host's unified mount can test it.
    from ctrpy.runtime import helper

    rules = [cgroups.device_rule(r) for r in (
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # /dev/null
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},     # /dev/zero, read only
        {"allow": True, "type": "c", "major": 1, "access": "w"},                 # 1:* write...
        {"allow": False, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # ...but not /dev/full
    )]
    probes = ("w:/dev/null", "r:/dev/zero", "w:/dev/zero", "r:/dev/full", "w:/dev/full", "w:/dev/urandom",
              "r:/dev/urandom")
    assert _opens(unified_cgroup, *probes) == list(probes)  # nothing attached: all open
    assert helper.bpf_devices_set(str(unified_cgroup), rules) == 0
    first = helper.bpf_devices_query(str(unified_cgroup))
    assert len(first) == 1
    assert _opens(unified_cgroup, *probes) == ["w:/dev/null", "r:/dev/zero", "w:/dev/zero", "w:/dev/urandom"]
    # replaced: the new program is attached, the old one detached, never none in between
    assert helper.bpf_devices_set(str(unified_cgroup), [cgroups.device_rule({"allow": True})]) == 1
    second = helper.bpf_devices_query(str(unified_cgroup))
    assert len(second) == 1 and second != first
    assert _opens(unified_cgroup, *probes) == list(probes)
    # a partial deny refuses any request that asks for what it names (an O_RDWR open asks for both)
    assert helper.bpf_devices_set(str(unified_cgroup), [cgroups.device_rule(r) for r in (
        {"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"})]) == 1
    assert _opens(unified_cgroup, "r:/dev/null", "w:/dev/null", "b:/dev/null", "b:/dev/zero") == \
        ["r:/dev/null", "b:/dev/zero"]
