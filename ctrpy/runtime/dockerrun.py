"""Containers as `docker run`/`nerdctl run` create them: docker's flags turned into a stored container.

`RunRequest` holds the flags as typed; `create()` validates them, picks the ID (64 hex) and name, and stores
the container through `containers.create_container` with extra spec options (ulimits, devices, tmpfs, namespaces,
init, ...) and the DOCKER_EXT extension, which keeps what docker's `inspect` shows (Config, HostConfig) and
what the lifecycle commands need (stop signal and timeout, -i, auto-remove, log options).

Option functions that runtime/oci.py does not have yet live here (`with_*`), in the same shape.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, oci
from ctrpy.runtime.names import NAME_LABEL

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

DOCKER_EXT = "ctrpy.io/docker"
# `--init`: ctrpy's static init (csrc/init.c, installed next to the supervisor), bound where docker binds tini.
INIT_BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ctrpy-init")
INIT_PATH = "/sbin/docker-init"
DEFAULT_STOP_TIMEOUT = 10

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)
_ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
            "rtprio", "rttime", "sigpending", "stack", "as"}
_PROPAGATION = {"shared", "slave", "private", "rshared", "rslave", "rprivate"}


@dataclass
class RunRequest:
    """The flags of `run`/`create`, as typed (docker's names)."""

    image: str = ""
    command: list[str] = field(default_factory=list)
    name: str = ""
    rootfs: str = ""
    ctr_id: str = ""  # the ctr-shaped `--rootfs DIR ID ...`: the ID as given
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_files: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    group_add: list[str] = field(default_factory=list)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    memory: str | None = None
    memory_swap: str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str = ""
    pids_limit: int | None = None
    ulimits: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    userns_remap: str = ""
    read_only: bool = False
    devices: list[str] = field(default_factory=list)
    init: bool = False
    pid: str = ""
    ipc: str = ""
    uts: str = ""
    network: str | None = None
    ip: str | None = None
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_option: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    stop_signal: str = ""
    stop_timeout: int | None = None
    restart: str = "no"
    platform: str = ""
    runtime: str = ""
    snapshotter: str = ""
    log_opts: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ parsing

def parse_bytes(text: str, what: str) -> int:
    """Bytes from `1048576`, `64m`, `1.5g`, `512KiB` (docker's units are binary)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise errors.InvalidArgument(f"invalid {what} {text!r} (examples: 67108864, 64m, 1g)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index(unit.lower() or "b"))


def parse_env(entries: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """`-e VAR=x` as given; `-e VAR` takes the caller's value and is dropped when the caller has none."""
    if environ is None:
        environ = os.environ
    out = []
    for entry in entries:
        if "=" in entry:
            if not entry.split("=", 1)[0]:
                raise errors.InvalidArgument(f"invalid environment variable {entry!r}")
            out.append(entry)
        elif entry in environ:
            out.append(f"{entry}={environ[entry]}")
    return out


def parse_label_args(labels: list[str], files: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    lines: list[str] = []
    for path in files:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.from_oserror(exc, f"cannot read label file {path}") from None
        lines += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for item in lines + list(labels):
        key, _, value = item.partition("=")
        if not key:
            raise errors.InvalidArgument(f"invalid label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_restart(policy: str, auto_remove: bool = False) -> str:
    from ctrpy.runtime import restart

    policy = restart.validate_policy(policy or "no")
    if auto_remove and policy != "no":
        raise errors.InvalidArgument("--rm and --restart cannot be used together")
    return policy


def parse_ulimit(text: str) -> tuple[str, int, int]:
    name, sep, values = text.partition("=")
    if not sep or name not in _ULIMITS:
        raise errors.InvalidArgument(f"invalid --ulimit {text!r}: expected NAME=SOFT[:HARD] with NAME one of "
                                     f"{', '.join(sorted(_ULIMITS))}")
    soft_s, _, hard_s = values.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if hard_s else soft
    except ValueError:
        raise errors.InvalidArgument(f"invalid --ulimit {text!r}: limits must be integers") from None
    if soft > hard and hard != -1:
        raise errors.InvalidArgument(f"invalid --ulimit {text!r}: soft limit {soft} exceeds hard limit {hard}")
    return "RLIMIT_" + name.upper(), soft, hard


def parse_tmpfs(text: str) -> dict[str, Any]:
    dest, _, opts = text.partition(":")
    if not dest.startswith("/"):
        raise errors.InvalidArgument(f"invalid --tmpfs {text!r}: the path must be absolute")
    options = ["nosuid", "nodev", "noexec"] + [o for o in opts.split(",") if o]
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}


def parse_volume(text: str) -> tuple[dict[str, Any], str | None]:
    """`-v SRC:DST[:OPTS]` or `-v DST` (anonymous volume): (mount, volume name or None for a host path).
    A named or anonymous volume's mount has an empty source until the volume store fills it in."""
    parts = text.split(":")
    if len(parts) == 1:
        src, dst, opts = "", parts[0], ""
    elif len(parts) == 2:
        src, dst, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, opts = parts
    else:
        raise errors.InvalidArgument(f"invalid volume {text!r}: expected [SRC:]DST[:OPTIONS]")
    if not dst.startswith("/"):
        raise errors.InvalidArgument(f"invalid volume {text!r}: the container path must be absolute")
    options = ["rbind"]
    mode = "rw"
    for opt in [o for o in opts.split(",") if o]:
        if opt in ("ro", "rw"):
            mode = opt
        elif opt in ("z", "Z", "nocopy", "copy"):
            continue  # SELinux relabelling does not apply here; nocopy is honoured below
        elif opt in _PROPAGATION:
            options.append(opt)
        else:
            raise errors.InvalidArgument(f"invalid volume {text!r}: unknown option {opt!r}")
    options.append(mode)
    mount: dict[str, Any] = {"destination": dst, "type": "bind", "source": "", "options": options}
    if src.startswith("/") or src.startswith("."):
        mount["source"] = os.path.abspath(src)
        return mount, None
    from ctrpy.runtime.volumes import is_volume_name

    if src and not is_volume_name(src):
        raise errors.InvalidArgument(f"invalid volume {text!r}: {src!r} is neither an absolute path nor a volume name")
    mount["nocopy"] = "nocopy" in opts.split(",")
    return mount, src  # "" = anonymous


def parse_mount_flag(text: str) -> tuple[dict[str, Any], str | None]:
    """`--mount` in docker's syntax (type=bind|volume|tmpfs,source=,target=,readonly,bind-propagation=,
    tmpfs-size=) or ctr's (type=bind,src=,dst=,options=rbind:ro)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        fields[key.strip().lower()] = value if sep else "true"
    kind = fields.pop("type", "bind")
    src = fields.pop("src", fields.pop("source", ""))
    dst = fields.pop("dst", fields.pop("destination", fields.pop("target", "")))
    options = [o for o in fields.pop("options", "").split(":") if o]
    readonly = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("true", "1", "")
    propagation = fields.pop("bind-propagation", "")
    tmpfs_size = fields.pop("tmpfs-size", "")
    tmpfs_mode = fields.pop("tmpfs-mode", "")
    nocopy = fields.pop("volume-nocopy", "false").lower() in ("true", "1", "")
    fields.pop("consistency", None)
    if fields:
        raise errors.InvalidArgument(f"invalid --mount {text!r}: unknown keys {', '.join(sorted(fields))}")
    if not dst.startswith("/"):
        raise errors.InvalidArgument(f"invalid --mount {text!r}: the target must be an absolute path")
    if readonly and "ro" not in options:
        options.append("ro")
    if propagation:
        if propagation not in _PROPAGATION:
            raise errors.InvalidArgument(f"invalid --mount {text!r}: bad bind-propagation {propagation!r}")
        options.append(propagation)
    if kind == "tmpfs":
        if tmpfs_size:
            options.append(f"size={parse_bytes(tmpfs_size, 'tmpfs-size')}")
        if tmpfs_mode:
            options.append(f"mode={tmpfs_mode}")
        return {"destination": dst, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec"] + options}, None
    if kind == "volume":
        from ctrpy.runtime.volumes import is_volume_name

        if src and not is_volume_name(src):
            raise errors.InvalidArgument(f"invalid --mount {text!r}: bad volume name {src!r}")
        return {"destination": dst, "type": "bind", "source": "", "nocopy": nocopy,
                "options": ["rbind", "ro" if "ro" in options else "rw"] +
                           [o for o in options if o in _PROPAGATION]}, src
    if kind != "bind":
        raise errors.InvalidArgument(f"invalid --mount {text!r}: type must be bind, volume or tmpfs")
    if not src:
        raise errors.InvalidArgument(f"invalid --mount {text!r}: a bind mount needs a source")
    return {"destination": dst, "type": "bind", "source": oci.bind_source(src, options), "options": options}, None


def parse_device(text: str) -> dict[str, Any]:
    """`--device HOST[:CONTAINER][:PERMS]` -> an OCI linux.devices entry (plus `access`)."""

    parts = text.split(":")
    host = parts[0]
    dest = host
    access = "rwm"
    if len(parts) == 2:
        if set(parts[1]) <= set("rwm") and parts[1]:
            access = parts[1]
        else:
            dest = parts[1]
    elif len(parts) == 3:
        dest, access = parts[1], parts[2]
    elif len(parts) > 3:
        raise errors.InvalidArgument(f"invalid --device {text!r}")
    if not set(access) <= set("rwm") or not dest.startswith("/"):
        raise errors.InvalidArgument(f"invalid --device {text!r}: expected HOST[:CONTAINER][:rwm]")
    kind, st = oci.host_device(host, f"--device {host}")
    return {"path": dest, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": st.st_mode & 0o7777, "uid": 0, "gid": 0, "access": access}


def check_cpus(cpus: float) -> None:
    ncpu = os.cpu_count() or 1
    if cpus <= 0 or cpus > ncpu:
        raise errors.InvalidArgument(
            f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")


# ------------------------------------------------------------------------------------------ spec options

def with_devices(devices: list[dict[str, Any]]) -> oci.SpecOpt:
    def opt(spec: oci.Spec) -> None:
        linux = spec["linux"]
        entries = [{k: v for k, v in d.items() if k != "access"} for d in devices]
        paths = {d["path"] for d in entries}
        linux["devices"] = [d for d in linux.get("devices", []) if d["path"] not in paths] + entries
        rules = linux["resources"].setdefault("devices", [])
        rules.extend({"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
                      "access": d["access"]} for d in devices)
    return opt


def with_domainname(name: str) -> oci.SpecOpt:
    def opt(spec: oci.Spec) -> None:
        spec["domainname"] = name
    return opt


def with_memory_swap(limit: int) -> oci.SpecOpt:
    def opt(spec: oci.Spec) -> None:
        spec["linux"]["resources"].setdefault("memory", {})["swap"] = limit
    return opt


def with_cpuset_cpus(cpus: str) -> oci.SpecOpt:
    if not re.match(r"^\d+(-\d+)?(,\d+(-\d+)?)*$", cpus):
        raise errors.InvalidArgument(f"invalid --cpuset-cpus {cpus!r} (examples: 0, 0-1, 0,2)")
    ncpu = os.cpu_count() or 1
    for part in re.split(r"[,-]", cpus):
        if int(part) >= ncpu:
            raise errors.InvalidArgument(f"invalid --cpuset-cpus {cpus!r}: CPU {part} does not exist "
                                         f"(this host has CPUs 0-{ncpu - 1})")

    def opt(spec: oci.Spec) -> None:
        spec["linux"]["resources"].setdefault("cpu", {})["cpus"] = cpus
    return opt


def with_args(args: list[str]) -> oci.SpecOpt:
    def opt(spec: oci.Spec) -> None:
        spec["process"]["args"] = list(args)
    return opt


def with_init(binary: str = INIT_BINARY) -> oci.SpecOpt:
    """docker's --init: ctrpy-init (bind-mounted read-only) as PID 1, reaping zombies and forwarding signals."""
    if not os.access(binary, os.X_OK):
        raise errors.Unavailable(f"--init needs {binary}, built with ctrpy (reinstall it: pip install .)")

    def opt(spec: oci.Spec) -> None:
        spec["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": binary,
                               "options": ["bind", "ro", "nosuid", "nodev"]})
        spec["process"]["args"] = [INIT_PATH, "--"] + list(spec["process"]["args"])
    return opt


def _namespace_opt(kind: str, value: str, client: Client) -> oci.SpecOpt | None:
    oci_kind = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "network"}[kind]
    if not value or value == "private" or value == "shareable":
        return None
    if value == "host":
        return oci.with_host_namespace(oci_kind)
    if value.startswith("container:"):
        from ctrpy.runtime.names import resolve

        target = resolve(client, value.split(":", 1)[1])
        if not client.tasks.exists(target):
            raise errors.FailedPrecondition(f"container {target[:12]} is not running: start it first")
        state = client.tasks.state(target)
        if not state.pid or state.status.value not in ("running", "paused", "created"):
            raise errors.FailedPrecondition(f"container {target[:12]} is not running: start it first")
        ns = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "net"}[kind]
        return oci.with_namespace_path(oci_kind, f"/proc/{state.pid}/ns/{ns}")
    raise errors.InvalidArgument(f"invalid --{'net' if kind == 'network' else kind} {value!r}: "
                                 f"use host or container:NAME")


