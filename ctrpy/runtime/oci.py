"""OCI runtime-spec generation: containerd's default spec, refined by with_*() option functions.

`generate_spec(*opts)` starts from `default_spec()` (what containerd's oci.populateDefaultUnixSpec builds,
plus Docker's read-only cgroup mount and the default device list spelled out so that every runtime, including
the built-in one, creates the same /dev) and applies each option in order. An option is any
`Callable[[dict], None]` that edits the spec in place, so callers compose them like containerd's SpecOpts:

    spec = generate_spec(with_process_args(["sh"]), with_hostname("web"), with_memory_limit(64 << 20))

Files a container sees under /etc (hosts, resolv.conf, hostname) are written by `prepare_etc_files()` into the
task's state directory and bind-mounted (`with_etc_files()`).
"""

from __future__ import annotations

import copy
import errno
import os
import re
import stat as statmod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors, seccomp
from ctrpy.runtime.linux import caps as linux_caps

Spec = dict[str, Any]
SpecOpt = Callable[[Spec], None]

OCI_VERSION = "1.0.2"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ROOTFS = "rootfs"

# containerd's (and Docker's) default capability set.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# The character devices every container gets (runc's defaults), with their cgroup allow rules.
DEFAULT_DEVICES = [
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
]
EXTRA_ALLOWED_DEVICES = [(5, 1), (5, 2), (136, -1)]  # /dev/console, /dev/ptmx, /dev/pts/*

# The device cgroup rules every container gets after its spec's own (runc's specconv.AllowedDevices):
# mknod of any node (access stays denied), the default devices, /dev/pts/*, /dev/ptmx and /dev/net/tun.
RUNTIME_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"} for _, ma, mi in DEFAULT_DEVICES),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


def device_rules(linux: dict[str, Any]) -> list[dict[str, Any]]:
    """The device cgroup rules a runtime applies for `linux` (as runc does): the spec's
    linux.resources.devices, then rwm for each linux.devices node, then RUNTIME_DEVICE_RULES. The v1
    devices controller and the v2 eBPF program are both made from this list, in order."""
    rules = [dict(r) for r in (linux.get("resources") or {}).get("devices") or []]
    for d in linux.get("devices") or []:
        if d.get("type") in ("c", "b", "u"):
            rules.append({"allow": True, "type": "c" if d["type"] == "u" else d["type"],
                          "major": int(d.get("major", 0)), "minor": int(d.get("minor", 0)), "access": "rwm"})
    return rules + [dict(r) for r in RUNTIME_DEVICE_RULES]


def host_device(path: str, label: str) -> tuple[str, os.stat_result]:
    """The OCI device type ("c" or "b") of the host's device node `path`, and its stat; `label` names it in
    the one-line errors (a missing node, or a path that is no device node)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise errors.from_oserror(exc, label) from None
    if statmod.S_ISCHR(st.st_mode):
        return "c", st
    if statmod.S_ISBLK(st.st_mode):
        return "b", st
    raise errors.InvalidArgument(f"{label} is not a device node")


def default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
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
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    ]


def _cgroup_ns() -> list[dict[str, str]]:
    """A private cgroup namespace on pure v2 hosts (the container sees `0::/`, as docker/nerdctl do there)."""
    from ctrpy.runtime import cgroups

    try:
        return [{"type": "cgroup"}] if cgroups.mode() == "v2" else []
    except errors.CtrpyError:
        return []


def default_spec() -> Spec:
    """containerd's default Linux spec (root "rootfs", 14 capabilities, NOFILE 1024, no_new_privileges)."""
    devices = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
               for p, ma, mi in DEFAULT_DEVICES]
    allow = [{"allow": False, "access": "rwm"}]
    allow += [{"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"} for _, ma, mi in DEFAULT_DEVICES]
    allow += [{"allow": True, "type": "c", "major": ma, **({"minor": mi} if mi >= 0 else {}), "access": "rwm"}
              for ma, mi in EXTRA_ALLOWED_DEVICES]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [DEFAULT_PATH_ENV],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": DEFAULT_ROOTFS, "readonly": False},
        "hostname": "",
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": allow},
            "cgroupsPath": "",
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")] + _cgroup_ns(),
            "devices": devices,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp.default_profile(DEFAULT_CAPS),
        },
        "annotations": {},
    }


