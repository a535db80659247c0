"""The one door to the C helper (ctrpy._helper, built by cffi at install time).

Python decides everything (which namespaces, mounts, capabilities...) and hands the helper a flat
`ctrpy_spec_t`; the helper only does the syscalls. A failure comes back as `ctrpy_err_t {errno, msg}` and
becomes the matching `CtrpyError` through `errors.from_errno`, keeping the errno (so callers can tell
"not found" (127) from "cannot execute" (126)).
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors

try:
    from ctrpy._helper import ffi, lib as lib  # re-exported: ctrpy.cri.sandbox reads its CLONE_* constants
except ImportError as _exc:  # pragma: no cover - only on a broken install
    ffi = lib = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None
    if os.environ.get("CTRPY_INROOT_NO_OPENAT2"):
        # Tests drive the userspace walk that stands in for openat2 on kernels older than 5.6.
        lib.ctrpy_inroot_set_openat2(0)

# Namespace types, as the kernel numbers them (CLONE_NEW*).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


def _lib() -> Any:
    if lib is None:
        raise errors.Unavailable(f"the ctrpy C helper is not built ({_IMPORT_ERROR}); reinstall ctrpy")
    return lib


def version() -> str:
    """Version of the compiled helper."""
    return str(ffi.string(_lib().ctrpy_helper_version()).decode())


def build_id() -> str:
    """The helper's version and the identity of its compiled file: changes with every rebuild, so that what
    is cached from its output (compiled seccomp programs) is not reused by a different build."""
    import sys

    _lib()
    st = os.stat(sys.modules["ctrpy._helper"].__file__ or "")
    return f"{version()}:{st.st_size}:{st.st_mtime_ns}"


def _raise(err: Any) -> None:
    message = ffi.string(err.msg).decode(errors="replace")
    raise errors.from_errno(int(err.errno_), message)


@dataclass
class Mount:
    type: str | None
    source: str | None
    dest: str
    flags: int = 0
    propagation: int = 0
    data: str | None = None


@dataclass
class Device:
    path: str
    type: str  # "c", "b" or "p"
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@dataclass
class Hook:
    """One OCI hook: `args` includes argv[0] (empty: just the path); `env` empty means an empty
    environment; `timeout` in seconds, 0 for none."""

    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int = 0


def hook_state_format(state: dict[str, Any]) -> str:
    """The state JSON as the helper's format: every "%" doubled, "%d" where the pid goes."""
    import json

    marker = -718281828
    text = json.dumps({**state, "pid": marker}).replace("%", "%%")
    return text.replace(str(marker), "%d")


@dataclass
class Spec:
    """Everything the helper needs to make one container process (see csrc/helper.h)."""

    argv: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    clone_flags: int = 0
    join: list[tuple[int, str]] = field(default_factory=list)  # (CLONE_NEW* type, /proc/<pid>/ns/<x>)
    uid_maps: list[tuple[int, int, int]] = field(default_factory=list)  # (container id, host id, size)
    gid_maps: list[tuple[int, int, int]] = field(default_factory=list)
    idmap_rootfs: bool = False  # with a new user namespace: an idmapped mount of the rootfs
    userns_path: str | None = None  # a user namespace joined by path (also first in `join`)
    unshare_flags: int = 0  # then: the namespaces to create after joining it
    rootfs: str | None = None
    rootfs_readonly: bool = False
    rootfs_propagation: int = 0
    mounts: list[Mount] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)
    readonly: list[str] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    domainname: str | None = None
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)  # (resource, soft, hard)
    oom_score_adj: int | None = None
    caps: tuple[int, int, int, int, int] | None = None  # effective, permitted, inheritable, bounding, ambient
    no_new_privs: bool = False
    uid: int = 0
    gid: int = 0
    gids: list[int] = field(default_factory=list)
    umask: int | None = None
    cgroup_procs: list[str] = field(default_factory=list)
    stdio: tuple[int, int, int] | None = None
    preserve_fds: int = 0
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (rows, cols)
    console_socket: str | None = None
    exec_fifo: str | None = None
    # OCI hooks: prestart + createRuntime (the first n_prestart are prestart), createContainer,
    # startContainer; the state JSON for them with "%d" for the pid (see hook_state_format).
    runtime_hooks: list[Hook] = field(default_factory=list)
    n_prestart: int = 0
    create_hooks: list[Hook] = field(default_factory=list)
    start_hooks: list[Hook] = field(default_factory=list)
    hook_state: str | None = None
    hook_state_created: str | None = None
    seccomp: bytes | None = None  # a BPF program from compile_seccomp
    seccomp_flags: int = 0  # SECCOMP_FILTER_FLAG_*


