"""Facts about this host and installation for `ctrpy version` and `ctrpy info`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import ctrpy
from ctrpy.runtime.config import Config
from ctrpy.runtime.linux import mountinfo

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_mode(path: str = mountinfo.SELF) -> str:
    """"v2" (unified), "hybrid" (v1 controllers plus a cgroup2 mount, usually /sys/fs/cgroup/unified),
    "v1", or "none"."""
    mounts = [(m.mount_point, m.fstype, m.super_options) for m in mountinfo.read(path)]
    types = {point: fstype for point, fstype, _ in mounts}
    if types.get(CGROUP_ROOT) == "cgroup2":
        return "v2"
    has_v1 = any(fstype == "cgroup" for _, fstype, _ in mounts)
    has_v2 = any(fstype == "cgroup2" for _, fstype, _ in mounts)
    if has_v1 and has_v2:
        return "hybrid"
    if has_v1:
        return "v1"
    return "v2" if has_v2 else "none"


def helper_version() -> str | None:
    """The C helper's version string, or None when the compiled helper is missing."""
    try:
        from ctrpy._helper import ffi, lib
    except ImportError:
        return None
    version: bytes = ffi.string(lib.ctrpy_helper_version())
    return version.decode()


def _filesystem_supported(name: str) -> bool:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    return any(line.split()[-1] == name for line in text.splitlines() if line.split())


def _binary_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out else ""


def runtimes(config: Config) -> list[dict[str, Any]]:
    """Configured runtimes and whether each can be used here."""
    out = []
    for name, spec in sorted(config["runtimes"].items()):
        kind = spec.get("type", "oci")
        entry: dict[str, Any] = {"name": name, "type": kind, "default": name == config["default_runtime"]}
        if kind == "builtin":
            version = helper_version()
            entry.update(found=version is not None, path=None, version=f"ctrpy helper {version}" if version else "")
        else:
            path = shutil.which(spec.get("binary") or name)
            entry.update(found=path is not None, path=path, version=_binary_version(path) if path else "")
        out.append(entry)
    return out


def snapshotters(config: Config) -> list[dict[str, Any]]:
    names = sorted(set(config.get("plugins.snapshotter", {}) or {}) | {"overlayfs", "native"})
    out = []
    for name in names:
        supported = _filesystem_supported("overlay") if name == "overlayfs" else True
        out.append({"name": name, "supported": supported, "default": name == config["default_snapshotter"]})
    return out


def info(config: Config, root: str, state: str, namespace: str) -> dict[str, Any]:
    return {
        "version": ctrpy.__version__,
        "helper_version": helper_version(),
        "root": str(root),
        "state": str(state),
        "namespace": namespace,
        "config": config.path,
        "cgroup_mode": cgroup_mode(),
        "snapshotters": snapshotters(config),
        "runtimes": runtimes(config),
    }
