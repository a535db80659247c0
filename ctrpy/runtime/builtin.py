"""ctrpy's built-in OCI runtime: runc's verbs, done in-process through the C helper.

State lives under `root/<id>/` like runc's: `state.json` (pid, its start time, bundle, cgroup directories)
and `exec.fifo` while the container is created but not started. `create` translates `config.json` into
the helper's flat spec (namespaces, mounts, devices, capabilities...) and returns once the init waits on
the fifo; `start` opens the fifo, which lets the init exec. Status is derived, never stored:

    created  the fifo still exists and the init is alive
    running  the init is alive (same pid and start time as recorded)
    paused   running, with its cgroup frozen
    stopped  the init is gone (or a zombie)

A mount namespace joined by path is used as runc uses it: root.path is looked up there, set up and
pivoted into, which moves the root of every process of that namespace; the host's own is refused.

Settings this host cannot honour without CAP_SYS_RESOURCE (a lower oom_score_adj, a higher hard rlimit)
and capabilities outside our own bounding set are clamped with a warning instead of failing.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import signal as _signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ctrpy.runtime import errors
from ctrpy.runtime.identifiers import RUNTIME_ID_PATTERN as _ID_RE
from ctrpy.runtime.timefmt import now as _now
from ctrpy.runtime import helper as _h
from ctrpy.runtime.linux.caps import NUMBERS as CAP_NUMBERS
from ctrpy.runtime.linux.caps import bounding_set as _own_bounding_set
from ctrpy.runtime.linux.mountflags import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT, MS_REC
from ctrpy.runtime.linux.mountflags import PROPAGATION as _PROPAGATION
from ctrpy.runtime.linux.mountflags import parse as parse_mount_options
from ctrpy.runtime.linux.proc import start_time as _proc_start_time

OCI_VERSION = "1.0.2"

NAMESPACES = {
    "pid": _h.CLONE_NEWPID, "network": _h.CLONE_NEWNET, "mount": _h.CLONE_NEWNS, "ipc": _h.CLONE_NEWIPC,
    "uts": _h.CLONE_NEWUTS, "user": _h.CLONE_NEWUSER, "cgroup": _h.CLONE_NEWCGROUP,
}
# /proc/<pid>/ns names, in the order exec joins them: the user namespace first (it owns the others), the
# mount namespace after those it needs /proc for.
_NS_FILES = (("user", _h.CLONE_NEWUSER), ("ipc", _h.CLONE_NEWIPC), ("uts", _h.CLONE_NEWUTS),
             ("net", _h.CLONE_NEWNET), ("cgroup", _h.CLONE_NEWCGROUP), ("mnt", _h.CLONE_NEWNS),
             ("pid", _h.CLONE_NEWPID))

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# Devices every container gets when /dev is a fresh tmpfs (runc's default device list).
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7), ("/dev/tty", "c", 5, 0),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9),
)


# runtime-spec fields the built-in runtime does not implement: a spec that sets one is refused with its
# name rather than run without it (unknown fields are ignored, as the spec requires).
_UNSUPPORTED = (
    ("process", "ioPriority"), ("process", "scheduler"), ("process", "execCPUAffinity"),
    ("linux", "timeOffsets"), ("linux", "intelRdt"), ("linux", "personality"), ("linux", "mountLabel"),
    ("linux", "memoryPolicy"), ("linux", "netDevices"),
)
_OTHER_PLATFORMS = ("solaris", "windows", "vm", "zos")
# Mount options that need mount_setattr (recursive read-only, idmapped mounts).
_UNSUPPORTED_MOUNT_OPTIONS = ("rro", "rrw", "idmap", "ridmap")
# Where the host shows that each security module is active.
_LSM_FILES = {"apparmorProfile": ("AppArmor", "/sys/kernel/security/apparmor"),
              "selinuxLabel": ("SELinux", "/sys/fs/selinux/enforce")}


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def parse_hooks(config: dict[str, Any]) -> dict[str, list[_h.Hook]]:
    """config.hooks -> kind -> helper Hooks, checked (absolute path, positive timeout)."""
    out: dict[str, list[_h.Hook]] = {}
    hooks = config.get("hooks") or {}
    for kind in hooks:
        if kind not in HOOK_KINDS:
            raise errors.InvalidArgument(f"hooks.{kind}: unknown hook kind (one of {', '.join(HOOK_KINDS)})")
    for kind in HOOK_KINDS:
        for i, h in enumerate(hooks.get(kind) or []):
            path = h.get("path") or ""
            if not path.startswith("/"):
                raise errors.InvalidArgument(f"hooks.{kind}[{i}].path {path!r} must be absolute")
            timeout = h.get("timeout")
            if timeout is not None and int(timeout) <= 0:
                raise errors.InvalidArgument(f"hooks.{kind}[{i}].timeout must be positive")
            out.setdefault(kind, []).append(_h.Hook(path, [str(a) for a in h.get("args") or []],
                                                    [str(e) for e in h.get("env") or []], int(timeout or 0)))
    return out


def id_maps(linux: dict[str, Any]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """linux.uidMappings and gidMappings as (container id, host id, size) triples; both are required."""
    out = []
    for key in ("uidMappings", "gidMappings"):
        entries = linux.get(key) or []
        if not entries:
            raise errors.InvalidArgument(f"linux.{key} is required with a new user namespace")
        out.append([(int(m["containerID"]), int(m["hostID"]), int(m["size"])) for m in entries])
    return out[0], out[1]


def joined_id_maps(path: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """The maps of a user namespace given as /proc/<pid>/ns/user (for the chown fallback); empty else."""
    m = re.fullmatch(r"/proc/(\d+)/ns/user", path)
    if not m:
        return [], []
    maps = []
    for name in ("uid_map", "gid_map"):
        try:
            text = Path(f"/proc/{m.group(1)}/{name}").read_text()
        except OSError:
            return [], []
        maps.append([(int(a), int(b), int(c)) for a, b, c in (line.split() for line in text.splitlines())])
    return maps[0], maps[1]


def shift_ownership(rootfs: str, uid_maps: list[tuple[int, int, int]], gid_maps: list[tuple[int, int, int]]) -> None:
    """The fallback where no idmapped mount can be made: chown every file of `rootfs` to the host ids the
    maps give its owners (once: a rootfs whose top directory is already owned by the mapped root is left)."""
    import stat

    def shift(value: int, maps: list[tuple[int, int, int]]) -> int:
        for cid, hid, size in maps:
            if cid <= value < cid + size:
                return hid + value - cid
        return value

    top = os.lstat(rootfs)
    if (top.st_uid, top.st_gid) == (shift(0, uid_maps), shift(0, gid_maps)) and (top.st_uid, top.st_gid) != (0, 0):
        return
    for directory, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            os.lchown(path, shift(st.st_uid, uid_maps), shift(st.st_gid, gid_maps))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o6000:
                os.chmod(path, st.st_mode & 0o7777)  # chown clears setuid/setgid bits
    # The top last: it marks the rootfs done, so an interrupted shift is redone rather than left half made.
    os.lchown(rootfs, shift(top.st_uid, uid_maps), shift(top.st_gid, gid_maps))


def refuse_unsupported(config: dict[str, Any]) -> None:
    """NotImplemented_ naming the first field of `config` the built-in runtime cannot honour."""
    for section, key in _UNSUPPORTED:
        if (config.get(section) or {}).get(key) not in (None, [], {}, ""):
            raise errors.NotImplemented_(f"{section}.{key} is not supported by the built-in runtime")
    for name in _OTHER_PLATFORMS:
        if config.get(name):
            raise errors.NotImplemented_(f"{name}: the built-in runtime runs Linux containers only")
    process = config.get("process") or {}
    for key, (module, path) in _LSM_FILES.items():
        if process.get(key):
            reason = f"this host has no {module}" if not os.path.exists(path) else \
                "the built-in runtime does not apply it"
            raise errors.NotImplemented_(f"process.{key} {process[key]!r}: {reason}")
    for i, m in enumerate(config.get("mounts") or []):
        for key in ("uidMappings", "gidMappings"):
            if m.get(key):
                raise errors.NotImplemented_(f"mounts[{i}].{key} (idmapped mounts) is not supported by the "
                                             "built-in runtime")
        for opt in m.get("options") or []:
            if opt in _UNSUPPORTED_MOUNT_OPTIONS:
                raise errors.NotImplemented_(f"mounts[{i}] ({m.get('destination')}): option {opt!r} is not "
                                             "supported by the built-in runtime")
    propagation = (config.get("linux") or {}).get("rootfsPropagation")
    if propagation and propagation not in _PROPAGATION:
        raise errors.InvalidArgument(f"linux.rootfsPropagation: unknown value {propagation!r}")


def _refuse_host_mount_namespace(path: str) -> None:
    """The container's pivot_root moves the root of every process of a joined mount namespace (runc does
    the same): joining our own, or pid 1's, would put the host's processes into the container's rootfs."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise errors.from_oserror(exc, "linux.namespaces: mount namespace") from None
    for own, whose in (("/proc/self/ns/mnt", "the runtime's own"), ("/proc/1/ns/mnt", "pid 1's")):
        try:
            o = os.stat(own)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (o.st_dev, o.st_ino):
            raise errors.InvalidArgument(f"linux.namespaces: mount namespace {path} is {whose}: the "
                                         "container's pivot_root would move the host's root (leave the path "
                                         "out for a new mount namespace)")