def generate_spec(*opts: SpecOpt) -> Spec:
    """The default spec with `opts` applied in order.

    The default seccomp profile depends on the bounding capabilities (CAP_SYS_ADMIN unlocks mount...): while
    no option replaced it, it is made again for the final capabilities, as containerd's WithDefaultProfile.
    """
    spec = default_spec()
    default_profile = spec["linux"]["seccomp"]
    for opt in opts:
        opt(spec)
    if spec["linux"].get("seccomp") is default_profile:
        spec["linux"]["seccomp"] = seccomp.default_profile(spec["process"]["capabilities"]["bounding"])
    return spec


# --- process --------------------------------------------------------------------------------------------

def with_process_args(args: Sequence[str]) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["process"]["args"] = list(args)
    return opt


def _set_env(env: list[str], entries: Iterable[str]) -> list[str]:
    """Entries replace same-named variables in place (like containerd's replaceOrAppendEnvValues)."""
    out = list(env)
    for entry in entries:
        key = entry.split("=", 1)[0]
        if not key:
            raise errors.InvalidArgument(f"invalid environment variable {entry!r}")
        for i, existing in enumerate(out):
            if existing.split("=", 1)[0] == key:
                out[i] = entry
                break
        else:
            out.append(entry)
    return out


def with_env(entries: Iterable[str]) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["process"]["env"] = _set_env(spec["process"]["env"], entries)
    return opt


def with_cwd(cwd: str) -> SpecOpt:
    if not cwd.startswith("/"):
        raise errors.InvalidArgument(f"working directory {cwd!r} must be an absolute path")

    def opt(spec: Spec) -> None:
        spec["process"]["cwd"] = cwd
    return opt


def with_tty(tty: bool = True) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["process"]["terminal"] = tty
        if tty:
            spec["process"]["env"] = _set_env(spec["process"]["env"], ["TERM=xterm"])
    return opt


def with_user(uid: int, gid: int, additional_gids: Sequence[int] = ()) -> SpecOpt:
    def opt(spec: Spec) -> None:
        user: dict[str, Any] = {"uid": uid, "gid": gid}
        if additional_gids:
            user["additionalGids"] = sorted(set(additional_gids))
        spec["process"]["user"] = user
    return opt


def with_hostname(hostname: str) -> SpecOpt:
    if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$", hostname):
        raise errors.InvalidArgument(f"invalid hostname {hostname!r}")

    def opt(spec: Spec) -> None:
        spec["hostname"] = hostname
    return opt


def with_rootfs(path: str, readonly: bool = False) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["root"] = {"path": path, "readonly": readonly}
    return opt


def with_readonly_rootfs(readonly: bool = True) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["root"]["readonly"] = readonly
    return opt