# ------------------------------------------------------------------------------------------------ create

def image_manifest(client: Client, image_ref: str, platform: str = "") -> Any:
    """The ImageManifest a container of `image_ref` runs: the --platform one (strictly: NotFound naming the
    platforms the image provides), else the host's."""
    from ctrpy.runtime.images import find_image, resolve_platform
    from ctrpy.runtime.unpack import resolve_chain

    image = find_image(client, image_ref)
    if platform:
        return resolve_platform(client.content, image, platform)
    return resolve_chain(client, image)[0]


def create(client: Client, req: RunRequest) -> Any:
    """Validate `req`, store the container, fill new named volumes from the image; returns the record."""
    from ctrpy.runtime import names
    from ctrpy.runtime.network import request_from_options
    from ctrpy.runtime.containers import ContainerOptions, create_container, read_env_file

    if req.name:
        names.validate_name(req.name)
        names.check_name_free(client, req.name)
    if req.ctr_id:
        container_id, name = req.ctr_id, req.name
    else:
        container_id = names.generate_id()
        name = req.name or names.generate_name(client)
    restart = parse_restart(req.restart, req.auto_remove)
    labels = parse_label_args(req.labels, req.label_files)
    if not req.ctr_id:
        labels[NAME_LABEL] = name
    if restart != "no":
        from ctrpy.runtime import restart as _restart

        labels[_restart.LABEL] = restart
    log_opts: dict[str, str] = {}
    max_size = 0
    for item in req.log_opts:
        key, sep, value = item.partition("=")
        if not sep or key not in ("max-size", "max-file"):
            raise errors.InvalidArgument(f"invalid --log-opt {item!r}: use max-size=SIZE or max-file=N")
        if key == "max-size":
            max_size = parse_bytes(value, "--log-opt max-size")
        elif not value.isdigit() or int(value) < 1:
            raise errors.InvalidArgument(f"invalid --log-opt {item!r}: max-file must be a positive integer")
        log_opts[key] = value
    if log_opts:
        from ctrpy.runtime.supervisor import LOG_MAX_FILE_ANNOTATION, LOG_MAX_SIZE_ANNOTATION

        annotations = {LOG_MAX_SIZE_ANNOTATION: str(max_size)}
        if "max-file" in log_opts:
            annotations[LOG_MAX_FILE_ANNOTATION] = log_opts["max-file"]
    stop_signal = req.stop_signal or ""
    if stop_signal:
        from ctrpy.runtime.lifecycle import parse_signal

        try:
            parse_signal(stop_signal)
        except errors.InvalidArgument:
            raise errors.InvalidArgument(f"invalid --stop-signal {stop_signal!r}") from None

    spec_opts: list[oci.SpecOpt] = []
    cfg: dict[str, Any] = {}
    if req.image:
        cfg = image_manifest(client, req.image, req.platform).config.get("config") or {}
    args: list[str] = []
    if req.entrypoint is not None:
        args = ([req.entrypoint] if req.entrypoint else []) + list(req.command)
    elif req.command:
        args = list(cfg.get("Entrypoint") or []) + list(req.command)
    if req.entrypoint == "" and not req.command:
        args = []
    if log_opts:
        spec_opts.append(oci.with_annotations(annotations))
    if req.init:
        spec_opts.append(with_init())
    if req.domainname:
        spec_opts.append(with_domainname(req.domainname))
    memory = parse_bytes(req.memory, "--memory") if req.memory is not None else None
    if req.memory_swap is not None:
        if memory is None:
            raise errors.InvalidArgument("--memory-swap needs --memory (it is memory plus swap)")
        swap = -1 if req.memory_swap == "-1" else parse_bytes(req.memory_swap, "--memory-swap")
        if swap != -1 and swap < memory:
            raise errors.InvalidArgument("--memory-swap must be at least --memory (it is memory plus swap)")
        spec_opts.append(with_memory_swap(swap))
    if req.cpus is not None:
        check_cpus(req.cpus)
    if req.cpuset_cpus:
        spec_opts.append(with_cpuset_cpus(req.cpuset_cpus))
    for text in req.ulimits:
        spec_opts.append(oci.with_rlimit(*parse_ulimit(text)))
    spec_opts += oci.with_security_opts(req.security_opt)
    if req.userns_remap:
        spec_opts.append(oci.with_userns_remap(req.userns_remap))
    if req.devices:
        spec_opts.append(with_devices([parse_device(d) for d in req.devices]))
    if req.uts == "host" and (req.hostname or req.domainname):
        raise errors.InvalidArgument("conflicting options: --hostname/--domainname and --uts host (as docker)")
    for kind, value in (("pid", req.pid), ("ipc", req.ipc), ("uts", req.uts)):
        o = _namespace_opt(kind, value, client)
        if o is not None:
            spec_opts.append(o)
    network = req.network
    if network and network.startswith("container:"):
        o = _namespace_opt("network", network, client)
        assert o is not None
        spec_opts.append(o)
        if req.publish or req.publish_all or req.ip:
            raise errors.InvalidArgument("-p, -P and --ip cannot be used with --network container:...")
        net_request = request_from_options(network="none", dns=tuple(req.dns), dns_search=tuple(req.dns_search),
                                           dns_option=tuple(req.dns_option), add_host=tuple(req.add_host))
    else:
        publish = list(req.publish)
        if req.publish_all:
            for port in sorted(cfg.get("ExposedPorts") or {}):
                publish.append(port)
        net_request = request_from_options(network=network, ip=req.ip, publish=tuple(publish),
                                           add_host=tuple(req.add_host), dns=tuple(req.dns),
                                           dns_search=tuple(req.dns_search), dns_option=tuple(req.dns_option))
    # Mounts: -v and --mount (named and anonymous volumes resolved through the volume store), --tmpfs.
    from ctrpy.runtime.volumes import VolumeStore

    volumes = VolumeStore(client)
    mounts: list[dict[str, Any]] = []
    named: list[tuple[str, dict[str, Any]]] = []
    parsed = [parse_volume(v) for v in req.volumes] + [parse_mount_flag(m) for m in req.mounts]
    for mount, vol in parsed:
        if vol is None:
            if mount["type"] == "bind" and not os.path.exists(mount["source"]):
                os.makedirs(mount["source"], exist_ok=True)  # docker creates a missing -v host directory
            mounts.append(mount)
        else:
            named.append((vol, mount))
    mounts += [parse_tmpfs(t) for t in req.tmpfs]
    volume_names: list[str] = []
    created_volumes: list[str] = []
    for vol, mount in named:
        existed = bool(vol) and volumes.exists(vol)
        info = volumes.create(vol or None, exist_ok=True)
        if not existed:
            created_volumes.append(info["Name"])
        mount["source"] = info["Mountpoint"]
        volume_names.append(info["Name"])
        mounts.append(mount)
    if mounts:
        spec_opts.append(oci.with_mounts([{k: v for k, v in m.items() if k != "nocopy"} for m in mounts]))
    if args:
        spec_opts.insert(0, with_args(args))  # before --init, which wraps the arguments

    env = [e for f in req.env_files for e in read_env_file(f)] + parse_env(req.env)
    hostname = req.hostname or (container_id if req.ctr_id else container_id[:12])
    docker = {
        "name": name, "image": req.image, "cmd": list(req.command), "entrypoint": req.entrypoint,
        "tty": req.tty, "open_stdin": req.interactive, "auto_remove": req.auto_remove,
        "stop_signal": stop_signal, "stop_timeout": req.stop_timeout, "restart": restart, "log_opts": log_opts,
        "volumes": volume_names, "mounts": [{k: v for k, v in m.items() if k != "nocopy"} for m in mounts],
        "init": req.init, "publish_all": req.publish_all, "platform": req.platform,
        "host_config": {"Memory": memory or 0, "MemorySwap": req.memory_swap, "NanoCpus": int((req.cpus or 0) * 1e9),
                        "CpuShares": req.cpu_shares or 0, "CpusetCpus": req.cpuset_cpus,
                        "PidsLimit": req.pids_limit, "Privileged": req.privileged, "ReadonlyRootfs": req.read_only,
                        "CapAdd": list(req.cap_add), "CapDrop": list(req.cap_drop),
                        "SecurityOpt": list(req.security_opt), "Ulimits": list(req.ulimits),
                        "Devices": list(req.devices), "Tmpfs": list(req.tmpfs), "Binds": list(req.volumes),
                        "PidMode": req.pid, "IpcMode": req.ipc, "UTSMode": req.uts,
                        "NetworkMode": network or "bridge", "Dns": list(req.dns), "DnsSearch": list(req.dns_search),
                        "DnsOptions": list(req.dns_option), "ExtraHosts": list(req.add_host),
                        "GroupAdd": list(req.group_add), "Init": req.init, "AutoRemove": req.auto_remove,
                        "PublishAllPorts": req.publish_all, "PortBindings": list(req.publish)},
    }
    opts = ContainerOptions(
        id=container_id, image=req.image, rootfs=req.rootfs, args=[], env=env, labels=labels,
        cwd=req.workdir, user=req.user, group_add=list(req.group_add), tty=req.tty, snapshotter=req.snapshotter,
        runtime=req.runtime,
        hostname=hostname, read_only=req.read_only, privileged=req.privileged, cap_add=list(req.cap_add),
        cap_drop=list(req.cap_drop), memory_limit=memory, cpus=req.cpus, cpu_shares=req.cpu_shares,
        pids_limit=req.pids_limit, network=net_request, spec_opts=spec_opts, extensions={DOCKER_EXT: docker},
        platform=req.platform,
    )
    try:
        with names.name_lock(client):
            if not req.ctr_id:  # again, under the lock: two `run --name x` at once must not both win
                names.check_name_free(client, name)
            container = create_container(client, opts)
        _copy_up(client, container, named, created_volumes, volumes)
    except BaseException:
        for vol in created_volumes:
            try:
                volumes.remove(vol, force=True)
            except errors.CtrpyError:
                pass
        raise
    return container