def _cap_mask(names: list[str] | None, warn: Callable[[str], None], allowed: int) -> int:
    mask = 0
    for name in names or []:
        n = CAP_NUMBERS.get(name if name.startswith("CAP_") else f"CAP_{name}")
        if n is None:
            warn(f"unknown capability {name!r} ignored")
            continue
        mask |= 1 << n
    return mask & allowed


def _stderr_warn(message: str) -> None:
    sys.stderr.write(f"ctrpy: warning: {message}\n")
    sys.stderr.flush()


class BuiltinRuntime:
    """The OCIRuntime protocol (see ctrpy.runtime.ociruntime) implemented with the C helper."""

    name = "ctrpy"

    def __init__(self, root: Path | str, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.warn = warn or _stderr_warn
        self.last_warnings: list[str] = []

    # -- state ------------------------------------------------------------------------------------------

    def _dir(self, container_id: str) -> Path:
        if not _ID_RE.match(container_id or ""):
            raise errors.InvalidArgument(f"invalid container id {container_id!r}")
        return self.root / container_id

    def _load(self, container_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self._dir(container_id) / "state.json").read_text())
        except FileNotFoundError:
            raise errors.NotFound(f"container {container_id} does not exist") from None
        except (OSError, ValueError) as exc:
            raise errors.Internal(f"container {container_id}: unreadable state: {exc}") from None
        return data

    @staticmethod
    def _write_atomic(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _cgroup(self, st: dict[str, Any]) -> Any:
        from ctrpy.runtime.cgroups import Cgroup

        cg = Cgroup(st["cgroup_path"])
        cg.dirs = dict(st.get("cgroup_dirs") or cg.dirs)  # where create put it, whoever asks now
        return cg

    def _status(self, container_id: str, st: dict[str, Any]) -> str:
        if st.get("creator"):
            return "creating" if _proc_start_time(st["creator"]) == st.get("creator_start") else "stopped"
        pid = st.get("pid") or 0
        if pid <= 0 or st.get("start_time") is None or _proc_start_time(pid) != st["start_time"]:
            return "stopped"  # (no start time: the init died before create could record it)
        if (self._dir(container_id) / "exec.fifo").exists():
            return "created"
        if self._cgroup(st).frozen():
            return "paused"
        return "running"

    def state(self, container_id: str) -> dict[str, Any]:
        st = self._load(container_id)
        status = self._status(container_id, st)
        return {
            "ociVersion": st.get("ociVersion", OCI_VERSION),
            "id": container_id,
            "pid": 0 if status == "stopped" else st["pid"],
            "status": status,
            "bundle": st["bundle"],
            "rootfs": st["rootfs"],
            "created": st["created"],
            "owner": "",
            "annotations": st.get("annotations") or {},
        }

    def list(self) -> list[dict[str, Any]]:
        """The state of every container under this root."""
        out: builtins.list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and (entry / "state.json").exists():
                try:
                    out.append(self.state(entry.name))
                except errors.CtrpyError:
                    continue
        return out

    # -- create / start ---------------------------------------------------------------------------------

    def create(self, container_id: str, bundle: Path, *, pid_file: Path | None = None,
               console_socket: Path | None = None, stdio: tuple[int, int, int] | None = None,
               preserve_fds: int = 0) -> None:
        from ctrpy.runtime.cgroups import Cgroup

        cdir = self._dir(container_id)
        bundle = Path(bundle).resolve()
        config = self._read_config(bundle)
        linux = config.get("linux") or {}
        process = config.get("process") or {}
        if process.get("terminal") and console_socket is None:
            raise errors.InvalidArgument("process.terminal is set: a console socket is required")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            cdir.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.AlreadyExists(f"container {container_id} already exists") from None
        warnings: list[str] = []
        cgroup = None
        try:
            # Until the final state below, `state` says "creating" (while we live) or "stopped" (we died:
            # `delete` then removes whatever we left).
            self._write_atomic(cdir / "state.json", json.dumps({
                "ociVersion": config.get("ociVersion", OCI_VERSION), "id": container_id, "pid": 0,
                "creator": os.getpid(), "creator_start": _proc_start_time(os.getpid()), "bundle": str(bundle),
                "rootfs": "", "created": _now(), "annotations": config.get("annotations") or {},
                "cgroup_path": linux.get("cgroupsPath") or container_id}))
            cgroup = Cgroup(linux.get("cgroupsPath") or container_id)
            spec = self._spec_from_config(config, bundle, cgroup, warnings.append)
            hooks = parse_hooks(config)
            if hooks:
                state_base = {"ociVersion": config.get("ociVersion", OCI_VERSION), "id": container_id,
                              "bundle": str(bundle), "annotations": config.get("annotations") or {}}
                spec.runtime_hooks = hooks.get("prestart", []) + hooks.get("createRuntime", [])
                spec.n_prestart = len(hooks.get("prestart", []))
                spec.create_hooks = hooks.get("createContainer", [])
                spec.start_hooks = hooks.get("startContainer", [])
                spec.hook_state = _h.hook_state_format({**state_base, "status": "creating"})
                spec.hook_state_created = _h.hook_state_format({**state_base, "status": "created"})
            fifo = cdir / "exec.fifo"
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # not the umask's: the init opens it after its uid change
            spec.exec_fifo = str(fifo)
            spec.stdio = stdio
            spec.preserve_fds = preserve_fds
            spec.console_socket = str(console_socket) if console_socket else None
            from ctrpy.runtime.oci import device_rules

            cgroup.create({**(linux.get("resources") or {}), "devices": device_rules(linux)})
            spec.cgroup_procs = cgroup.procs_files()
            try:
                if spec.idmap_rootfs and os.environ.get("CTRPY_NO_IDMAP"):
                    # Tests drive the fallback of filesystems and kernels without idmapped mounts.
                    raise errors.NotImplemented_("idmapped rootfs: disabled by CTRPY_NO_IDMAP")
                pid, helper_warnings = _h.spawn(spec)
            except errors.CtrpyError as exc:
                if not (spec.idmap_rootfs and "idmapped rootfs" in str(exc)):
                    raise
                # This filesystem (or kernel) cannot idmap: give the rootfs the mapped owners instead.
                warnings.append(f"{exc}; chowning the rootfs to the mapped ids instead")
                shift_ownership(str(spec.rootfs), spec.uid_maps, spec.gid_maps)
                spec.idmap_rootfs = False
                pid, helper_warnings = _h.spawn(spec)
            warnings += helper_warnings
            state = {
                "ociVersion": config.get("ociVersion", OCI_VERSION),
                "id": container_id,
                "pid": pid,
                "start_time": _proc_start_time(pid),
                "bundle": str(bundle),
                "rootfs": spec.rootfs,
                "created": _now(),
                "annotations": config.get("annotations") or {},
                "cgroup_path": cgroup.path,
                "cgroup_dirs": cgroup.dirs,
                "namespaces": [ns.get("type") for ns in linux.get("namespaces") or []],
                # Run by start and delete, when the bundle may be gone.
                "hooks": {k: (config.get("hooks") or {}).get(k) or [] for k in ("poststart", "poststop")},
            }
            if spec.seccomp:
                # exec'd processes get the container's filter too (as runc does), even without the bundle.
                (cdir / "seccomp.bpf").write_bytes(spec.seccomp)
                state["seccomp_flags"] = spec.seccomp_flags
            self._write_atomic(cdir / "state.json", json.dumps(state))
            if pid_file is not None:
                self._write_atomic(Path(pid_file), str(pid))
        except BaseException:
            if cgroup is not None and cgroup.exists():
                try:
                    cgroup.kill_all(_signal.SIGKILL)
                    cgroup.destroy()
                except errors.CtrpyError:
                    pass
            _rmtree(cdir)
            raise
        finally:
            self.last_warnings = warnings
            for w in warnings:
                self.warn(w)

    @staticmethod
    def _read_config(bundle: Path) -> dict[str, Any]:
        try:
            config: dict[str, Any] = json.loads((bundle / "config.json").read_text())
        except FileNotFoundError:
            raise errors.NotFound(f"bundle {bundle}: config.json does not exist") from None
        except ValueError as exc:
            raise errors.InvalidArgument(f"bundle {bundle}: config.json is not valid JSON: {exc}") from None
        except OSError as exc:
            raise errors.from_oserror(exc, f"bundle {bundle}: cannot read config.json") from None
        if not isinstance(config, dict) or not isinstance(config.get("process"), dict):
            raise errors.InvalidArgument(f"bundle {bundle}: config.json has no process")
        return config

    def _process_spec(self, process: dict[str, Any], warn: Callable[[str], None]) -> _h.Spec:
        """The process half of the helper spec (shared by create and exec)."""
        args = process.get("args") or []
        if not args or not all(isinstance(a, str) for a in args):
            raise errors.InvalidArgument("process.args must be a non-empty list of strings")
        user = process.get("user") or {}
        spec = _h.Spec(argv=list(args), env=list(process.get("env") or []), cwd=process.get("cwd") or "/")
        if not spec.cwd.startswith("/"):
            raise errors.InvalidArgument(f"process.cwd {spec.cwd!r} must be an absolute path")
        spec.uid = int(user.get("uid", 0))
        spec.gid = int(user.get("gid", 0))
        spec.gids = [int(g) for g in user.get("additionalGids") or []]
        if user.get("umask") is not None:
            spec.umask = int(user["umask"])
        spec.terminal = bool(process.get("terminal"))
        size = process.get("consoleSize") or {}
        if size.get("height") and size.get("width"):
            spec.console_size = (int(size["height"]), int(size["width"]))
        spec.no_new_privs = bool(process.get("noNewPrivileges"))
        for rl in process.get("rlimits") or []:
            if rl.get("type") not in RLIMITS:
                raise errors.InvalidArgument(f"unknown rlimit {rl.get('type')!r}")
            spec.rlimits.append((RLIMITS[rl["type"]], int(rl.get("soft", 0)), int(rl.get("hard", 0))))
        if process.get("oomScoreAdj") is not None:
            spec.oom_score_adj = int(process["oomScoreAdj"])
        caps = process.get("capabilities")
        if caps is not None:
            own = _own_bounding_set()
            wanted: set[str] = set()
            for key in ("effective", "permitted", "inheritable", "bounding", "ambient"):
                wanted.update(caps.get(key) or [])
            missing = sorted(n for n in wanted if n in CAP_NUMBERS and not own & (1 << CAP_NUMBERS[n]))
            if missing:
                warn(f"capabilities {', '.join(missing)} are not in this host's bounding set: dropped")
            spec.caps = tuple(_cap_mask(caps.get(k), warn, own)  # type: ignore[assignment]
                              for k in ("effective", "permitted", "inheritable", "bounding", "ambient"))
        return spec

    def _spec_from_config(self, config: dict[str, Any], bundle: Path, cgroup: Any,
                          warn: Callable[[str], None]) -> _h.Spec:
        linux = config.get("linux") or {}
        refuse_unsupported(config)
        spec = self._process_spec(config["process"], warn)
        root = config.get("root") or {}
        rootfs = Path(root.get("path") or "rootfs")
        rootfs = (rootfs if rootfs.is_absolute() else bundle / rootfs).resolve()
        if not rootfs.is_dir():
            raise errors.NotFound(f"rootfs {rootfs} does not exist")
        spec.rootfs = str(rootfs)
        spec.rootfs_readonly = bool(root.get("readonly"))
        if linux.get("rootfsPropagation"):
            spec.rootfs_propagation = _PROPAGATION.get(linux["rootfsPropagation"], 0)
        new_ns = set()
        uts = any(ns.get("type") == "uts" for ns in linux.get("namespaces") or [])
        for ns in linux.get("namespaces") or []:
            kind = ns.get("type")
            if kind not in NAMESPACES:
                raise errors.NotImplemented_(f"namespace type {kind!r} is not supported")
            if kind == "user" and ns.get("path"):
                spec.userns_path = ns["path"]
                spec.join.insert(0, (NAMESPACES[kind], ns["path"]))  # first: it owns the rest
                continue
            if ns.get("path"):
                spec.join.append((NAMESPACES[kind], ns["path"]))
            else:
                spec.clone_flags |= NAMESPACES[kind]
                new_ns.add(kind)
        joined_mnt = next((path for kind, path in spec.join if kind == _h.CLONE_NEWNS), None)
        if "mount" not in new_ns and joined_mnt is None:
            raise errors.InvalidArgument("linux.namespaces: the built-in runtime needs a mount namespace, new "
                                         "or joined by path (it does not set the rootfs up in the host's)")
        if joined_mnt is not None and ("user" in new_ns or spec.userns_path):
            # A new user namespace owns no right to mount in a mount namespace made outside it; a joined one
            # would need its idmapped rootfs made in that mount namespace, which the creator cannot see.
            raise errors.NotImplemented_(f"linux.namespaces: a mount namespace joined by path ({joined_mnt}) "
                                         "with a user namespace is not supported by the built-in runtime")
        if joined_mnt is not None:
            _refuse_host_mount_namespace(joined_mnt)
        if "user" in new_ns:
            spec.uid_maps, spec.gid_maps = id_maps(linux)
            spec.idmap_rootfs = True
        elif spec.userns_path:
            if linux.get("uidMappings") or linux.get("gidMappings"):
                raise errors.InvalidArgument("linux.uidMappings/gidMappings are for a new user namespace, not "
                                             f"one joined by path ({spec.userns_path})")
            # Namespaces made with the process would belong to the host's user namespace: make them after
            # joining this one (only the cgroup namespace is made late anyway).
            spec.unshare_flags = spec.clone_flags & ~_h.CLONE_NEWCGROUP
            spec.clone_flags &= _h.CLONE_NEWCGROUP
            spec.uid_maps, spec.gid_maps = joined_id_maps(spec.userns_path)
            spec.idmap_rootfs = True
        elif linux.get("uidMappings") or linux.get("gidMappings"):
            raise errors.InvalidArgument("linux.uidMappings/gidMappings need a new user namespace")
        if config.get("hostname"):
            if not uts:  # a joined one will do (runc sets the name there too)
                raise errors.InvalidArgument("hostname is set but the container has no uts namespace")
            spec.hostname = config["hostname"]
        if config.get("domainname"):
            spec.domainname = config["domainname"]
        dev_mounted = False
        for m in config.get("mounts") or []:
            dest = m.get("destination") or ""
            if not dest.startswith("/"):
                raise errors.InvalidArgument(f"mount destination {dest!r} must be absolute")
            flags, prop, data = parse_mount_options(list(m.get("options") or []))
            mtype = m.get("type") or ("bind" if flags & MS_BIND else None)
            if mtype == "bind":
                flags |= MS_BIND
            if dest == "/dev":
                dev_mounted = True
            if mtype == "cgroup":
                spec.mounts += self._cgroup_mounts(dest, flags, cgroup)
                continue
            source = m.get("source")
            if flags & MS_BIND and source and not source.startswith("/"):
                source = str(bundle / source)
            spec.mounts.append(_h.Mount(mtype, source, dest, flags, prop, data))
        if dev_mounted:
            for path, kind, major, minor in DEFAULT_DEVICES:
                spec.devices.append(_h.Device(path, kind, major, minor, 0o666))
        for d in linux.get("devices") or []:
            mode = d.get("fileMode")
            spec.devices = [x for x in spec.devices if x.path != d["path"]]
            spec.devices.append(_h.Device(d["path"], d.get("type", "c")[0], int(d.get("major", 0)),
                                          int(d.get("minor", 0)), 0o666 if mode is None else int(mode),
                                          int(d.get("uid", 0)), int(d.get("gid", 0))))
        if linux.get("seccomp"):
            spec.seccomp, spec.seccomp_flags = self._seccomp_program(linux["seccomp"])
        spec.masked = list(linux.get("maskedPaths") or [])
        spec.readonly = list(linux.get("readonlyPaths") or [])
        spec.sysctl = {str(k): str(v) for k, v in (linux.get("sysctl") or {}).items()}
        return spec

    def _seccomp_program(self, profile: dict[str, Any]) -> tuple[bytes, int]:
        """The BPF program for an OCI seccomp profile, checked and compiled once per distinct profile and
        helper build: libseccomp takes tens of milliseconds for the default profile, which every `ctrpy run`
        has. The cache file holds the profile's text, its seccomp(2) flags and the program; a hit is an exact
        match of the text (a CRC only names the file), so it needs neither the check nor a hashing module,
        both on the path of every container start."""
        import zlib

        text = (_h.build_id() + "\n" + json.dumps(profile, sort_keys=True)).encode()
        cached = self.root / f".seccomp-{zlib.crc32(text):08x}-{len(text)}.bpf"
        try:
            data = cached.read_bytes()
        except FileNotFoundError:
            data = b""
        if len(data) > len(text) + 4 and data[:len(text)] == text:
            return data[len(text) + 4:], int.from_bytes(data[len(text):len(text) + 4], "little")
        from ctrpy.runtime import seccomp

        flat = seccomp.flatten(profile)
        program = _h.compile_seccomp(flat)
        try:
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            tmp.write_bytes(text + flat.flags.to_bytes(4, "little") + program)
            os.replace(tmp, cached)
        except OSError:
            pass  # a cache only
        return program, flat.flags

    @staticmethod
    def _cgroup_mounts(dest: str, flags: int, cgroup: Any) -> builtins.list[_h.Mount]:
        """A "cgroup" mount: the container's own cgroup directories, read-only, under a tmpfs (as runc)."""
        base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        ro = MS_RDONLY if flags & MS_RDONLY else 0
        if cgroup.layout.mode == "v2":
            (d,) = cgroup.dirs.values()
            return [_h.Mount("bind", d, dest, MS_BIND | MS_REC | base | ro)]
        mounts = [_h.Mount("tmpfs", "tmpfs", dest, base, 0, "mode=755")]
        unified = cgroup.layout.unified
        for mount_point, d in cgroup.dirs.items():
            if unified is not None and mount_point == unified.mount_point:
                continue  # a hybrid host's cgroup2 tree: runc leaves it out of the container too
            name = os.path.basename(mount_point)
            mounts.append(_h.Mount("bind", d, f"{dest.rstrip('/')}/{name}", MS_BIND | MS_REC | base | ro))
        if ro:
            mounts.append(_h.Mount("tmpfs", "tmpfs", dest, MS_REMOUNT | MS_RDONLY | base, 0, "mode=755"))
        return mounts

    def start(self, container_id: str) -> None:
        st = self._load(container_id)
        status = self._status(container_id, st)
        if status != "created":
            raise errors.FailedPrecondition(f"container {container_id} is {status}, not created: cannot start")
        fifo = self._dir(container_id) / "exec.fifo"
        try:
            _h.start(str(fifo), st["pid"])
        finally:
            try:
                fifo.unlink()
            except FileNotFoundError:
                pass
        self._run_post_hooks(st, "poststart", "running")

    def _run_post_hooks(self, st: dict[str, Any], kind: str, status: str) -> None:
        """poststart/poststop: a failure is a warning and the rest still run (runtime-spec)."""
        hooks = parse_hooks({"hooks": {kind: (st.get("hooks") or {}).get(kind) or []}}).get(kind, [])
        state = {"ociVersion": st.get("ociVersion", OCI_VERSION), "id": st["id"], "status": status,
                 "pid": st["pid"] if status != "stopped" else 0, "bundle": st["bundle"],
                 "annotations": st.get("annotations") or {}}
        for hook in hooks:
            try:
                _h.run_hook(hook, state, kind)
            except errors.CtrpyError as exc:
                self.warn(str(exc))

    # -- signals and teardown ---------------------------------------------------------------------------

    def kill(self, container_id: str, signal: int, all: bool = False) -> None:
        st = self._load(container_id)
        status = self._status(container_id, st)
        if all:
            self._cgroup(st).kill_all(signal)
            return
        if status not in ("created", "running", "paused"):
            # The runtime-spec: kill is an error unless the container is created or running.
            raise errors.FailedPrecondition(f"container {container_id} is {status}: cannot kill it")
        try:
            os.kill(st["pid"], signal)
        except ProcessLookupError:
            raise errors.FailedPrecondition(f"container {container_id} is not running") from None

    def delete(self, container_id: str, force: bool = False) -> None:
        st = self._load(container_id)
        status = self._status(container_id, st)
        cgroup = self._cgroup(st)
        if status != "stopped" and not force:
            # The runtime-spec: deleting a container that is not stopped (a created one included, which
            # runc deletes anyway) has no effect and is an error.
            raise errors.FailedPrecondition(
                f"cannot delete container {container_id} that is not stopped: {status} (use --force)")
        if status == "creating":
            raise errors.FailedPrecondition(f"container {container_id} is being created: cannot delete it yet")
        if status != "stopped":
            # A created container is killed like runc does; a forced delete kills whatever runs.
            cgroup.kill_all(_signal.SIGKILL)
            self._wait_gone(st, timeout=5.0)
        else:
            # The init is gone; anything it left in the cgroup (from exec, or an init in the host pid
            # namespace) goes too.
            if cgroup.exists() and cgroup.procs():
                cgroup.kill_all(_signal.SIGKILL)
        cgroup.destroy()
        _rmtree(self._dir(container_id))
        self._run_post_hooks(st, "poststop", "stopped")

    @staticmethod
    def _wait_gone(st: dict[str, Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while st.get("start_time") is not None and _proc_start_time(st["pid"]) == st["start_time"]:
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"container {st['id']}: init {st['pid']} did not exit after SIGKILL")
            time.sleep(0.002)

    def pause(self, container_id: str) -> None:
        st = self._load(container_id)
        status = self._status(container_id, st)
        if status not in ("running", "created"):
            raise errors.FailedPrecondition(f"container {container_id} is {status}: cannot pause")
        self._cgroup(st).freeze()

    def resume(self, container_id: str) -> None:
        st = self._load(container_id)
        if self._status(container_id, st) != "paused":
            raise errors.FailedPrecondition(f"container {container_id} is not paused")
        self._cgroup(st).thaw()

    def ps(self, container_id: str) -> builtins.list[int]:
        st = self._load(container_id)
        pids: builtins.list[int] = self._cgroup(st).procs()
        return pids

    def stats(self, container_id: str) -> dict[str, Any]:
        """Cgroup statistics (memory, cpu, pids) of the container."""
        return dict(self._cgroup(self._load(container_id)).stats())

    def oom_killed(self, container_id: str) -> bool:
        return bool(self._cgroup(self._load(container_id)).oom_killed())

    # -- exec -------------------------------------------------------------------------------------------

    def exec(self, container_id: str, process: dict[str, Any], *, pid_file: Path | None = None,
             console_socket: Path | None = None, stdio: tuple[int, int, int] | None = None,
             privileged: bool = False) -> int:
        """Run `process` in the container's namespaces and cgroup; returns its host pid once it runs.
        `privileged` (exec --privileged): without the container's seccomp filter, as a privileged container
        has none; the full capabilities come in `process`."""
        st = self._load(container_id)
        status = self._status(container_id, st)
        if status not in ("running", "created"):
            raise errors.FailedPrecondition(f"cannot exec in a {status} container {container_id}")
        if process.get("terminal") and console_socket is None:
            raise errors.InvalidArgument("process.terminal is set: a console socket is required")
        warnings: list[str] = []
        refuse_unsupported({"process": process})
        spec = self._process_spec(process, warnings.append)
        pid = st["pid"]
        for name, kind in _NS_FILES:
            path = f"/proc/{pid}/ns/{name}"
            try:
                if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                    spec.join.append((kind, path))
            except FileNotFoundError:
                continue
        spec.cgroup_procs = self._cgroup(st).procs_files()
        try:
            filter_ = None if privileged else (self._dir(container_id) / "seccomp.bpf").read_bytes()
        except FileNotFoundError:
            filter_ = None
        if filter_ is not None:
            spec.seccomp = filter_
            spec.seccomp_flags = int(st.get("seccomp_flags") or 0)
        spec.stdio = stdio
        spec.console_socket = str(console_socket) if console_socket else None
        child, helper_warnings = _h.spawn(spec)
        warnings += helper_warnings
        self.last_warnings = warnings
        for w in warnings:
            self.warn(w)
        if pid_file is not None:
            self._write_atomic(Path(pid_file), str(child))
        return child


    # -- foreground use (the runc-compatible command line) -------------------------------------------

    def config(self, container_id: str) -> dict[str, Any]:
        """The container's config.json, as read from its bundle."""
        return self._read_config(Path(self._load(container_id)["bundle"]))

    def run(self, container_id: str, bundle: Path, *, pid_file: Path | None = None,
            console_socket: Path | None = None, detach: bool = False, preserve_fds: int = 0) -> int | None:
        """create + start; unless `detach`, wait for the init (forwarding signals), delete, return its status."""
        if not detach:
            # Joining a pid namespace makes the init our grandchild: adopt it to be able to wait for it.
            _h.set_subreaper()
        self.create(container_id, bundle, pid_file=pid_file, console_socket=console_socket,
                    preserve_fds=preserve_fds)
        pid = self._load(container_id)["pid"]
        started = False
        try:
            # Forward from before `start`: the container may get a signal the moment it runs.
            with forward_signals(pid, enabled=not detach):
                self.start(container_id)
                started = True
                if detach:
                    return None
                return wait_pid(pid)
        finally:
            if not (detach and started):
                self.delete(container_id, force=True)

    def exec_wait(self, container_id: str, process: dict[str, Any], *, pid_file: Path | None = None,
                  console_socket: Path | None = None) -> int:
        """exec in the foreground: wait for the process (which we adopt as subreaper) and return its status."""
        _h.set_subreaper()
        pid = self.exec(container_id, process, pid_file=pid_file, console_socket=console_socket)
        with forward_signals(pid):
            return wait_pid(pid)


_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


class forward_signals:
    """While active, the signals a foreground runtime gets are passed on to `pid` (as runc run does)."""

    def __init__(self, pid: int, enabled: bool = True) -> None:
        self.pid = pid
        self.enabled = enabled
        self.previous: dict[int, Any] = {}

    def _forward(self, signum: int, _frame: Any) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> forward_signals:
        if self.enabled:
            for name in _FORWARDED:
                sig = getattr(_signal, name)
                self.previous[sig] = _signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)


def wait_pid(pid: int) -> int:
    """Wait for our child `pid`; returns a shell-style status: the exit code, or 128 + the killing signal."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _rmtree(path: Path) -> None:
    """Remove a container's state directory (flat: state.json, exec.fifo, temp files); shutil would cost
    more to import than the whole delete."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _rmtree(Path(entry.path))
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
