"""CRI ContainerConfig -> OCI runtime spec, with ctrpy's oci.with_*() options (containerd's
pkg/cri/server/container_create_linux.go, in ctrpy's terms).

Namespaces are joined by path from the sandbox's pause process; the security context maps to the user, caps,
privileged, read-only rootfs, no_new_privs, masked/read-only paths and seccomp; mounts keep their
propagation; oom_score_adj is clamped to what the server may set when CAP_SYS_RESOURCE is missing
([cri] restrict_oom_score_adj, containerd's option of the same name).
"""

from __future__ import annotations

import os
import stat as _stat
from pathlib import Path
from typing import Any

from ctrpy.cri.sandbox import NODE, POD, TARGET, ns_path
from ctrpy.runtime import errors, oci

PROPAGATION = {0: "rprivate", 1: "rslave", 2: "rshared"}

def seccomp_opts(sc: Any) -> list[Any]:
    """The profile the security context asks for, as spec options. RuntimeDefault keeps the spec's default
    (containerd's/moby's profile, ctrpy.runtime.seccomp, made for the container's final capabilities);
    unconfined and privileged containers get none."""
    if sc.privileged:
        return [oci.with_seccomp(None)]
    if sc.HasField("seccomp"):
        kind = sc.seccomp.profile_type
        if kind == 1:  # Unconfined
            return [oci.with_seccomp(None)]
        if kind == 2:  # Localhost
            return [oci.with_seccomp_file(sc.seccomp.localhost_ref)]
        return []
    path = sc.seccomp_profile_path
    if not path or path == "unconfined":
        return [oci.with_seccomp(None)]
    if path in ("runtime/default", "docker/default"):
        return []
    if path.startswith("localhost/"):
        return [oci.with_seccomp_file(path[len("localhost/"):])]
    raise errors.InvalidArgument(f"unsupported seccomp profile {path!r}: use runtime/default, unconfined or "
                                 "localhost/<path>")


def clamp_oom_score_adj(value: int, restrict: bool) -> int:
    """Without CAP_SYS_RESOURCE nobody may go below the current value: clamp instead of failing every pod."""
    if not restrict:
        return value
    try:
        current = int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return value
    if value < current:
        import sys

        sys.stderr.write(f"ctrpy serve: warning: oom_score_adj {value} clamped to {current} "
                         "([cri] restrict_oom_score_adj)\n")
    return max(value, current)


def with_resources(res: Any, restrict_oom: bool) -> oci.SpecOpt:
    def opt(spec: oci.Spec) -> None:
        r = spec["linux"].setdefault("resources", {})
        cpu = {}
        if res.cpu_period:
            cpu["period"] = int(res.cpu_period)
        if res.cpu_quota:
            cpu["quota"] = int(res.cpu_quota)
        if res.cpu_shares:
            cpu["shares"] = int(res.cpu_shares)
        if res.cpuset_cpus:
            cpu["cpus"] = res.cpuset_cpus
        if res.cpuset_mems:
            cpu["mems"] = res.cpuset_mems
        if cpu:
            r["cpu"] = cpu
        if res.memory_limit_in_bytes:
            r["memory"] = {"limit": int(res.memory_limit_in_bytes)}
            if res.memory_swap_limit_in_bytes:
                r["memory"]["swap"] = int(res.memory_swap_limit_in_bytes)
        if res.unified:
            r["unified"] = dict(res.unified)
        spec["process"]["oomScoreAdj"] = clamp_oom_score_adj(int(res.oom_score_adj), restrict_oom)
    return opt