@dataclass
class SeccompRule:
    """One syscall, one action (helper action kind + errno/trace value), its conditions ANDed:
    (argument index, operator, value, value_two)."""

    name: str
    action: int
    value: int = 0
    args: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class SeccompProfile:
    default_action: int
    default_value: int
    arches: list[str]  # libseccomp names (x86_64, x86, x32, aarch64...)
    rules: list[SeccompRule]
    flags: int = 0


def seccomp_actions() -> dict[str, int]:
    """OCI action name -> the helper's action kind."""
    h = _lib()
    return {f"SCMP_ACT_{n}": getattr(h, f"CTRPY_SCMP_ACT_{n}")
            for n in ("KILL", "KILL_PROCESS", "TRAP", "ERRNO", "TRACE", "ALLOW", "LOG")} | {
        "SCMP_ACT_KILL_THREAD": h.CTRPY_SCMP_ACT_KILL}


def seccomp_operators() -> dict[str, int]:
    h = _lib()
    return {f"SCMP_CMP_{n}": getattr(h, f"CTRPY_SCMP_CMP_{n}")
            for n in ("NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ")}


def seccomp_flag(name: str) -> int:
    return int(getattr(_lib(), name))


def compile_seccomp(profile: SeccompProfile) -> bytes:
    """The BPF program (struct sock_filter[]) libseccomp makes of `profile`."""
    h = _lib()
    arena = _Arena()
    p = arena.new("ctrpy_seccomp_t *")
    p.default_action, p.default_value = profile.default_action, profile.default_value
    p.n_arches, p.arches = len(profile.arches), arena.strv(profile.arches, terminate=False)
    rules = arena.new("ctrpy_seccomp_rule_t[]", max(1, len(profile.rules)))
    for i, r in enumerate(profile.rules):
        rules[i].name = arena.str(r.name)
        rules[i].action, rules[i].value = r.action, r.value
        args = arena.new("ctrpy_seccomp_arg_t[]", max(1, len(r.args)))
        for j, (index, op, value, value_two) in enumerate(r.args):
            args[j].index, args[j].op = index, op
            args[j].value, args[j].value_two = value & (2**64 - 1), value_two & (2**64 - 1)
        rules[i].n_args, rules[i].args = len(r.args), args
    p.n_rules, p.rules = len(profile.rules), rules
    size = h.CTRPY_SECCOMP_MAX_BYTES
    buf = ffi.new("unsigned char[]", size)
    length = ffi.new("size_t *")
    err = ffi.new("ctrpy_err_t *")
    if h.ctrpy_seccomp_compile(p, buf, size, length, err) < 0:
        _raise(err)
    return bytes(ffi.buffer(buf, length[0]))


class _Arena:
    """Keeps every cffi allocation alive for as long as the C struct that points into it."""

    def __init__(self) -> None:
        self.keep: list[Any] = []

    def str(self, value: str | None) -> Any:
        if value is None:
            return ffi.NULL
        buf = ffi.new("char[]", value.encode())
        self.keep.append(buf)
        return buf

    def strv(self, values: list[builtins.str], terminate: bool = True) -> Any:
        items = [self.str(v) for v in values] + ([ffi.NULL] if terminate else [])
        arr = ffi.new("const char *[]", items or [ffi.NULL])
        self.keep.append(arr)
        return arr

    def new(self, ctype: builtins.str, init: Any = None) -> Any:
        obj = ffi.new(ctype, init)
        self.keep.append(obj)
        return obj


def _hooks(hooks: list[Hook], arena: _Arena) -> Any:
    arr = arena.new("ctrpy_hook_t[]", max(1, len(hooks)))
    for i, h in enumerate(hooks):
        arr[i].path = arena.str(h.path)
        arr[i].argv = arena.strv(h.args) if h.args else ffi.NULL
        arr[i].env = arena.strv(h.env)
        arr[i].timeout = h.timeout
    return arr


