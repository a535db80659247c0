"""OCI bundles from the host's static busybox, to drive any OCI runtime (ctrpy's built-in, runc, crun) on
exactly the same input.

`make_bundle(dir, args)` writes `dir/rootfs` (busybox plus its applet symlinks, /etc/passwd, /etc/group)
and `dir/config.json`: the spec `runc spec` produces, made non-interactive, with containerd's default
capability set and the default mounts, masked and read-only paths. Keyword overrides edit the spec.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from ctrpy.runtime import oci

BUSYBOX = "/bin/busybox"

# containerd's default capability set, and every capability this kernel knows that our bounding set still
# holds (not CAP_SYS_RESOURCE on this machine: a runtime asked for it fails to apply the caps).
DEFAULT_CAPS = list(oci.DEFAULT_CAPS)
ALL_CAPS = oci.host_capabilities()

BASE_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "bundle",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}


@lru_cache(maxsize=1)
def busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def make_rootfs(rootfs: Path) -> Path:
    """A busybox root filesystem: /bin/busybox plus one symlink per applet, users and groups."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "home/user"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    for applet in busybox_applets():
        link = rootfs / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (rootfs / "etc/group").write_text("root:x:0:\ntty:x:5:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n")
    return rootfs


def base_spec() -> dict[str, Any]:
    return copy.deepcopy(BASE_SPEC)


def write_spec(bundle: Path, spec: dict[str, Any]) -> None:
    (bundle / "config.json").write_text(json.dumps(spec, indent=2))


def make_bundle(bundle: Path, args: list[str] | None = None, *, cgroups_path: str | None = None,
                hostname: str | None = None, **process: Any) -> dict[str, Any]:
    """Write a busybox bundle at `bundle` and return its spec. `process` keys override process fields."""
    bundle.mkdir(parents=True, exist_ok=True)
    make_rootfs(bundle / "rootfs")
    spec = base_spec()
    if args is not None:
        spec["process"]["args"] = list(args)
    if hostname is not None:
        spec["hostname"] = hostname
    if cgroups_path is not None:
        spec["linux"]["cgroupsPath"] = cgroups_path
    spec["process"].update(process)
    write_spec(bundle, spec)
    return spec


class RuntimeCLI:
    """Drive an OCI runtime through its runc-style command line: `ctrpy runtime`, `runc` or `crun`.

    `create` gives the container `log` as stdout/stderr (a created container keeps its stdio open, so
    capturing it in a pipe would block until the container exits); every other verb is captured.
    """

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        if name == "ctrpy":
            import sys

            exe = str(Path(sys.executable).with_name("ctrpy"))
            self.argv = [exe, "runtime", "--root", str(root)]
        else:
            self.argv = [name, "--root", str(root)]

    def __call__(self, *args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.argv + list(args), text=True, timeout=timeout, **kwargs)

    def create(self, bundle: Path, cid: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`create`; the container's stdout goes to `log` (default bundle/out.log), the runtime's stderr
        (which the container inherits too) to bundle/create.err, returned as `stderr`."""
        log = log or bundle / "out.log"
        err_path = bundle / "create.err"
        with open(log, "ab") as out, open(err_path, "wb") as err:
            r = subprocess.run(self.argv + ["create", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, timeout=60)
        return subprocess.CompletedProcess(r.args, r.returncode, "", err_path.read_text())

    def state(self, cid: str) -> dict[str, Any]:
        r = self("state", cid)
        if r.returncode != 0:
            return {"status": "gone", "error": r.stderr}
        return dict(json.loads(r.stdout))

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir()]

    def cleanup(self) -> None:
        """Force-delete every container under this root (kills its processes, removes its cgroups)."""
        for cid in self.ids():
            self("delete", "--force", cid)
