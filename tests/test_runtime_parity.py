"""The built-in runtime against runc, field by field: the same bundle runs under both, a probe inside
prints what the process sees (credentials, capabilities, seccomp, environment, limits, mounts, /dev,
namespaces, cgroup, masked and read-only paths), and every line must be the same. A difference is a
failing test, not a surprise; the few places where runc 1.1 deviates from the runtime-spec are listed in
the other test modules (poststart in create, seccomp flags, devices allow-list, delete of created)."""

from __future__ import annotations

import copy
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec

from ctrpy.runtime import oci, seccomp

PROBE = r"""
echo "id: $(id -u) $(id -g) $(id -G)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo "hostname: $(hostname)"; echo "domainname: $(cat /proc/sys/kernel/domainname)"
echo "cwd: $(pwd)"; echo "umask: $(umask)"
env | sort | sed 's/^/env: /'
ulimit -a | sed 's/^/rlimit: /'
echo "oom: $(cat /proc/self/oom_score_adj)"
for n in net ipc uts pid mnt cgroup user; do echo "ns $n: $(readlink /proc/self/ns/$n)"; done
awk '{for (i = 7; $i != "-"; i++); print "mount: " $5 " " $(i+1) " " $6}' /proc/self/mountinfo | sort
ls -ln /dev /dev/pts /dev/shm /dev/mqueue 2>&1 | awk '{print "dev: " $1 " " $3 " " $4 " " $5 " " $6 " " $NF}'
cat /proc/self/cgroup | sed 's/^/cgroup: /'
for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /sys/firmware /proc/acpi; do
  echo "masked $p: $(ls $p 2>&1 | head -c 40 | wc -c) $(head -c 8 $p 2>/dev/null | wc -c)"; done
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /sys /; do
  touch $p/.probe 2>/dev/null && echo "writable $p: yes" || echo "writable $p: no"; done
echo "ip_forward: $(cat /proc/sys/net/ipv4/ip_forward 2>&1)"
echo "shm: $(cat /proc/sys/kernel/shmmax)"
""".strip()

HOST_NS = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("net", "ipc", "uts", "pid", "mnt", "cgroup", "user")}


def normalize(text: str, cid: str, bundle: Path) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = line.replace(cid, "<id>").replace(str(bundle), "<bundle>")
        m = re.match(r"ns (\w+): (.*)", line)
        if m:
            line = f"ns {m.group(1)}: {'host' if HOST_NS[m.group(1)] == m.group(2) else 'private'}"
        if line.startswith("dev: ") and line.endswith(" ."):
            continue
        lines.append(line)
    return lines


def run(name: str, tmp_path: Path, edit: Any) -> tuple[list[str], dict[str, Any]]:
    cid = "p" + uuid.uuid4().hex[:8]
    bundle = tmp_path / f"{name}-{cid}"
    spec = make_bundle(bundle, ["sh", "-c", PROBE], cgroups_path=f"/ctrpy-test/{cid}", hostname="parity")
    edit(spec, bundle)
    write_spec(bundle, spec)
    rt = RuntimeCLI(name, tmp_path / f"root-{name}")
    try:
        r = rt("run", "--bundle", str(bundle), cid)
    finally:
        rt.cleanup()
    assert r.returncode == 0, f"{name}: {r.stderr}"
    return normalize(r.stdout, cid, bundle), spec


def nothing(spec: dict[str, Any], bundle: Path) -> None:
    pass


def user_and_process(spec: dict[str, Any], bundle: Path) -> None:
    p = spec["process"]
    p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [2000, 5], "umask": 0o027}
    p["cwd"] = "/tmp"
    p["env"] = p["env"] + ["FOO=bar baz", "EMPTY="]
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512},
                    {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    p["noNewPrivileges"] = False
    caps = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"]
    p["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps,
                         "ambient": ["CAP_NET_BIND_SERVICE"]}
    p["oomScoreAdj"] = 500


def mounts_and_readonly_root(spec: dict[str, Any], bundle: Path) -> None:
    vol = bundle.parent / f"vol-{bundle.name}"
    vol.mkdir()
    (vol / "f").write_text("x")
    spec["root"]["readonly"] = True
    spec["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(vol), "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/data2/sub", "type": "bind", "source": str(vol), "options": ["bind", "rw", "noexec"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m", "mode=1777"]},
        {"destination": "/etc/hostname", "type": "bind", "source": str(vol / "f"), "options": ["rbind", "ro"]},
    ]


