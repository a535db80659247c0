"""Namespaces by path: a container joins another's net, ipc, uts, pid and cgroup namespaces (what CRI pods
and `--network container:ID` need); a namespace absent from the spec is the host's. Built-in runtime and
runc side by side on the same bundles."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec
from support.runtimes import cleanup  # noqa: F401 - fixture

from ctrpy.runtime import errors, oci

KINDS = {"network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid", "cgroup": "cgroup"}
SHOW = "for n in net ipc uts pid cgroup; do echo $n=$(readlink /proc/self/ns/$n); done; " \
       "echo init=$(tr '\\0' ' ' < /proc/1/cmdline); hostname"


@pytest.fixture(params=["ctrpy", "runc"])
def rt(request: Any, tmp_path: Path) -> Any:
    cli = RuntimeCLI(str(request.param), tmp_path / "root")
    yield cli
    cli.cleanup()


def ns_of(pid: int) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in KINDS.values()}


def test_join_namespaces_by_path(rt: Any, tmp_path: Path) -> None:
    a, b = "a" + uuid.uuid4().hex[:8], "b" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / a, ["sleep", "60"], cgroups_path=f"ctrpy-test/{a}", hostname="sandbox")
    spec["linux"]["namespaces"].append({"type": "cgroup"})
    write_spec(tmp_path / a, spec)
    assert rt.create(tmp_path / a, a).returncode == 0
    assert rt("start", a).returncode == 0
    pid = rt.state(a)["pid"]
    spec = make_bundle(tmp_path / b, ["sh", "-c", SHOW], cgroups_path=f"ctrpy-test/{b}", hostname="")
    spec["hostname"] = ""
    spec["linux"]["namespaces"] = [{"type": "mount"}] + [
        {"type": kind, "path": f"/proc/{pid}/ns/{name}"} for kind, name in KINDS.items()]
    write_spec(tmp_path / b, spec)
    r = rt("run", "--bundle", str(tmp_path / b), b)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    expected = ns_of(pid)
    for name in KINDS.values():
        assert lines[name] == expected[name], name
    assert lines["init"].strip() == "sleep 60"  # the joined pid namespace's init, seen through a new /proc
    assert r.stdout.splitlines()[-1] == "sandbox"


def test_absent_namespace_is_the_hosts(rt: Any, tmp_path: Path) -> None:
    cid = "h" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, ["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc"],
                       cgroups_path=f"ctrpy-test/{cid}")
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] not in ("network", "ipc")]
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in ("/sys", "/dev/mqueue")]
    write_spec(tmp_path / cid, spec)
    r = rt("run", "--bundle", str(tmp_path / cid), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [os.readlink("/proc/self/ns/net"), os.readlink("/proc/self/ns/ipc")]


def test_namespace_options() -> None:
    spec = oci.generate_spec(oci.with_host_namespace("pid"), oci.with_namespace_path("network", "/proc/1/ns/net"))
    kinds = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert "pid" not in kinds and kinds["network"] == "/proc/1/ns/net" and kinds["uts"] is None
    with pytest.raises(errors.InvalidArgument):
        oci.with_host_namespace("net")
    with pytest.raises(errors.InvalidArgument):
        oci.with_namespace_path("ipc", "relative/path")


def test_missing_namespace_path_is_a_clear_error(tmp_path: Path) -> None:
    cli = RuntimeCLI("ctrpy", tmp_path / "root")
    cid = "m" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, ["true"], cgroups_path=f"ctrpy-test/{cid}")
    spec["linux"]["namespaces"].append({"type": "cgroup", "path": "/proc/999999999/ns/cgroup"})
    write_spec(tmp_path / cid, spec)
    try:
        r = cli.create(tmp_path / cid, cid)
        assert r.returncode != 0 and "/proc/999999999/ns/cgroup" in r.stderr, r.stderr
        assert cli.ids() == []
    finally:
        cli.cleanup()


SHOW_NS = "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done"


@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
def test_host_and_container_namespaces_from_run(ctrpy: Any, cleanup: Any, tmp_path: Path, runtime: str) -> None:
    """`run --pid host --ipc host --uts host` gives the host's namespaces, `--network container:ID` another
    container's network namespace, under the built-in runtime as under runc."""
    from support.bundle import make_rootfs

    rootfs = make_rootfs(tmp_path / "rootfs")
    base = ("run", "--runtime", runtime, "--rootfs", str(rootfs))
    r = ctrpy(*base, "--rm", "--pid", "host", "--ipc", "host", "--uts", "host", "hostns", "sh", "-c",
              f"{SHOW_NS}; hostname; cat /etc/hostname")
    assert r.returncode == 0, r.stderr
    net, ipc, uts, pid, name, etc_name = r.stdout.split()
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("net", "ipc", "uts", "pid")}
    assert (ipc, uts, pid) == (host["ipc"], host["uts"], host["pid"]) and net != host["net"]
    assert name == etc_name == os.uname().nodename  # the host's name: none of the container's own is set
    r = ctrpy(*base, "--rm", "--uts", "host", "-h", "other", "conflict", "true")
    assert r.returncode != 0 and "--uts host" in r.stderr, r.stderr
    r = ctrpy(*base, "-d", "box", "sleep", "60")
    assert r.returncode == 0, r.stderr
    own = ctrpy("exec", "box", "readlink", "/proc/self/ns/net").stdout
    r = ctrpy(*base, "--rm", "--network", "container:box", "joiner", "sh", "-c", SHOW_NS)
    assert r.returncode == 0, r.stderr
    assert own.startswith("net:[") and r.stdout.split()[0] == own.strip()
    assert r.stdout.split()[1:] != [host["ipc"], host["uts"], host["pid"]]
