"""cgroups for tasks: v1, v2 (unified) and hybrid hosts, with runc's cgroupfs paths.

Layout detection reads /proc/self/mountinfo once:

- **v2**: one cgroup2 mount owns every controller;
- **v1**: one mount per controller (or group, "cpu,cpuacct"), plus named hierarchies (name=systemd);
- **hybrid**: v1 controllers plus a cgroup2 mount (often /sys/fs/cgroup/unified) holding few controllers.
  Controllers are driven through v1, and the cgroup2 tree is only joined, as runc does.

Paths follow runc's cgroupfs manager, so that ctrpy's built-in runtime and runc put a container in the
same place: an absolute cgroupsPath ("/ctrpy/x") is below each hierarchy's mount point; a relative one
("ctrpy/x") is below the calling process's own cgroup in that hierarchy (on v2: below its parent, since a
cgroup with processes cannot delegate controllers).

`Cgroup(path).create(resources)` takes the OCI `linux.resources` object. Memory swap defaults to the
memory limit, so a limit is a real limit (the OOM killer runs instead of swapping).
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.linux import mountinfo

CGROUP_ROOT = "/sys/fs/cgroup"

# The device rules themselves (the spec's plus runc's defaults) are made by oci.device_rules().


# OCI linux.resources.blockIO throttle lists, and the file (v1) or io.max key (v2) each one sets.
_THROTTLE_V1 = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}
_THROTTLE_V2 = {"throttleReadBpsDevice": "rbps", "throttleWriteBpsDevice": "wbps",
                "throttleReadIOPSDevice": "riops", "throttleWriteIOPSDevice": "wiops"}


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio weight (10-1000) to v2 io.weight (1-10000), as runc converts it."""
    return max(1, min(10000, 1 + ((int(weight) - 10) * 9999) // 990))


def device_rule(rule: dict[str, Any]) -> Any:
    """An OCI linux.resources.devices entry as a helper.DeviceRule (for the v2 eBPF program)."""
    from ctrpy.runtime import helper

    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise errors.InvalidArgument(f"device rule: type {kind!r} is not a, b or c")
    access = 0
    for ch in rule.get("access") or "rwm":
        bit = {"r": helper.DEV_READ, "w": helper.DEV_WRITE, "m": helper.DEV_MKNOD}.get(ch)
        if bit is None:
            raise errors.InvalidArgument(f"device rule: access {rule.get('access')!r} is not a subset of rwm")
        access |= bit
    major = -1 if rule.get("major") in (None, -1) else int(rule["major"])
    minor = -1 if rule.get("minor") in (None, -1) else int(rule["minor"])
    return helper.DeviceRule(bool(rule.get("allow")), kind, major, minor, access)


# Mount options of a v1 hierarchy that are not controller names.
_V1_FLAGS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"})


@dataclass(frozen=True)
class Hierarchy:
    mount_point: str
    controllers: frozenset[str]  # for v1: the controllers (or "name=x"); for v2: what cgroup.controllers lists
    version: int


@dataclass(frozen=True)
class Layout:
    mode: str  # "v1", "v2" or "hybrid"
    hierarchies: tuple[Hierarchy, ...]

    def v1(self, controller: str) -> Hierarchy | None:
        for h in self.hierarchies:
            if h.version == 1 and controller in h.controllers:
                return h
        return None

    @property
    def unified(self) -> Hierarchy | None:
        for h in self.hierarchies:
            if h.version == 2:
                return h
        return None


@lru_cache(maxsize=1)
def layout() -> Layout:
    """The cgroup layout of this host (from /proc/self/mountinfo)."""
    hierarchies: list[Hierarchy] = []
    seen: set[str] = set()
    try:
        mounts = mountinfo.read()
    except OSError as exc:
        raise errors.from_oserror(exc, "read mountinfo") from exc
    for m in mounts:
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        mount_point = m.mount_point
        if mount_point in seen:
            continue
        seen.add(mount_point)
        if m.fstype == "cgroup":
            opts = m.super_options.split(",")
            ctrls = frozenset(o for o in opts if o.startswith("name=") or ("=" not in o and o not in _V1_FLAGS))
            hierarchies.append(Hierarchy(mount_point, ctrls, 1))
        else:
            try:
                with open(os.path.join(mount_point, "cgroup.controllers")) as f:
                    ctrls = frozenset(f.read().split())
            except OSError:
                ctrls = frozenset()
            hierarchies.append(Hierarchy(mount_point, ctrls, 2))
    has_v1 = any(h.version == 1 for h in hierarchies)
    has_v2 = any(h.version == 2 for h in hierarchies)
    if not hierarchies:
        raise errors.Unavailable("no cgroup file system is mounted")
    mode = "hybrid" if has_v1 and has_v2 else ("v1" if has_v1 else "v2")
    return Layout(mode, tuple(hierarchies))


def mode() -> str:
    """"v1", "v2" or "hybrid"."""
    return layout().mode


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup in each hierarchy, keyed by its /proc/self/cgroup controller list ("" for v2)."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                own[c] = path
    return own


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str | int) -> None:
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise errors.from_errno(exc.errno or 0, f"cgroup: write {value!r} to {path}") from None


# linux.resources "<section>.<key>" -> (v1 controller, file); memory limit/swap/swappiness, cpu
# shares/quota/period, pids and devices have their own writers below.
_V1_SCALARS = {
    "memory.reservation": ("memory", "memory.soft_limit_in_bytes"),
    "memory.kernel": ("memory", "memory.kmem.limit_in_bytes"),
    "memory.kernelTCP": ("memory", "memory.kmem.tcp.limit_in_bytes"),
    "memory.disableOOMKiller": ("memory", "memory.oom_control"),
    "memory.useHierarchy": ("memory", "memory.use_hierarchy"),
    "cpu.cpus": ("cpuset", "cpuset.cpus"),
    "cpu.mems": ("cpuset", "cpuset.mems"),
    "cpu.realtimePeriod": ("cpu", "cpu.rt_period_us"),
    "cpu.realtimeRuntime": ("cpu", "cpu.rt_runtime_us"),
    "cpu.burst": ("cpu", "cpu.cfs_burst_us"),
    "cpu.idle": ("cpu", "cpu.idle"),
    "blockIO.leafWeight": ("blkio", "blkio.leaf_weight"),
}
# What _apply_v2 writes today; any other linux.resources field is refused there by name.
_V2_HONOURED = {"devices", "memory.limit", "memory.swap", "cpu.shares", "cpu.quota", "cpu.period", "pids.limit",
                "memory.checkBeforeUpdate", "cpu.cpus", "cpu.mems", "unified", "blockIO.weight",
                "blockIO.weightDevice", *(f"blockIO.{key}" for key in _THROTTLE_V2)}


def _present(resources: dict[str, Any]) -> list[str]:
    """Dotted names of the fields set in an OCI linux.resources object (one level into sections)."""
    names = []
    for section, value in resources.items():
        if isinstance(value, dict) and section not in ("unified", "rdma"):
            names += [f"{section}.{k}" for k, v in value.items() if v not in (None, [], "", False)]
        elif value not in (None, [], {}, "", False):
            names.append(section)
    return names


def _maybe_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class Cgroup:
    """One container's cgroup, spread over every hierarchy of the host."""

    def __init__(self, path: str) -> None:
        if not path or ".." in path.split("/"):
            raise errors.InvalidArgument(f"invalid cgroup path {path!r}")
        self.path = path
        self.layout = layout()
        own = _own_cgroups() if not path.startswith("/") else {}
        # directory of this cgroup in each hierarchy, keyed by mount point
        self.dirs: dict[str, str] = {}
        for h in self.layout.hierarchies:
            if path.startswith("/"):
                base = "/"
            else:
                key = "" if h.version == 2 else next(iter(sorted(h.controllers)), "")
                base = own.get(key, "/")
                if self.layout.mode == "v2":
                    # Our own cgroup holds processes (us), and v2 allows processes only in leaves: it could
                    # never enable controllers for a child. runc takes its parent, and so do we.
                    base = os.path.dirname(base.rstrip("/")) or "/"
            self.dirs[h.mount_point] = os.path.normpath(os.path.join(h.mount_point, base.lstrip("/"),
                                                                     path.lstrip("/")))

    def __repr__(self) -> str:
        return f"Cgroup({self.path!r})"

    # -- where things live ------------------------------------------------------------------------------

    def _v1_dir(self, controller: str) -> str | None:
        h = self.layout.v1(controller)
        return self.dirs[h.mount_point] if h else None

    def _v2_dir(self) -> str | None:
        h = self.layout.unified
        return self.dirs[h.mount_point] if h else None

    @property
    def is_v2(self) -> bool:
        return self.layout.mode == "v2"

    def _file(self, controller: str, name_v1: str, name_v2: str) -> str | None:
        if self.is_v2:
            d = self._v2_dir()
            return os.path.join(d, name_v2) if d else None
        d = self._v1_dir(controller)
        return os.path.join(d, name_v1) if d else None

    def procs_files(self) -> list[str]:
        """Every cgroup.procs file to write a pid into (all hierarchies, as runc joins them)."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    # -- lifecycle ----------------------------------------------------------------------------------------

    def create(self, resources: dict[str, Any] | None = None) -> None:
        """Make the directories and apply `resources` (OCI linux.resources)."""
        try:
            for mount_point, d in self.dirs.items():
                self._mkdirs(mount_point, d)
            if self.is_v2:
                self._enable_v2_controllers()
            self.apply(resources or {})
        except BaseException:
            self.destroy(timeout=1.0)
            raise

    def _mkdirs(self, mount_point: str, d: str) -> None:
        rel = os.path.relpath(d, mount_point)
        current = mount_point
        is_cpuset = os.path.exists(os.path.join(mount_point, "cpuset.cpus")) and not self.is_v2
        for part in rel.split("/"):
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass
            except OSError as exc:
                raise errors.from_oserror(exc, "cgroup: mkdir") from None
            if is_cpuset:
                # A v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until they are copied down.
                parent = os.path.dirname(current)
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if not _read(os.path.join(current, name)):
                        _write(os.path.join(current, name), _read(os.path.join(parent, name)))

    def _enable_v2_controllers(self) -> None:
        h = self.layout.unified
        assert h is not None
        d = self.dirs[h.mount_point]
        rel = os.path.relpath(d, h.mount_point).split("/")
        current = h.mount_point
        for part in rel:
            wanted = [c for c in ("cpu", "memory", "pids", "io", "cpuset") if c in _read(
                os.path.join(current, "cgroup.controllers")).split()]
            enabled = _read(os.path.join(current, "cgroup.subtree_control")).split()
            for c in wanted:
                if c not in enabled:
                    try:
                        _write(os.path.join(current, "cgroup.subtree_control"), f"+{c}")
                    except errors.CtrpyError:
                        pass  # e.g. a controller the parent cannot delegate; limits on it then fail loudly
            current = os.path.join(current, part)

    def apply(self, resources: dict[str, Any]) -> None:
        """Write the limits of an OCI `linux.resources` object; a field this host cannot honour is refused
        with an error naming it, before anything is written."""
        memory = resources.get("memory") or {}
        cpu = resources.get("cpu") or {}
        pids = resources.get("pids") or {}
        if self.is_v2:
            unsupported = [f"linux.resources.{name}" for name in _present(resources) if name not in _V2_HONOURED]
            if unsupported:
                raise errors.NotImplemented_(f"{unsupported[0]} is not supported on cgroup v2 yet")
            self._apply_v2(memory, cpu, pids)
            self._apply_blkio_v2(resources.get("blockIO") or {})
            self._apply_unified(resources.get("unified") or {})
            self._apply_cpuset(cpu)
            if resources.get("devices") is not None:
                self._apply_devices_v2(resources["devices"])
        else:
            writes = self._v1_extra_writes(resources)
            self._apply_v1(memory, cpu, pids, resources.get("devices"))
            self._apply_blkio_v1(resources.get("blockIO") or {})
            for field, path, value in writes:
                try:
                    _write(path, value)
                except errors.CtrpyError as exc:
                    raise type(exc)(f"linux.resources.{field}: {exc}") from None

    def _v1_extra_writes(self, resources: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(field, file, value) for every linux.resources field beyond memory limit/swap, cpu shares/quota,
        pids and devices; NotImplemented_ naming the first one this host has no controller or file for."""
        memory = resources.get("memory") or {}
        writes: list[tuple[str, str, str]] = []

        def add(field: str, controller: str, name: str, value: Any) -> None:
            d = self._v1_dir(controller)
            if d is None:
                raise errors.NotImplemented_(
                    f"linux.resources.{field}: this host mounts no {controller} cgroup v1 controller")
            if not os.path.exists(os.path.join(d, name)):
                raise errors.NotImplemented_(f"linux.resources.{field}: this kernel has no {controller} {name}")
            if isinstance(value, bool):
                value = int(value)
            writes.append((field, os.path.join(d, name), str(value)))

        mem = self._v1_dir("memory")
        if memory.get("swap") not in (None, 0, memory.get("limit")) and memory.get("limit") and mem and \
                not os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")):
            raise errors.NotImplemented_("linux.resources.memory.swap: this kernel has no swap accounting "
                                         "(memory.memsw.limit_in_bytes)")
        for field, (controller, name) in _V1_SCALARS.items():
            section, key = field.split(".")
            value = (resources.get(section) or {}).get(key)
            if value is not None and value != "":
                add(field, controller, name, value)
        block = resources.get("blockIO") or {}
        blkio = self._v1_dir("blkio")
        if block.get("weight") and blkio and not any(os.path.exists(os.path.join(blkio, name))
                                                     for name in ("blkio.weight", "blkio.bfq.weight")):
            # CFQ's blkio.weight or BFQ's blkio.bfq.weight (_apply_blkio_v1 writes whichever exists)
            raise errors.NotImplemented_("linux.resources.blockIO.weight: this kernel has no blkio.weight "
                                         "(nor BFQ's blkio.bfq.weight)")
        for entry in block.get("weightDevice") or []:  # weight and throttles: _apply_blkio_v1
            dev = f"{entry['major']}:{entry['minor']}"
            if entry.get("leafWeight") is not None:
                add("blockIO.weightDevice", "blkio", "blkio.leaf_weight_device", f"{dev} {entry['leafWeight']}")
        for entry in resources.get("hugepageLimits") or []:
            add("hugepageLimits", "hugetlb", f"hugetlb.{entry['pageSize']}.limit_in_bytes", entry["limit"])
        network = resources.get("network") or {}
        if network.get("classID") is not None:
            add("network.classID", "net_cls", "net_cls.classid", network["classID"])
        for entry in network.get("priorities") or []:
            add("network.priorities", "net_prio", "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}")
        for name, limit in (resources.get("rdma") or {}).items():
            parts = [f"{k}={limit[k]}" for k in ("hcaHandles", "hcaObjects") if limit.get(k) is not None]
            add("rdma", "rdma", "rdma.max", f"{name} " + " ".join(
                p.replace("hcaHandles", "hca_handle").replace("hcaObjects", "hca_object") for p in parts))
        if resources.get("unified"):
            raise errors.NotImplemented_("linux.resources.unified needs a cgroup v2 host (this one is "
                                         f"{self.layout.mode})")
        # The order runc writes them in: a realtime period before its runtime.
        writes.sort(key=lambda w: w[0] != "cpu.realtimePeriod")
        return writes

    def _apply_v1(self, memory: dict[str, Any], cpu: dict[str, Any], pids: dict[str, Any],
                  devices: list[dict[str, Any]] | None) -> None:
        mem = self._v1_dir("memory")
        limit = memory.get("limit")
        if mem and limit is not None and limit > 0:
            swap = memory.get("swap")
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            _write(os.path.join(mem, "memory.limit_in_bytes"), limit)
            if os.path.exists(memsw):
                # OCI swap is memory+swap; unset means "the same as the limit", i.e. no swap at all.
                _write(memsw, swap if swap and swap > 0 else limit)
        if mem and memory.get("swappiness") is not None:
            _write(os.path.join(mem, "memory.swappiness"), memory["swappiness"])
        c = self._v1_dir("cpu")
        if c:
            if cpu.get("shares"):
                _write(os.path.join(c, "cpu.shares"), cpu["shares"])
            if cpu.get("period"):
                _write(os.path.join(c, "cpu.cfs_period_us"), cpu["period"])
            if cpu.get("quota"):
                _write(os.path.join(c, "cpu.cfs_quota_us"), cpu["quota"])
        p = self._v1_dir("pids")
        if p and pids.get("limit") is not None:
            lim = pids["limit"]
            _write(os.path.join(p, "pids.max"), "max" if lim <= 0 else lim)
        d = self._v1_dir("devices")
        if d and devices is not None:
            self._apply_devices_v1(d, devices)

    @staticmethod
    def _apply_devices_v1(d: str, devices: list[dict[str, Any]]) -> None:
        for rule in devices:
            kind = rule.get("type") or "a"
            major = "*" if rule.get("major") in (None, -1) else rule["major"]
            minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
            access = rule.get("access") or "rwm"
            entry = "a" if kind == "a" else f"{kind} {major}:{minor} {access}"
            _write(os.path.join(d, "devices.allow" if rule.get("allow") else "devices.deny"), entry)

    def _apply_v2(self, memory: dict[str, Any], cpu: dict[str, Any], pids: dict[str, Any]) -> None:
        d = self._v2_dir()
        assert d is not None
        limit = memory.get("limit")
        if limit is not None and limit > 0:
            _write(os.path.join(d, "memory.max"), limit)
            swap = memory.get("swap")
            swap_file = os.path.join(d, "memory.swap.max")
            if os.path.exists(swap_file):
                _write(swap_file, max(0, swap - limit) if swap and swap > 0 else 0)
        if cpu.get("shares"):
            weight = 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142
            _write(os.path.join(d, "cpu.weight"), max(1, min(10000, weight)))
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota")
            _write(os.path.join(d, "cpu.max"),
                   f"{quota if quota and quota > 0 else 'max'} {cpu.get('period') or 100000}")
        if pids.get("limit") is not None:
            lim = pids["limit"]
            _write(os.path.join(d, "pids.max"), "max" if lim <= 0 else lim)

    def _apply_blkio_v2(self, blkio: dict[str, Any]) -> None:
        d = self._v2_dir()
        assert d is not None
        if blkio.get("weight"):
            _write(os.path.join(d, "io.weight"), f"default {blkio_weight_to_io_weight(blkio['weight'])}")
        for dev in blkio.get("weightDevice") or []:
            if dev.get("weight"):
                _write(os.path.join(d, "io.weight"),
                       f"{dev['major']}:{dev['minor']} {blkio_weight_to_io_weight(dev['weight'])}")
        for key, name in _THROTTLE_V2.items():
            for dev in blkio.get(key) or []:
                rate = dev.get("rate") or 0
                _write(os.path.join(d, "io.max"),
                       f"{dev['major']}:{dev['minor']} {name}={rate if rate > 0 else 'max'}")

    def _apply_blkio_v1(self, blkio: dict[str, Any]) -> None:
        d = self._v1_dir("blkio")
        if d is None:
            if blkio:
                raise errors.NotImplemented_("cgroup: no blkio controller on this host")
            return
        if blkio.get("weight"):
            # blkio.weight exists with CFQ only; BFQ names it blkio.bfq.weight (runc writes whichever exists)
            name = "blkio.weight" if os.path.exists(os.path.join(d, "blkio.weight")) else "blkio.bfq.weight"
            _write(os.path.join(d, name), blkio["weight"])
        for dev in blkio.get("weightDevice") or []:
            if dev.get("weight"):
                _write(os.path.join(d, "blkio.weight_device"), f"{dev['major']}:{dev['minor']} {dev['weight']}")
        for key, name in _THROTTLE_V1.items():
            for dev in blkio.get(key) or []:
                _write(os.path.join(d, name), f"{dev['major']}:{dev['minor']} {max(0, dev.get('rate') or 0)}")

    def _apply_unified(self, unified: dict[str, str]) -> None:
        """OCI linux.resources.unified: cgroup v2 files written as given (names checked, no escape)."""
        d = self._v2_dir()
        assert d is not None
        for name, value in unified.items():
            if "/" in name or name.startswith(".") or "." not in name:
                raise errors.InvalidArgument(f"linux.resources.unified: invalid file name {name!r}")
            _write(os.path.join(d, name), value)

    def _apply_cpuset(self, cpu: dict[str, Any]) -> None:
        """v2's cpuset.cpus/mems (v1 writes them through _v1_extra_writes)."""
        d = self._v2_dir()
        for key in ("cpus", "mems"):
            if d and cpu.get(key):
                _write(os.path.join(d, f"cpuset.{key}"), cpu[key])

    def _apply_devices_v2(self, devices: list[dict[str, Any]]) -> None:
        """v2 has no devices files: an eBPF program attached to the cgroup decides (csrc/bpf_devices.c)."""
        from ctrpy.runtime import helper

        d = self._v2_dir()
        assert d is not None
        helper.bpf_devices_set(d, [device_rule(r) for r in devices])

    def add(self, pid: int) -> None:
        """Move `pid` into this cgroup in every hierarchy."""
        for f in self.procs_files():
            _write(f, pid)

    def procs(self) -> list[int]:
        """Host pids of every process in the cgroup (and its children)."""
        base = self._v2_dir() if self.is_v2 else (self._v1_dir("pids") or self._v1_dir("freezer")
                                                   or next(iter(self.dirs.values())))
        pids: set[int] = set()
        if base is None or not os.path.isdir(base):
            return []
        for dirpath, _dirs, _files in os.walk(base):
            try:
                pids.update(int(x) for x in _read(os.path.join(dirpath, "cgroup.procs")).split())
            except OSError:
                continue
        return sorted(pids)

    # -- freezer ----------------------------------------------------------------------------------------

    def freeze(self, timeout: float = 5.0) -> None:
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        self._set_frozen(False, timeout)

    def frozen(self) -> bool:
        if self.is_v2:
            d = self._v2_dir()
            try:
                return d is not None and _read(os.path.join(d, "cgroup.freeze")) == "1"
            except OSError:
                return False
        d = self._v1_dir("freezer")
        try:
            return d is not None and _read(os.path.join(d, "freezer.state")) in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.is_v2:
            d = self._v2_dir()
            assert d is not None
            _write(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
            want = f"frozen {1 if frozen else 0}"
            while want not in _read(os.path.join(d, "cgroup.events")).splitlines():
                if time.monotonic() > deadline:
                    raise errors.DeadlineExceeded(f"cgroup {self.path}: {'freeze' if frozen else 'thaw'} timed out")
                time.sleep(0.005)
            return
        d = self._v1_dir("freezer")
        if d is None:
            raise errors.NotImplemented_("cgroup: no freezer controller on this host")
        want = "FROZEN" if frozen else "THAWED"
        while True:
            # v1 can stay FREEZING while a task sits in an uninterruptible sleep: write again until it sticks.
            _write(os.path.join(d, "freezer.state"), want)
            if _read(os.path.join(d, "freezer.state")) == want:
                return
            if time.monotonic() > deadline:
                if frozen:
                    _write(os.path.join(d, "freezer.state"), "THAWED")
                raise errors.DeadlineExceeded(f"cgroup {self.path}: {'freeze' if frozen else 'thaw'} timed out")
            time.sleep(0.005)

    def kill_all(self, sig: int = _signal.SIGKILL) -> None:
        """Signal every process; frozen first, so that nothing forks away in between (runc does the same)."""
        if self.is_v2 and sig == _signal.SIGKILL:
            d = self._v2_dir()
            if d and os.path.exists(os.path.join(d, "cgroup.kill")):
                _write(os.path.join(d, "cgroup.kill"), "1")
                return
        was_frozen = self.frozen()
        can_freeze = self.is_v2 or self._v1_dir("freezer") is not None
        if can_freeze and not was_frozen:
            try:
                self.freeze()
            except errors.CtrpyError:
                can_freeze = False
        try:
            for pid in self.procs():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if can_freeze and not (was_frozen and sig != _signal.SIGKILL):
                self.thaw()

    # -- accounting ------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """{memory: {usage, limit, max_usage, oom_kills}, cpu: {usage_ns}, pids: {current, limit}}."""
        def num(path: str | None) -> int | None:
            if not path:
                return None
            try:
                text = _read(path)
            except OSError:
                return None
            return None if text == "max" else _maybe_int(text)

        unlimited = 1 << 62
        if self.is_v2:
            d = self._v2_dir() or ""
            cpu_usage = None
            try:
                for line in _read(os.path.join(d, "cpu.stat")).splitlines():
                    k, _, v = line.partition(" ")
                    if k == "usage_usec":
                        cpu_usage = int(v) * 1000
            except OSError:
                pass
            limit = num(os.path.join(d, "memory.max"))
            return {
                "memory": {"usage": num(os.path.join(d, "memory.current")), "limit": limit,
                           "max_usage": num(os.path.join(d, "memory.peak")), "oom_kills": self._oom_kills()},
                "cpu": {"usage_ns": cpu_usage},
                "pids": {"current": num(os.path.join(d, "pids.current")), "limit": num(os.path.join(d, "pids.max"))},
            }
        mem = self._v1_dir("memory")
        limit = num(os.path.join(mem, "memory.limit_in_bytes")) if mem else None
        if limit is not None and limit >= unlimited:
            limit = None
        pids = self._v1_dir("pids")
        cpuacct = self._v1_dir("cpuacct")
        return {
            "memory": {"usage": num(mem and os.path.join(mem, "memory.usage_in_bytes")), "limit": limit,
                       "max_usage": num(mem and os.path.join(mem, "memory.max_usage_in_bytes")),
                       "oom_kills": self._oom_kills()},
            "cpu": {"usage_ns": num(cpuacct and os.path.join(cpuacct, "cpuacct.usage"))},
            "pids": {"current": num(pids and os.path.join(pids, "pids.current")),
                     "limit": num(pids and os.path.join(pids, "pids.max"))},
        }

    def _oom_kills(self) -> int:
        """How many processes the OOM killer killed here: `oom_kill N` in memory.events (v2) or in
        memory.oom_control (v1). The one Python reader; csrc/supervisor.c (read_oom_killed) reads the same
        line for the exit record, as the supervisor runs no Python."""
        if self.is_v2:
            path = os.path.join(self._v2_dir() or "", "memory.events")
        else:
            mem = self._v1_dir("memory")
            if mem is None:
                return 0
            path = os.path.join(mem, "memory.oom_control")
        try:
            for line in _read(path).splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        return self._oom_kills() > 0

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the cgroup (children first) from every hierarchy, retrying while exiting tasks linger."""
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            if not os.path.isdir(d):
                continue
            subdirs = [dp for dp, _, _ in os.walk(d)]
            for sub in sorted(subdirs, key=len, reverse=True):
                while True:
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                            raise errors.from_errno(exc.errno or 0, f"cgroup: remove {sub}") from None
                        time.sleep(0.01)