def _cap_name(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in linux_caps.NUMBERS:
        raise errors.InvalidArgument(f"unknown capability {name!r}")
    return full


def host_capabilities() -> list[str]:
    """Every capability this kernel knows (cap_last_cap) and our bounding set still holds: a capability the
    caller cannot have (CAP_SYS_RESOURCE on this machine) would make every runtime fail to apply caps."""
    bounding = linux_caps.bounding_set()
    return [name for i, name in enumerate(linux_caps.NAMES[: linux_caps.last_cap() + 1]) if bounding >> i & 1]


def _set_caps(spec: Spec, caps: list[str]) -> None:
    for key in ("bounding", "effective", "permitted"):
        spec["process"]["capabilities"][key] = list(caps)


def with_capabilities(add: Sequence[str] = (), drop: Sequence[str] = ()) -> SpecOpt:
    """--cap-add/--cap-drop over the current set; "ALL" works on either side (drop first, then add)."""
    add_names = [_cap_name(c) for c in add]
    drop_names = [_cap_name(c) for c in drop]

    def opt(spec: Spec) -> None:
        caps = list(spec["process"]["capabilities"]["bounding"])
        if "ALL" in drop_names:
            caps = []
        caps = [c for c in caps if c not in drop_names]
        if "ALL" in add_names:
            caps = host_capabilities()
        for c in add_names:
            if c != "ALL" and c not in caps:
                caps.append(c)
        _set_caps(spec, caps)
    return opt


def with_privileged() -> SpecOpt:
    """All capabilities, no masked or read-only paths, writable /sys and cgroupfs, every device allowed,
    no seccomp filter (docker's --privileged)."""
    def opt(spec: Spec) -> None:
        _set_caps(spec, host_capabilities())
        spec["linux"].pop("seccomp", None)
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
        spec["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
        spec["process"]["noNewPrivileges"] = False
    return opt


def with_no_new_privileges(enabled: bool = True) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["process"]["noNewPrivileges"] = enabled
    return opt


def with_systempaths_unconfined() -> SpecOpt:
    """No masked or read-only /proc and /sys paths (docker's --security-opt systempaths=unconfined)."""
    def opt(spec: Spec) -> None:
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
    return opt


def with_seccomp(profile: dict[str, Any] | None) -> SpecOpt:
    """A seccomp profile (OCI linux.seccomp); None leaves the container unconfined."""
    def opt(spec: Spec) -> None:
        if profile is None:
            spec["linux"].pop("seccomp", None)
        else:
            spec["linux"]["seccomp"] = copy.deepcopy(profile)
    return opt


def with_seccomp_file(path: str) -> SpecOpt:
    """A seccomp profile file (OCI or docker format; the latter resolved for the spec's capabilities)."""
    def opt(spec: Spec) -> None:
        caps = spec["process"].get("capabilities", {}).get("bounding") or []
        spec["linux"]["seccomp"] = seccomp.load_profile(path, caps)
    return opt


def with_security_opts(values: Sequence[str]) -> list[SpecOpt]:
    """docker's --security-opt: seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false]."""
    opts: list[SpecOpt] = []
    for value in values:
        key, sep, arg = value.partition("=" if "=" in value else ":")  # docker also takes `seccomp:FILE`
        if key == "seccomp" and sep and arg:
            opts.append(with_seccomp(None) if arg == "unconfined" else with_seccomp_file(arg))
        elif key == "no-new-privileges" and arg in ("", "true", "false", "1", "0"):
            opts.append(with_no_new_privileges(arg not in ("false", "0")))
        elif key in ("apparmor", "label") and arg in ("unconfined", "disable"):
            continue  # this host has neither AppArmor nor SELinux: nothing is confined to begin with
        elif key == "systempaths" and arg == "unconfined":
            opts.append(with_systempaths_unconfined())
        elif key in ("apparmor", "label") and sep and arg:
            # A bad flag value (exit 3, as the other run flags; docker fails such a run with its usage-ish 125):
            # the profile/label names something this host cannot load.
            raise errors.InvalidArgument(f"invalid --security-opt {value!r}: this host has no "
                                         f"{'AppArmor' if key == 'apparmor' else 'SELinux'}; "
                                         f"only {key}=unconfined is accepted")
        else:
            raise errors.InvalidArgument(
                f"invalid --security-opt {value!r} (seccomp=unconfined|PROFILE.json, no-new-privileges, "
                f"systempaths=unconfined)")
    return opts


def with_rlimit(kind: str, soft: int, hard: int) -> SpecOpt:
    def opt(spec: Spec) -> None:
        limits = [r for r in spec["process"].get("rlimits", []) if r["type"] != kind]
        limits.append({"type": kind, "soft": soft, "hard": hard})
        spec["process"]["rlimits"] = limits
    return opt


# --- namespaces, mounts, cgroups -----------------------------------------------------------------------

NAMESPACE_KINDS = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def _namespace_kind(kind: str) -> str:
    if kind not in NAMESPACE_KINDS:
        raise errors.InvalidArgument(f"unknown namespace type {kind!r} (one of {', '.join(NAMESPACE_KINDS)})")
    return kind


def with_host_namespace(kind: str) -> SpecOpt:
    """Share the host's namespace of `kind` (docker's --pid/--ipc/--uts host): drop it from the spec."""
    _namespace_kind(kind)

    def opt(spec: Spec) -> None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
        if kind == "uts":
            # The host's names stay: a runtime refuses to set a hostname without a uts namespace of its own.
            spec.pop("hostname", None)
            spec.pop("domainname", None)
    return opt


def with_net_host() -> SpecOpt:
    """Share the host's network namespace (and, as containerd does, keep /sys writable only if privileged)."""
    return with_host_namespace("network")


def with_namespace_path(kind: str, path: str) -> SpecOpt:
    """Join an existing namespace (a CRI container joining its sandbox's, `--network container:ID`):
    `path` is e.g. /proc/<pid>/ns/net or a bind-mounted namespace file."""
    _namespace_kind(kind)
    if not path.startswith("/"):
        raise errors.InvalidArgument(f"namespace path {path!r} must be absolute")

    def opt(spec: Spec) -> None:
        spaces = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
        spaces.append({"type": kind, "path": path})
        spec["linux"]["namespaces"] = spaces
    return opt


def _subordinate_range(name: str, path: str) -> tuple[int, int]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read subordinate ids") from None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] == name and fields[1].isdigit() and fields[2].isdigit():
            return int(fields[1]), int(fields[2])
    raise errors.NotFound(f"--userns-remap: no entry for {name!r} in {path}")


def with_userns_remap(value: str, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> SpecOpt:
    """A new user namespace whose root is an unprivileged host range (docker's --userns-remap): USER[:GROUP]
    takes the user's range from /etc/subuid and the group's from /etc/subgid; HOSTID:SIZE gives it."""
    if re.fullmatch(r"\d+:\d+", value):
        start, size = (int(v) for v in value.split(":"))
        if size <= 0 or start <= 0:
            raise errors.InvalidArgument(f"--userns-remap {value!r}: HOSTID and SIZE must be positive")
        uid_range = gid_range = (start, size)
    else:
        user, _, group = value.partition(":")
        uid_range = _subordinate_range(user, subuid)
        gid_range = _subordinate_range(group or user, subgid)

    def opt(spec: Spec) -> None:
        spaces = [n for n in spec["linux"]["namespaces"] if n["type"] != "user"]
        spec["linux"]["namespaces"] = spaces + [{"type": "user"}]
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid_range[0], "size": uid_range[1]}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid_range[0], "size": gid_range[1]}]
    return opt