def sysctl_and_names(spec: dict[str, Any], bundle: Path) -> None:
    spec["domainname"] = "example.test"
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "68719476736"}


def host_namespaces(spec: dict[str, Any], bundle: Path) -> None:
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] in ("mount", "pid")]
    spec["hostname"] = ""
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/dev/mqueue"]


def default_seccomp_and_devices(spec: dict[str, Any], bundle: Path) -> None:
    spec["linux"]["seccomp"] = seccomp.default_profile(spec["process"]["capabilities"]["bounding"])
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
                                {"path": "/dev/sub/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o644,
                                 "uid": 1000, "gid": 1000}]
    spec["linux"]["resources"]["devices"] = oci.default_spec()["linux"]["resources"]["devices"]


def privileged(spec: dict[str, Any], bundle: Path) -> None:
    priv = oci.generate_spec(oci.with_privileged())
    spec["process"]["capabilities"] = copy.deepcopy(priv["process"]["capabilities"])
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    spec["mounts"] = [{**m, "options": [o for o in m.get("options", []) if o != "ro"]} for m in spec["mounts"]]


def containerd_default_spec(spec: dict[str, Any], bundle: Path) -> None:
    """What `ctrpy run` generates (containerd's defaults plus the default seccomp profile)."""
    generated = oci.generate_spec(oci.with_process_args(spec["process"]["args"]), oci.with_hostname("parity"))
    generated["root"] = spec["root"]
    generated["linux"]["cgroupsPath"] = spec["linux"]["cgroupsPath"]
    spec.clear()
    spec.update(generated)


# Where runc 1.1 is not the reference: (when, what runc shows, what ctrpy shows, why). Nothing else may
# differ.
DEVIATIONS = [
    (lambda spec: any(m["destination"] == "/sys/fs/cgroup" and "ro" in m.get("options", []) for m in spec["mounts"]),
     "mount: /sys/fs/cgroup tmpfs rw,nosuid,nodev,noexec,relatime",
     "mount: /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,relatime",
     "the spec's cgroup mount says ro: runc 1.1 leaves the tmpfs under the controllers writable"),
    (lambda spec: bool(spec.get("domainname")),
     "domainname: (none)", "domainname: example.test", "runc 1.1 does not implement the domainname field"),
]


def as_ctrpy_would(lines: list[str], spec: dict[str, Any]) -> list[str]:
    fixed = {theirs: ours for when, theirs, ours, _ in DEVIATIONS if when(spec)}
    return [fixed.get(line, line) for line in lines]


VARIANTS = [nothing, user_and_process, mounts_and_readonly_root, sysctl_and_names, host_namespaces,
            default_seccomp_and_devices, privileged, containerd_default_spec]


@pytest.mark.parametrize("edit", VARIANTS, ids=[v.__name__ for v in VARIANTS])
def test_same_bundle_same_container(tmp_path: Path, edit: Any) -> None:
    (ours, spec), (theirs, _) = run("ctrpy", tmp_path, edit), run("runc", tmp_path, edit)
    assert len(ours) > 60  # the probe ran to its end
    assert ours == as_ctrpy_would(theirs, spec)


# -- a mount namespace joined by path -----------------------------------------------------------------------

JOINED_PROBE = "cat /mnt/ns/marker; echo from-container > /mnt/ns/out; ls /mnt/ns; " \
    "readlink /proc/self/ns/mnt; grep -c ' /mnt/ns ' /proc/self/mountinfo; " + PROBE


@pytest.fixture
def mount_ns(tmp_path: Path) -> Any:
    """A factory of mount namespaces, each held by an `unshare --mount --propagation private` sleeper (so
    that nothing mounted in it reaches the host), killed (which frees the namespace and its mounts) at the
    end even if the test failed."""
    import subprocess
    import time

    holders: list[subprocess.Popen[bytes]] = []

    def make() -> int:
        p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "120"])
        holders.append(p)
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{p.pid}/ns/mnt") == HOST_NS["mnt"]:
            assert time.monotonic() < deadline, "unshare did not make its mount namespace"
            time.sleep(0.01)
        return p.pid

    yield make
    for p in holders:
        p.kill()
        p.wait()