def _copy_up(client: Client, container: Any, named: list[tuple[str, dict[str, Any]]], created: list[str],
             volumes: Any) -> None:
    """docker's copy-up: a new volume gets the image's content at its mount point (unless nocopy)."""
    todo = [(m["source"], m["destination"]) for vol, m in named
            if not m.get("nocopy") and Path(m["source"]).parent.name in created]
    if not todo or not container.snapshot_key:
        return
    from ctrpy.runtime.unpack import apply_to_mounts

    def fill(directory: str) -> None:
        for source, dest in todo:
            inside = _inside(Path(directory), dest)
            if inside is not None:
                volumes.copy_up(Path(source).parent.name, inside)

    apply_to_mounts(client, client.snapshotter(container.snapshotter).mounts(container.snapshot_key), fill)


def _inside(root: Path, path: str) -> Path | None:
    """`path` under `root` when no component is a symbolic link (which could lead out of the rootfs)."""
    current = root
    for part in [p for p in path.split("/") if p and p != "."]:
        if part == "..":
            return None
        current = current / part
        if current.is_symlink():
            return None
    return current


def is_docker_shaped(container: Any) -> bool:
    """Created by `run`/`create` in docker's shape (it has a name); ctr-shaped containers keep ctr's stdio
    behaviour (stdin always attached to exec, one combined log)."""
    return NAME_LABEL in container.labels


def docker_config(container: Any) -> dict[str, Any]:
    """The DOCKER_EXT extension of a container (empty for ctr-shaped containers)."""
    ext: dict[str, Any] = container.extensions.get(DOCKER_EXT) or {}
    return ext


def command_of(container: Any) -> list[str]:
    """The container's command as docker's `ps` and `inspect` (Path, Args) show it: without --init's prefix,
    which docker too puts only into the OCI spec."""
    args: list[str] = list((container.spec.get("process") or {}).get("args") or [])
    if docker_config(container).get("init") and args[:2] == [INIT_PATH, "--"]:
        return args[2:]
    return args