def run_hook(hook: Hook, state: dict[str, Any], kind: str) -> None:
    """Run one hook with `state` on its stdin (the helper's runner, as for the hooks it runs itself);
    raises the CtrpyError of its failure (non-zero exit, timeout)."""
    arena = _Arena()
    err = ffi.new("ctrpy_err_t *")
    fmt = hook_state_format(state)
    if _lib().ctrpy_run_hook(_hooks([hook], arena), fmt.encode(), int(state.get("pid") or 0), kind.encode(),
                             err) < 0:
        _raise(err)


def _build(spec: Spec, arena: _Arena) -> Any:
    s = arena.new("ctrpy_spec_t *")
    s.clone_flags = spec.clone_flags
    s.n_ns = len(spec.join)
    s.ns_types = arena.new("int[]", [t for t, _ in spec.join] or [0])
    s.ns_paths = arena.strv([p for _, p in spec.join], terminate=False)
    for name in ("uid_maps", "gid_maps"):
        maps = getattr(spec, name)
        arr = arena.new("ctrpy_idmap_t[]", max(1, len(maps)))
        for i, (cid, hid, size) in enumerate(maps):
            arr[i].container_id, arr[i].host_id, arr[i].size = cid, hid, size
        setattr(s, f"n_{name}", len(maps))
        setattr(s, name, arr)
    s.idmap_rootfs = int(spec.idmap_rootfs)
    s.userns_path = arena.str(spec.userns_path)
    s.unshare_flags = spec.unshare_flags
    s.rootfs = arena.str(spec.rootfs)
    s.rootfs_readonly = int(spec.rootfs_readonly)
    s.rootfs_propagation = spec.rootfs_propagation
    mounts = arena.new("ctrpy_mount_t[]", max(1, len(spec.mounts)))
    for i, m in enumerate(spec.mounts):
        mounts[i].type = arena.str(m.type)
        mounts[i].source = arena.str(m.source)
        mounts[i].dest = arena.str(m.dest)
        mounts[i].data = arena.str(m.data or None)
        mounts[i].flags = m.flags
        mounts[i].propagation = m.propagation
    s.n_mounts = len(spec.mounts)
    s.mounts = mounts
    devices = arena.new("ctrpy_device_t[]", max(1, len(spec.devices)))
    for i, d in enumerate(spec.devices):
        devices[i].path = arena.str(d.path)
        devices[i].type = ord(d.type)
        devices[i].major, devices[i].minor, devices[i].mode = d.major, d.minor, d.mode
        devices[i].uid, devices[i].gid = d.uid, d.gid
    s.n_devices = len(spec.devices)
    s.devices = devices
    s.n_masked, s.masked = len(spec.masked), arena.strv(spec.masked)
    s.n_readonly, s.readonly = len(spec.readonly), arena.strv(spec.readonly)
    s.n_sysctl = len(spec.sysctl)
    s.sysctl_keys = arena.strv(list(spec.sysctl))
    s.sysctl_values = arena.strv([str(v) for v in spec.sysctl.values()])
    s.hostname = arena.str(spec.hostname)
    s.domainname = arena.str(spec.domainname)
    rl = arena.new("ctrpy_rlimit_t[]", max(1, len(spec.rlimits)))
    for i, (res, soft, hard) in enumerate(spec.rlimits):
        rl[i].resource, rl[i].soft, rl[i].hard = res, soft, hard
    s.n_rlimits, s.rlimits = len(spec.rlimits), rl
    if spec.oom_score_adj is not None:
        s.set_oom, s.oom_score_adj = 1, spec.oom_score_adj
    if spec.caps is not None:
        s.set_caps = 1
        (s.cap_effective, s.cap_permitted, s.cap_inheritable, s.cap_bounding, s.cap_ambient) = spec.caps
    s.no_new_privs = int(spec.no_new_privs)
    s.uid, s.gid = spec.uid, spec.gid
    s.umask = -1 if spec.umask is None else spec.umask
    s.preserve_fds = spec.preserve_fds
    s.n_gids = len(spec.gids)
    s.gids = arena.new("uint32_t[]", spec.gids or [0])
    s.cwd = arena.str(spec.cwd)
    s.env = arena.strv(spec.env)
    s.argv = arena.strv(spec.argv)
    s.n_cgroup_procs, s.cgroup_procs = len(spec.cgroup_procs), arena.strv(spec.cgroup_procs)
    s.stdio = list(spec.stdio) if spec.stdio is not None else [-1, -1, -1]
    s.terminal = int(spec.terminal)
    if spec.console_size:
        s.console_rows, s.console_cols = spec.console_size
    s.console_socket = arena.str(spec.console_socket)
    s.exec_fifo = arena.str(spec.exec_fifo)
    for prefix, hooks in (("runtime", spec.runtime_hooks), ("create", spec.create_hooks),
                          ("start", spec.start_hooks)):
        setattr(s, f"n_{prefix}_hooks", len(hooks))
        setattr(s, f"{prefix}_hooks", _hooks(hooks, arena))
    s.n_prestart_hooks = spec.n_prestart
    s.hook_state = arena.str(spec.hook_state)
    s.hook_state_created = arena.str(spec.hook_state_created)
    if spec.seccomp:
        prog = arena.new("unsigned char[]", spec.seccomp)
        s.seccomp_filter, s.seccomp_len, s.seccomp_flags = prog, len(spec.seccomp), spec.seccomp_flags
    return s