def in_ns(pid: int, script: str) -> str:
    import subprocess

    r = subprocess.run(["nsenter", f"--mount=/proc/{pid}/ns/mnt", "sh", "-c", script], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_joined_mount_namespace(tmp_path: Path, mount_ns: Any) -> None:
    """runc's semantics, which ctrpy keeps: the rootfs is root.path as seen from the joined namespace (its own
    mounts below it included), set up and pivoted into there; nothing of it reaches the host."""
    bundle = tmp_path / "bundle"
    spec = make_bundle(bundle, ["sh", "-c", JOINED_PROBE], hostname="parity")
    rootfs = bundle / "rootfs"
    (rootfs / "mnt/ns").mkdir(parents=True)
    seen = {}
    for name in ("ctrpy", "runc"):
        holder = mount_ns()
        ns = os.readlink(f"/proc/{holder}/ns/mnt")
        in_ns(holder, f"mount -t tmpfs nsonly {rootfs}/mnt/ns && echo {name}-marker > {rootfs}/mnt/ns/marker")
        cid = "j" + uuid.uuid4().hex[:8]
        spec["linux"]["cgroupsPath"] = f"/ctrpy-test/{cid}"
        spec["linux"]["namespaces"] = [n if n["type"] != "mount" else {"type": "mount", "path": f"/proc/{holder}/ns/mnt"}
                                       for n in spec["linux"]["namespaces"]]
        write_spec(bundle, spec)
        rt = RuntimeCLI(name, tmp_path / f"root-{name}")
        try:
            r = rt("run", "--bundle", str(bundle), cid)
        finally:
            rt.cleanup()
        assert r.returncode == 0, f"{name}: {r.stderr}"
        lines = r.stdout.splitlines()
        # The namespace's own mount is the container's; what the container writes there stays in the
        # namespace (the holder's root is now the container's rootfs: pivot_root moved it, as runc does).
        assert lines[:5] == [f"{name}-marker", "marker", "out", ns, "1"], (name, lines[:5])
        assert open(f"/proc/{holder}/root/mnt/ns/out").read() == "from-container\n"
        assert not (rootfs / "mnt/ns/marker").exists() and not (rootfs / "mnt/ns/out").exists()
        assert str(bundle) not in open("/proc/self/mountinfo").read()
        seen[name] = normalize("\n".join(lines[5:]), cid, bundle)
    assert len(seen["ctrpy"]) > 60
    assert seen["ctrpy"] == as_ctrpy_would(seen["runc"], spec)


def test_joined_mount_namespace_refusals(tmp_path: Path, mount_ns: Any) -> None:
    """What cannot work is refused before anything runs, naming the namespace; nothing is left behind."""
    import subprocess

    cli = RuntimeCLI("ctrpy", tmp_path / "root")

    def create(edit: Any, wrap: tuple[str, ...] = ()) -> str:
        cid = "r" + uuid.uuid4().hex[:8]
        spec = make_bundle(tmp_path / cid, ["true"], cgroups_path=f"/ctrpy-test/{cid}")
        edit(spec, tmp_path / cid)
        write_spec(tmp_path / cid, spec)
        r = subprocess.run([*wrap, *cli.argv, "create", "--bundle", str(tmp_path / cid), cid],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode != 0, r
        assert cli.ids() == []
        return r.stderr

    def join(path: str, user: str | None = None) -> Any:
        def edit(spec: dict[str, Any], bundle: Path) -> None:
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "mount"] + [
                {"type": "mount", "path": path}]
            if user is not None:
                spec["linux"]["namespaces"].append({"type": "user", **({"path": user} if user else {})})
                spec["linux"]["uidMappings"] = spec["linux"]["gidMappings"] = [
                    {"containerID": 0, "hostID": 100000, "size": 65536}] if not user else []
        return edit

    try:
        holder = mount_ns()
        path = f"/proc/{holder}/ns/mnt"
        err = create(join(path, user=""))
        assert f"mount namespace joined by path ({path}) with a user namespace" in err, err
        err = create(join(path, user=f"/proc/{holder}/ns/user"))
        assert "with a user namespace" in err, err
        # The runtime's own mount namespace: run inside a throwaway one, so that even a runtime that got
        # this wrong would only pivot that one.
        err = create(join("/proc/self/ns/mnt"), wrap=("unshare", "--mount", "--propagation", "private"))
        assert "mount namespace /proc/self/ns/mnt is the runtime's own" in err, err
        # root.path hidden in the joined namespace: the error says where it was looked up.
        hidden = mount_ns()
        in_ns(hidden, f"mount -t tmpfs hide {tmp_path}")
        err = create(join(f"/proc/{hidden}/ns/mnt"))
        assert f"(in the mount namespace /proc/{hidden}/ns/mnt)" in err and "bind rootfs" in err, err
    finally:
        cli.cleanup()
