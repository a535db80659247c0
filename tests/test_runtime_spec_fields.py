"""No runtime-spec field is ignored in silence: each one the built-in runtime meets is honoured (the same
cgroup files as runc writes, compared here) or refused with an error naming it, leaving nothing behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec

from ctrpy.runtime.cgroups import Cgroup

V1 = Path("/sys/fs/cgroup")


def block_device() -> str:
    """major:minor of a real block device (throttling refuses anything else)."""
    for dev in sorted(Path("/sys/block").iterdir()):
        if not dev.name.startswith(("loop", "ram", "zram")):
            return (dev / "dev").read_text().strip()
    return "7:0"


def make(tmp_path: Path, edit: dict[str, Any], args: tuple[str, ...] = ("sleep", "30")) -> tuple[Path, str]:
    cid = "f" + uuid.uuid4().hex[:8]
    bundle = tmp_path / cid
    spec = make_bundle(bundle, list(args), cgroups_path=f"/ctrpy-test/{cid}")
    for dotted, value in edit.items():
        node = spec
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    write_spec(bundle, spec)
    return bundle, cid


def read_files(cid: str, files: list[str]) -> dict[str, str]:
    out = {}
    for name in files:
        controller = name.split(".")[0]
        path = V1 / controller / "ctrpy-test" / cid / name
        out[name] = path.read_text().strip() if path.exists() else "<missing>"
    return out


HONOURED = {
    "linux.resources.memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20,
                               "disableOOMKiller": True, "kernelTCP": 16 << 20, "swappiness": 10},
    "linux.resources.cpu": {"shares": 512, "cpus": "0", "mems": "0", "quota": 50000, "period": 100000},
}
FILES = ["memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.limit_in_bytes",
         "memory.kmem.tcp.limit_in_bytes", "memory.swappiness", "cpuset.cpus", "cpuset.mems", "cpu.shares",
         "cpu.cfs_quota_us"]


@pytest.mark.skipif(not (V1 / "memory").is_dir(), reason="needs cgroup v1 controllers (this host's layout)")
def test_v1_resources_are_written_like_runc(tmp_path: Path) -> None:
    dev = block_device()
    edit = dict(HONOURED)
    edit["linux.resources.blockIO"] = {"throttleReadBpsDevice": [{"major": int(dev.split(":")[0]),
                                                                  "minor": int(dev.split(":")[1]), "rate": 1048576}]}
    seen = {}
    for name in ("ctrpy", "runc"):
        bundle, cid = make(tmp_path, edit)
        rt = RuntimeCLI(name, tmp_path / f"root-{name}")
        try:
            r = rt.create(bundle, cid)
            assert r.returncode == 0, r.stderr
            files = read_files(cid, FILES + ["blkio.throttle.read_bps_device"])
            oom = (V1 / "memory/ctrpy-test" / cid / "memory.oom_control").read_text()
            files["oom_kill_disable"] = oom.split("oom_kill_disable")[1].split()[0]
            seen[name] = files
        finally:
            rt.cleanup()
    assert seen["ctrpy"]["memory.soft_limit_in_bytes"] == str(32 << 20)
    assert seen["ctrpy"]["oom_kill_disable"] == "1"
    assert seen["ctrpy"]["cpuset.cpus"] == "0"
    assert seen["ctrpy"]["blkio.throttle.read_bps_device"] == f"{dev} 1048576"
    # runc 1.1 drops kernelTCP in silence (deprecated in the spec); the built-in runtime writes it.
    assert seen["ctrpy"].pop("memory.kmem.tcp.limit_in_bytes") == str(16 << 20)
    seen["runc"].pop("memory.kmem.tcp.limit_in_bytes")
    assert seen["ctrpy"] == seen["runc"]


def _child_cgroup_has(controller: str, *names: str) -> bool:
    """Whether a new cgroup of the v1 `controller` has one of `names` (BFQ shows blkio.bfq.weight only below
    the root), probed with a throwaway cgroup."""
    base = V1 / controller
    if not base.is_dir():
        return False
    probe = base / f"ctrpy-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return any((base / n).exists() for n in names)
    try:
        return any((probe / n).exists() for n in names)
    finally:
        probe.rmdir()


def refused_resources() -> list[tuple[str, Any, str]]:
    """(field, value, name in the error) for resources this host lacks a controller or file for."""
    cases = []
    if not _child_cgroup_has("blkio", "blkio.weight", "blkio.bfq.weight"):
        cases.append(("linux.resources.blockIO", {"weight": 500}, "blockIO.weight"))
    if not (V1 / "hugetlb").is_dir():
        cases.append(("linux.resources.hugepageLimits", [{"pageSize": "2MB", "limit": 4 << 20}], "hugepageLimits"))
    if not (V1 / "net_cls").is_dir():
        cases.append(("linux.resources.network", {"classID": 0x100001}, "network.classID"))
    if not (V1 / "net_prio").is_dir():
        cases.append(("linux.resources.network", {"priorities": [{"name": "lo", "priority": 2}]},
                      "network.priorities"))
    if (V1 / "memory").is_dir():
        cases.append(("linux.resources.unified", {"memory.high": "1000000"}, "unified"))
    return cases


REFUSED_FIELDS = [
    ("process.ioPriority", {"class": "IOPRIO_CLASS_IDLE", "priority": 0}, "process.ioPriority"),
    ("process.scheduler", {"policy": "SCHED_BATCH"}, "process.scheduler"),
    ("process.apparmorProfile", "docker-default", "process.apparmorProfile"),
    ("process.selinuxLabel", "system_u:system_r:container_t:s0", "process.selinuxLabel"),
    ("linux.timeOffsets", {"monotonic": {"secs": 10}}, "linux.timeOffsets"),
    ("linux.intelRdt", {"closID": "x"}, "linux.intelRdt"),
    ("linux.personality", {"domain": "LINUX32"}, "linux.personality"),
    ("linux.mountLabel", "system_u:object_r:container_file_t:s0", "linux.mountLabel"),
    ("linux.rootfsPropagation", "sideways", "linux.rootfsPropagation"),
    ("solaris", {"milestone": "x"}, "solaris"),
    ("mounts", [{"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "rro"]}], "'rro'"),
    ("mounts", [{"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind"],
                 "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}], "mounts[0].uidMappings"),
]


@pytest.mark.parametrize("dotted,value,name", REFUSED_FIELDS + refused_resources())
def test_unsupported_field_is_refused_by_name(tmp_path: Path, dotted: str, value: Any, name: str) -> None:
    bundle, cid = make(tmp_path, {dotted: value}, args=("true",))
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        r = rt.create(bundle, cid)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], r.stderr
        assert rt.ids() == []
        assert not Cgroup(f"/ctrpy-test/{cid}").exists()
    finally:
        rt.cleanup()


def test_exec_refuses_unsupported_process_fields(tmp_path: Path) -> None:
    bundle, cid = make(tmp_path, {})
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        assert rt.create(bundle, cid).returncode == 0
        proc = tmp_path / "proc.json"
        proc.write_text('{"args": ["true"], "cwd": "/", "scheduler": {"policy": "SCHED_BATCH"}}')
        r = rt("exec", "--process", str(proc), cid)
        assert r.returncode != 0 and "process.scheduler" in r.stderr, r.stderr
    finally:
        rt.cleanup()
    assert not os.path.exists(V1 / "memory/ctrpy-test" / cid)