def spawn(spec: Spec) -> tuple[int, list[str]]:
    """Clone the container process; returns (host pid, warnings about clamped settings).

    With `spec.exec_fifo` it returns once the process waits on the fifo (see `start`); without, once the
    process has exec'd. Errors (also those inside the new process) raise the CtrpyError for their errno.
    """
    if not spec.argv:
        raise errors.InvalidArgument("process args must not be empty")
    helper = _lib()
    arena = _Arena()
    s = _build(spec, arena)
    res = ffi.new("ctrpy_result_t *")
    err = ffi.new("ctrpy_err_t *")
    if helper.ctrpy_spawn(s, res, err) < 0:
        _raise(err)
    text = ffi.string(res.warnings).decode(errors="replace")
    return int(res.pid), [w for w in text.split("\n") if w]


def start(fifo: str, pid: int) -> None:
    """Release the process waiting on `fifo`; raises if it could not exec (errno kept: ENOENT, EACCES...)."""
    err = ffi.new("ctrpy_err_t *")
    if _lib().ctrpy_start(fifo.encode(), pid, err) < 0:
        _raise(err)


def set_subreaper() -> None:
    """Adopt orphaned descendants (so a foreground caller can wait for a process started detached)."""
    err = ffi.new("ctrpy_err_t *")
    if _lib().ctrpy_set_subreaper(err) < 0:
        _raise(err)


def pause_spawn(clone_flags: int, hostname: str = "") -> int:
    """Start a pod's pause process in new namespaces (CLONE_NEW* flags); returns its pid (csrc/pause.c)."""
    err = ffi.new("ctrpy_err_t *")
    pid = ffi.new("int *")
    if _lib().ctrpy_pause_spawn(clone_flags, hostname.encode() if hostname else ffi.NULL, pid, err) < 0:
        _raise(err)
    return int(pid[0])


# -- cgroup v2 device controller (csrc/bpf_devices.c) --------------------------------------------------

DEV_MKNOD, DEV_READ, DEV_WRITE = 1, 2, 4  # the kernel's BPF_DEVCG_ACC_* bits


@dataclass
class DeviceRule:
    allow: bool
    type: str = "a"  # "a" (all), "b" or "c"
    major: int = -1  # -1: any
    minor: int = -1
    access: int = DEV_MKNOD | DEV_READ | DEV_WRITE


def bpf_devices_set(cgroup_dir: str, rules: list[DeviceRule]) -> int:
    """Replace the device program of a v2 cgroup with one enforcing `rules` (the last match wins, no match
    denies); returns how many old programs were detached."""
    helper = _lib()
    arr = ffi.new("ctrpy_dev_rule_t[]", max(1, len(rules)))
    for i, r in enumerate(rules):
        arr[i].allow = int(r.allow)
        arr[i].type = r.type.encode()[:1] or b"a"
        arr[i].major, arr[i].minor, arr[i].access = r.major, r.minor, r.access
    err = ffi.new("ctrpy_err_t *")
    n = helper.ctrpy_bpf_devices_set(cgroup_dir.encode(), arr, len(rules), err)
    if n < 0:
        _raise(err)
    return int(n)


def bpf_devices_query(cgroup_dir: str) -> list[int]:
    """Ids of the device programs attached to the cgroup directory itself."""
    helper = _lib()
    ids = ffi.new("uint32_t[]", 64)
    err = ffi.new("ctrpy_err_t *")
    n = helper.ctrpy_bpf_devices_query(cgroup_dir.encode(), ids, 64, err)
    if n < 0:
        _raise(err)
    return [int(ids[i]) for i in range(n)]