def _device(dev: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    kind, st = oci.host_device(dev.host_path, f"device {dev.host_path}")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    entry = {"path": dev.container_path or dev.host_path, "type": kind, "major": major, "minor": minor,
             "fileMode": _stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": dev.permissions or "rwm"}
    return entry, rule


def _mounts(config: Any) -> tuple[list[dict[str, Any]], str]:
    """The bind mounts, and the rootfs propagation they need ("" when private is enough)."""
    out = []
    rootfs_propagation = ""
    for m in config.mounts:
        if not m.container_path or not m.host_path:
            raise errors.InvalidArgument("a mount needs container_path and host_path")
        src = m.host_path
        if not os.path.exists(src):
            os.makedirs(src, exist_ok=True)  # as containerd does for a missing host directory
        src = os.path.realpath(src)
        prop = PROPAGATION.get(int(m.propagation), "rprivate")
        if prop == "rshared":
            rootfs_propagation = "rshared"
        elif prop == "rslave" and rootfs_propagation != "rshared":
            rootfs_propagation = "rslave"
        out.append({"destination": m.container_path, "type": "bind", "source": src,
                    "options": ["rbind", prop, "ro" if m.readonly else "rw"]})
    return out, rootfs_propagation


def user_opts(sc: Any, image_user: str, read: oci.FileReader) -> oci.SpecOpt:
    has_user = sc.HasField("run_as_user") or bool(sc.run_as_username)
    if sc.HasField("run_as_group") and not has_user:
        raise errors.InvalidArgument("run_as_group is set without run_as_user or run_as_username")
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    elif sc.run_as_username:
        user = sc.run_as_username
    else:
        user = image_user or ""
    uid, gid, extra = oci.resolve_user(user, read)
    if not user or user == "0" or user == "root":
        extra = []
    if sc.HasField("run_as_group"):
        gid = int(sc.run_as_group.value)
    for g in sc.supplemental_groups:
        if int(g) not in extra:
            extra.append(int(g))
    return oci.with_user(uid, gid, extra)


def cgroups_path(svc: Any, cgroup_parent: str, cid: str) -> str:
    """Under the pod's cgroup when kubelet gives one (cgroupfs driver: an absolute path), as containerd does;
    else ctrpy's own parent."""
    if cgroup_parent.startswith("/"):
        return cgroup_parent.rstrip("/") + "/" + cid
    return oci.cgroups_path(svc.client.config.get("cgroup.parent", "ctrpy"), svc.client.namespace, cid)


def build_spec(svc: Any, cid: str, config: Any, sandbox_config: Any, sandbox_ext: dict[str, Any],
               image_config: dict[str, Any], read: oci.FileReader, target_pid: int | None) -> oci.Spec:
    """The OCI spec of a CRI container in the given sandbox."""
    cfg = image_config.get("config") or {}
    sc = config.linux.security_context
    sb_sc = sandbox_config.linux.security_context
    opts: list[oci.SpecOpt] = [oci.with_image_config({"config": {**cfg, "User": ""}}, None)]
    if config.command:
        opts.append(oci.with_process_args(list(config.command) + list(config.args)))
    elif config.args:
        opts.append(oci.with_process_args(list(cfg.get("Entrypoint") or []) + list(config.args)))
    if config.envs:
        opts.append(oci.with_env([f"{kv.key}={kv.value}" for kv in config.envs]))
    if config.working_dir:
        opts.append(oci.with_cwd(config.working_dir))
    if config.tty:
        opts.append(oci.with_tty(True))
    opts.append(user_opts(sc, str(cfg.get("User") or ""), read))
    if sc.readonly_rootfs:
        opts.append(oci.with_readonly_rootfs(True))
    if sc.privileged:
        if not sb_sc.privileged:
            raise errors.InvalidArgument("a privileged container needs a privileged pod sandbox")
        opts.append(oci.with_privileged())
    else:
        caps = sc.capabilities
        if caps.add_capabilities or caps.drop_capabilities:
            opts.append(oci.with_capabilities(list(caps.add_capabilities), list(caps.drop_capabilities)))
    opts.append(oci.with_no_new_privileges(bool(sc.no_new_privs)))
    opts.extend(seccomp_opts(sc))
    mounts, rootfs_propagation = _mounts(config)
    if mounts:
        opts.append(oci.with_mounts(mounts))
    opts.append(with_resources(config.linux.resources, bool(svc.cri_config.get("restrict_oom_score_adj", True))))
    opts.append(oci.with_cgroups_path(cgroups_path(svc, sandbox_config.linux.cgroup_parent, cid)))
    spec = oci.generate_spec(*opts)
    linux = spec["linux"]
    if not sc.privileged:
        if sc.masked_paths:
            linux["maskedPaths"] = list(sc.masked_paths)
        if sc.readonly_paths:
            linux["readonlyPaths"] = list(sc.readonly_paths)
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation
    for dev in config.devices:
        entry, rule = _device(dev)
        linux.setdefault("devices", []).append(entry)
        linux["resources"].setdefault("devices", []).append(rule)
    sysctls = dict(sandbox_config.linux.sysctls)
    if sysctls:
        linux["sysctl"] = sysctls
    # Namespaces: the pod's by path, the host's for NODE, the container's own for CONTAINER.
    sb_ns = sb_sc.namespace_options
    nsopt = sc.namespace_options
    spaces = [{"type": "mount"}]
    if sb_ns.network != NODE:
        spaces.append({"type": "network", "path": ns_path(sandbox_ext, "net")})
        spaces.append({"type": "uts", "path": ns_path(sandbox_ext, "uts")})
    if sb_ns.ipc != NODE:
        spaces.append({"type": "ipc", "path": ns_path(sandbox_ext, "ipc")})
    pid_mode = nsopt.pid
    if pid_mode == TARGET:
        if target_pid is None:
            raise errors.NotFound(f"target container {nsopt.target_id!r} of the PID namespace is not running")
        spaces.append({"type": "pid", "path": f"/proc/{target_pid}/ns/pid"})
    elif pid_mode == POD and sb_ns.pid == POD:
        spaces.append({"type": "pid", "path": ns_path(sandbox_ext, "pid")})
    elif pid_mode != NODE:
        spaces.append({"type": "pid"})
    linux["namespaces"] = spaces
    spec["hostname"] = ""
    spec["annotations"] = {"io.kubernetes.cri.container-type": "container",
                           "io.kubernetes.cri.sandbox-id": sandbox_ext.get("id", "")}
    return spec