def bind_source(src: str, options: list[str]) -> str:
    """A --mount bind source as an absolute path that must exist; `options` gains rbind unless it names a
    bind already (docker and ctr both bind recursively by default)."""
    src = os.path.abspath(src)
    if not os.path.exists(src):
        raise errors.NotFound(f"--mount source {src} does not exist")
    if "bind" not in options and "rbind" not in options:
        options.insert(0, "rbind")
    return src


def parse_mount(text: str) -> dict[str, Any]:
    """ctr's --mount syntax: type=bind,src=/a,dst=/b,options=rbind:ro (options separated by ':')."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        if "=" not in part:
            raise errors.InvalidArgument(f"invalid --mount {text!r}: expected key=value pairs, got {part!r}")
        key, value = part.split("=", 1)
        fields[key.strip().lower()] = value
    kind = fields.pop("type", "bind")
    src = fields.pop("src", fields.pop("source", ""))
    dst = fields.pop("dst", fields.pop("destination", fields.pop("target", "")))
    options = [o for o in fields.pop("options", "").split(":") if o]
    if fields:
        raise errors.InvalidArgument(f"invalid --mount {text!r}: unknown keys {', '.join(sorted(fields))}")
    if not dst.startswith("/"):
        raise errors.InvalidArgument(f"invalid --mount {text!r}: dst must be an absolute path")
    if kind == "bind":
        if not src:
            raise errors.InvalidArgument(f"invalid --mount {text!r}: bind needs src")
        src = bind_source(src, options)
    elif kind == "tmpfs":
        src = src or "tmpfs"
    return {"destination": dst, "type": kind, "source": src, "options": options}


def with_mounts(mounts: Sequence[dict[str, Any]]) -> SpecOpt:
    """Add mounts, replacing any default mount at the same destination."""
    def opt(spec: Spec) -> None:
        dests = {m["destination"] for m in mounts}
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in dests] + [dict(m) for m in mounts]
    return opt


def cgroups_path(parent: str, namespace: str, container_id: str) -> str:
    """`/<parent>/<namespace>-<id>`: absolute, so every runtime puts it at the same place in each hierarchy."""
    parent = parent.strip("/")
    return "/" + (f"{parent}/" if parent else "") + f"{namespace}-{container_id}"


def with_cgroups_path(path: str) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec["linux"]["cgroupsPath"] = path
    return opt


def with_memory_limit(limit: int) -> SpecOpt:
    if limit <= 0:
        raise errors.InvalidArgument("memory limit must be positive")

    def opt(spec: Spec) -> None:
        spec["linux"]["resources"].setdefault("memory", {})["limit"] = limit
    return opt


def with_cpus(cpus: float, period: int = 100_000) -> SpecOpt:
    if cpus <= 0:
        raise errors.InvalidArgument("--cpus must be positive")

    def opt(spec: Spec) -> None:
        cpu = spec["linux"]["resources"].setdefault("cpu", {})
        cpu["period"] = period
        cpu["quota"] = int(cpus * period)
    return opt


def with_cpu_shares(shares: int) -> SpecOpt:
    if shares < 2:
        raise errors.InvalidArgument("--cpu-shares must be at least 2")

    def opt(spec: Spec) -> None:
        spec["linux"]["resources"].setdefault("cpu", {})["shares"] = shares
    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    if limit == 0 or limit < -1:
        raise errors.InvalidArgument("--pids-limit must be positive (or -1 for unlimited)")

    def opt(spec: Spec) -> None:
        spec["linux"]["resources"]["pids"] = {"limit": limit}
    return opt


def with_annotations(annotations: dict[str, str]) -> SpecOpt:
    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(annotations)
    return opt


# --- image config, users ---------------------------------------------------------------------------------

FileReader = Callable[[str], "bytes | None"]
_O_PATH = getattr(os, "O_PATH", 0o10000000)


def _open_in_root(rootfd: int, name: str) -> int:
    """An O_RDONLY fd of regular file `name`, resolved as if `rootfd` were "/" (what openat2's RESOLVE_IN_ROOT
    does, walked in userspace as archive.py's fallback does, without its ctypes/tarfile imports on `run`'s
    path): an image's symlinks, absolute or relative, and `..` never lead out of the root."""
    todo = [p for p in name.split("/") if p not in ("", ".")]
    todo.reverse()
    cur: list[str] = []
    fd = os.dup(rootfd)
    hops = 0
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                cur = cur[:-1]
                os.close(fd)
                fd = os.dup(rootfd)
                for step in cur:  # re-walk the canonical path: `..` never climbs above the root
                    nfd = os.open(step, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    os.close(fd)
                    fd = nfd
                continue
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if statmod.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
                target = os.readlink(part, dir_fd=fd)
                if target.startswith("/"):
                    cur = []
                    os.close(fd)
                    fd = os.dup(rootfd)
                todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if not todo:  # the file itself: O_NOFOLLOW in case it became a link, O_NONBLOCK for a FIFO
                nfd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
                if not statmod.S_ISREG(os.fstat(nfd).st_mode):
                    os.close(nfd)
                    raise OSError(errno.EINVAL, "not a regular file", name)
            else:
                nfd = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                cur.append(part)
            os.close(fd)
            fd = nfd
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        return fd
    except BaseException:
        os.close(fd)
        raise


def rootfs_reader(path: str | os.PathLike[str]) -> FileReader:
    """Read regular files of a plain rootfs directory (None when absent), each path resolved inside it."""
    root = os.fspath(path)

    def read(name: str) -> bytes | None:
        try:
            rootfd = os.open(root, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fd = _open_in_root(rootfd, name)
        except OSError:
            return None
        finally:
            os.close(rootfd)
        with os.fdopen(fd, "rb") as f:
            return f.read()
    return read


def mounts_reader(mounts: Sequence[Any]) -> FileReader:
    """Read files of a snapshot without mounting it: overlay upper then lowers in order, or a bind source."""
    layers: list[str] = []
    for m in mounts:
        kind = getattr(m, "type", None) or (m.get("type") if isinstance(m, dict) else None)
        source = getattr(m, "source", None) or (m.get("source") if isinstance(m, dict) else None)
        options = getattr(m, "options", None) or (m.get("options", ()) if isinstance(m, dict) else ())
        if kind == "overlay":
            upper = [o.split("=", 1)[1] for o in options if o.startswith("upperdir=")]
            lower = [o.split("=", 1)[1] for o in options if o.startswith("lowerdir=")]
            layers += upper
            for entry in lower:
                layers += entry.split(":")
        elif source:
            layers.append(source)

    def read(name: str) -> bytes | None:
        for layer in layers:
            data = rootfs_reader(layer)(name)
            if data is not None:
                return data
        return None
    return read


def _parse_colon_file(data: bytes | None) -> list[list[str]]:
    if not data:
        return []
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line and not line.startswith("#")]


def resolve_user(user: str, read: FileReader) -> tuple[int, int, list[int]]:
    """Resolve `name`, `uid`, `name:group`, `uid:gid` (Docker/containerd syntax) through the rootfs's
    /etc/passwd and /etc/group; additional groups come from /etc/group membership."""
    user = user.strip()
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")
    passwd = _parse_colon_file(read("/etc/passwd"))
    groups = _parse_colon_file(read("/etc/group"))
    uid: int | None = None
    gid: int | None = None
    username = None
    for entry in passwd:
        if len(entry) < 4:
            continue
        if entry[0] == name or (name.isdigit() and entry[2] == name):
            try:
                uid, gid, username = int(entry[2]), int(entry[3]), entry[0]
            except ValueError:
                continue
            break
    if uid is None:
        if not name.isdigit():
            raise errors.NotFound(f"user {name!r} not found in the container's /etc/passwd")
        uid, gid = int(name), 0
    if group:
        for entry in groups:
            if len(entry) >= 3 and (entry[0] == group or (group.isdigit() and entry[2] == group)):
                gid = int(entry[2])
                break
        else:
            if not group.isdigit():
                raise errors.NotFound(f"group {group!r} not found in the container's /etc/group")
            gid = int(group)
    extra: list[int] = []
    if username and not group:
        for entry in groups:
            if len(entry) >= 4 and username in entry[3].split(",") and entry[2].isdigit():
                if int(entry[2]) != gid:
                    extra.append(int(entry[2]))
    assert gid is not None
    for what, value in (("user", uid), ("group", gid)):
        if not 0 <= value < 0xFFFFFFFF:  # (uid_t)-1 means "no change" to the kernel
            raise errors.InvalidArgument(f"invalid {what} ID {value} in {user!r}: must be 0 to 4294967294")
    return uid, gid, extra


def resolve_groups(names: Sequence[str], read: FileReader) -> list[int]:
    """`--group-add` values as GIDs: a number as given (docker takes it even when /etc/group lacks it), a name
    through the rootfs's /etc/group."""
    groups: list[list[str]] | None = None
    gids: list[int] = []
    for name in names:
        name = name.strip()
        if name.isdigit():
            gid = int(name)
        else:
            if groups is None:
                groups = _parse_colon_file(read("/etc/group"))
            found = [e[2] for e in groups if len(e) >= 3 and e[0] == name and e[2].isdigit()]
            if not name or not found:
                err = errors.NotFound(f"group {name!r} (--group-add) not found in the container's /etc/group")
                # docker fails such a run/create with its runtime-failure code, the container never made.
                err.exit_code = errors.EXIT_RUNTIME_FAILURE
                raise err
            gid = int(found[0])
        if not gid < 0xFFFFFFFF:
            raise errors.InvalidArgument(f"invalid --group-add {name!r}: must be 0 to 4294967294")
        gids.append(gid)
    return gids


def with_additional_gids(gids: Sequence[int]) -> SpecOpt:
    """Add supplementary groups to the process's user (on top of what its /etc/group membership gave)."""
    def opt(spec: Spec) -> None:
        user = spec["process"]["user"]
        user["additionalGids"] = sorted(set(user.get("additionalGids", [])) | set(gids))
    return opt


def with_image_config(image_config: dict[str, Any], read: FileReader | None = None) -> SpecOpt:
    """Env, working dir, user and entrypoint+cmd from an OCI image config's `config` object."""
    cfg = image_config.get("config") or {}

    def opt(spec: Spec) -> None:
        spec["process"]["env"] = _set_env(spec["process"]["env"], cfg.get("Env") or [])
        spec["process"]["cwd"] = cfg.get("WorkingDir") or "/"
        spec["process"]["args"] = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        if read is not None:
            # No User is root, who also gets the image's /etc/group memberships (containerd's
            # WithAdditionalGIDs, docker's `id` shows them).
            uid, gid, extra = resolve_user(cfg.get("User") or "0", read)
            with_user(uid, gid, extra)(spec)
    return opt


# --- /etc files -----------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def prepare_etc_files(dest: Path, *, hostname: str, net_host: bool = False,
                      extra_hosts: Sequence[tuple[str, str]] = (), dns: Sequence[str] = (),
                      dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                      host_resolv: Path = Path("/etc/resolv.conf"),
                      host_hosts: Path = Path("/etc/hosts")) -> dict[str, Path]:
    """Write `hosts`, `resolv.conf` and `hostname` for one container into `dest`; returns their paths.

    resolv.conf is the host's with loopback nameservers dropped (they mean nothing in a new network
    namespace), unless `net_host`; `dns`/`dns_search`/`dns_options` replace the host's entries. hosts maps
    localhost and the container's hostname, plus `extra_hosts` (name, address) pairs.
    """
    from ctrpy.runtime.network import etc as etc_text

    dest.mkdir(parents=True, exist_ok=True)
    paths = {"resolv.conf": dest / "resolv.conf", "hosts": dest / "hosts", "hostname": dest / "hostname"}
    _atomic_write(paths["resolv.conf"], etc_text.resolv_conf(
        host_network=net_host, dns=dns, dns_search=dns_search, dns_options=dns_options,
        host_resolv=str(host_resolv)))
    _atomic_write(paths["hosts"], etc_text.hosts(
        hostname=hostname, address=None, add_hosts=extra_hosts, host_network=net_host, host_hosts=str(host_hosts)))
    _atomic_write(paths["hostname"], (hostname or os.uname().nodename) + "\n")  # none: the host's uts
    return paths


def with_etc_files(paths: dict[str, Path], readonly: bool = False) -> SpecOpt:
    """Bind-mount prepared /etc/hosts, /etc/resolv.conf and /etc/hostname into the container."""
    mode = "ro" if readonly else "rw"
    mounts = [{"destination": f"/etc/{name}", "type": "bind", "source": str(path),
               "options": ["rbind", "rprivate", mode]} for name, path in sorted(paths.items())]
    return with_mounts(mounts)
