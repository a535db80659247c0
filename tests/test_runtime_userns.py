"""User namespaces: linux.uidMappings/gidMappings applied, the rootfs made usable through an idmapped mount
(the image stays owned by 0 on the host) or, where none can be made, by chowning it to the mapped ids;
exec joins the container's user namespace; runc sees the same container on the same (chowned) bundle."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec
from support.runtimes import cleanup  # noqa: F401 - fixture

from ctrpy.runtime import errors, oci

BASE = 100000
MAPS = [{"containerID": 0, "hostID": BASE, "size": 65536}]
SHOW = ("id; cat /proc/self/uid_map /proc/self/gid_map; touch /root/made && echo rootwrite; "
        "ls -ln /bin/busybox | cut -c1-30; echo > /dev/null && echo devnull; grep -E '^CapEff' /proc/self/status")


def userns_bundle(tmp_path: Path, args: list[str], user: dict[str, int] | None = None) -> tuple[Path, str]:
    cid = "u" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, args, cgroups_path=f"ctrpy-test/{cid}")
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = MAPS
    spec["linux"]["gidMappings"] = MAPS
    if user:
        spec["process"]["user"] = user
    write_spec(tmp_path / cid, spec)
    return tmp_path / cid, cid


@pytest.fixture
def rt(tmp_path: Path) -> Any:
    cli = RuntimeCLI("ctrpy", tmp_path / "root")
    yield cli
    cli.cleanup()


def test_idmapped_rootfs(rt: Any, tmp_path: Path) -> None:
    bundle, cid = userns_bundle(tmp_path, ["sh", "-c", SHOW])
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)")
    assert lines[1].split() == ["0", str(BASE), "65536"] and lines[2].split() == ["0", str(BASE), "65536"]
    assert "rootwrite" in lines and "devnull" in lines
    assert lines[4].split()[2:4] == ["0", "0"]  # the image's files are root's, seen from inside
    assert os.stat(bundle / "rootfs/bin/busybox").st_uid == 0  # and still 0 on the host: nothing chowned
    assert os.stat(bundle / "rootfs/root/made").st_uid == 0  # a file root made inside is 0 on the host too
    assert r.stderr == ""


def test_host_sees_the_mapped_ids_and_exec_joins(rt: Any, tmp_path: Path) -> None:
    bundle, cid = userns_bundle(tmp_path, ["sleep", "60"], user={"uid": 1000, "gid": 1000})
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    pid = rt.state(cid)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{BASE + 1000}\t" in status and f"Gid:\t{BASE + 1000}\t" in status
    r = rt("exec", cid, "sh", "-c", "id -u; readlink /proc/self/ns/user")
    assert r.returncode == 0, r.stderr
    uid, userns = r.stdout.split()
    assert uid == "1000" and userns == os.readlink(f"/proc/{pid}/ns/user")  # the process's user, as runc
    assert userns != os.readlink("/proc/self/ns/user")


def test_chown_fallback_then_runc_sees_the_same(rt: Any, tmp_path: Path) -> None:
    bundle, cid = userns_bundle(tmp_path, ["sh", "-c", SHOW])
    r = rt("run", "--bundle", str(bundle), cid, env={**os.environ, "CTRPY_NO_IDMAP": "1"})
    assert r.returncode == 0, r.stderr
    assert "chowning the rootfs" in r.stderr
    assert os.stat(bundle / "rootfs/bin/busybox").st_uid == BASE
    assert os.stat(bundle / "rootfs/tmp").st_mode & 0o7777 == 0o1777
    ours = r.stdout
    # Once more: already shifted, nothing is shifted twice.
    (bundle / "rootfs/root/made").unlink()
    r = rt("run", "--bundle", str(bundle), cid + "b", env={**os.environ, "CTRPY_NO_IDMAP": "1"})
    assert r.returncode == 0 and os.stat(bundle / "rootfs/bin/busybox").st_uid == BASE
    assert r.stdout == ours
    # runc 1.1 has no idmapped mounts: on the chowned rootfs it shows exactly what we do. It also needs
    # the mapped root to be able to search the bundle's path (pytest's base directory is 0700).
    for parent in bundle.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    (bundle / "rootfs/root/made").unlink()
    runc = RuntimeCLI("runc", tmp_path / "runc-root")
    try:
        theirs = runc("run", "--bundle", str(bundle), cid + "r")
    finally:
        runc.cleanup()
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout == ours


@pytest.mark.parametrize("edit,message", [
    ({"linux.uidMappings": []}, "linux.uidMappings is required"),
    ({"linux.namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
     "need a new user namespace"),
])
def test_bad_mappings_are_refused(rt: Any, tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    import json

    bundle, cid = userns_bundle(tmp_path, ["true"])
    spec = json.loads((bundle / "config.json").read_text())
    for dotted, value in edit.items():
        section, key = dotted.split(".")
        spec[section][key] = value
    write_spec(bundle, spec)
    r = rt.create(bundle, cid)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert rt.ids() == []


def test_userns_remap_option(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("# comment\nother:200000:65536\nremap:300000:65536\n")
    spec = oci.generate_spec(oci.with_userns_remap("remap", subuid=str(subuid), subgid=str(subuid)))
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 300000, "size": 65536}]
    assert spec["linux"]["gidMappings"] == spec["linux"]["uidMappings"]
    spec = oci.generate_spec(oci.with_userns_remap("400000:1000"))
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 400000, "size": 1000}]
    with pytest.raises(errors.NotFound):
        oci.with_userns_remap("nobody-here", subuid=str(subuid), subgid=str(subuid))
    with pytest.raises(errors.InvalidArgument):
        oci.with_userns_remap("1:0")


@pytest.mark.usefixtures("cleanup")
def test_run_with_userns_remap(ctrpy: Any, tmp_path: Path) -> None:
    from support.bundle import make_rootfs

    rootfs = make_rootfs(tmp_path / "rootfs")
    r = ctrpy("run", "--rm", "--userns-remap", f"{BASE}:65536", "--rootfs", str(rootfs), "remapped", "sh", "-c",
              "cat /proc/self/uid_map; touch /root/ok && echo rootwrite")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", str(BASE), "65536", "rootwrite"]
    assert os.stat(rootfs / "root/ok").st_uid == 0
    r = ctrpy("run", "--rm", "--userns-remap", "no-such-user", "--rootfs", str(rootfs), "nouser", "true")
    assert r.returncode != 0 and "no-such-user" in r.stderr and "/etc/subuid" in r.stderr



def test_join_a_user_namespace_by_path(rt: Any, tmp_path: Path) -> None:
    """A CRI-style container joining its sandbox's user, network, ipc, uts and pid namespaces: the mount
    namespace it creates belongs to the joined user namespace, and its rootfs is idmapped for it."""
    bundle, sandbox = userns_bundle(tmp_path, ["sleep", "60"])
    assert rt.create(bundle, sandbox).returncode == 0
    assert rt("start", sandbox).returncode == 0
    pid = rt.state(sandbox)["pid"]
    cid = "j" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, ["sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; "
                                        "touch /root/joined && echo rootwrite; tr '\\0' ' ' < /proc/1/cmdline"],
                       cgroups_path=f"ctrpy-test/{cid}", hostname="")
    spec["hostname"] = ""
    spec["linux"]["namespaces"] = [{"type": "mount"}] + [
        {"type": kind, "path": f"/proc/{pid}/ns/{name}"}
        for kind, name in (("user", "user"), ("network", "net"), ("ipc", "ipc"), ("uts", "uts"), ("pid", "pid"))]
    write_spec(tmp_path / cid, spec)
    r = rt("run", "--bundle", str(tmp_path / cid), cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", str(BASE), "65536"]
    assert lines[2] == os.readlink(f"/proc/{pid}/ns/user")
    assert lines[3] == "rootwrite" and os.stat(tmp_path / cid / "rootfs/root/joined").st_uid == 0
    assert lines[4].strip() == "sleep 60"
