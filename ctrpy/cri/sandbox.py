"""Pod sandboxes: the namespaces a pod's containers share, held by a pause process (containerd's sandbox
container, without its image).

A sandbox is a container record in namespace k8s.io labelled `io.ctrpy.cri.kind=sandbox`, with no rootfs and
no task; its CRI facts sit in the record's `ctrpy.io/cri` extension:

    config        the PodSandboxConfig (JSON), returned as given
    created_at    nanoseconds since the epoch
    state         "ready" | "notready"
    pause         {"pid", "start"}: the pause process and its start time (so a reused pid is not taken for it)
    ip            the pod's address (CNI or ctrpy's bridge), "" with host networking
    dir           <state>/cri/sandboxes/<id>/: hosts, resolv.conf, hostname for every container of the pod

The pause process comes from csrc/pause.c (`helper.pause_spawn`): it unshares network, IPC and UTS (not
network and UTS with hostNetwork, not IPC with hostIPC) and PID when the pod shares one, and is adopted by
init, so neither the server's exit nor its restart touches a pod. Containers join its namespaces through
/proc/<pid>/ns/*. Networking attaches the pause's network namespace through ctrpy's network module: the first
CNI conflist of [cri] cni_conf_dir, else ctrpy's own bridge.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.cri import EXTENSION, KIND_SANDBOX, LABEL_KIND, LABEL_NAME
from ctrpy.runtime import errors
from ctrpy.runtime.linux.proc import start_time as proc_start_time

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3  # runtime.v1 NamespaceMode


def new_id() -> str:
    return secrets.token_hex(32)


def pause_alive(ext: dict[str, Any]) -> bool:
    pause = ext.get("pause") or {}
    pid = int(pause.get("pid") or 0)
    return pid > 0 and proc_start_time(pid) == pause.get("start")


def ns_path(ext: dict[str, Any], kind: str) -> str:
    """/proc/<pause>/ns/<kind> of a live sandbox."""
    return f"/proc/{int(ext['pause']['pid'])}/ns/{kind}"


def sandbox_name(meta: Any) -> str:
    return f"{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


def _network_name(client: Client) -> str:
    """The first CNI network of the conf dir (kubelet's and containerd's choice), else ctrpy's bridge."""
    from ctrpy.runtime.network import cni_conflists

    lists = cni_conflists(client)
    if lists:
        return sorted(lists.values(), key=lambda c: c.path)[0].name
    return "bridge"


def network_status(client: Client) -> tuple[bool, str, str]:
    """(ready, reason, message) for the NetworkReady condition."""
    conf_dir = str(client.config.get("network.cni_conf_dir", "") or "")
    try:
        name = _network_name(client)
    except errors.CtrpyError as exc:
        return False, "NetworkPluginNotReady", str(exc)
    if name == "bridge":
        # No CNI configuration: pods still get a network through ctrpy's own bridge.
        return True, "NoCNIConfigUsingBridge", (
            f"no CNI network config found in {conf_dir or '(none)'}: pods use ctrpy's bridge "
            f"{client.config.get('network.bridge', 'ctrpy0')}")
    return True, "", ""


def run(svc: Any, config: Any, runtime_handler: str) -> str:
    """RunPodSandbox: record, pause process, /etc files, network; nothing left behind on failure."""
    from google.protobuf import json_format

    from ctrpy.runtime import helper, oci
    from ctrpy.runtime.metadata.containers import Container

    client = svc.client
    meta = config.metadata
    if not meta.name or not meta.namespace or not meta.uid:
        raise errors.InvalidArgument("pod sandbox metadata must give name, namespace and uid")
    runtime_name = svc.runtime_for_handler(runtime_handler)
    linux = config.linux
    sc = linux.security_context
    nsopts = sc.namespace_options
    host_net = nsopts.network == NODE
    host_ipc = nsopts.ipc == NODE
    pid_mode = nsopts.pid
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user"):
        raise errors.InvalidArgument("run_as_group is set without run_as_user")
    name = sandbox_name(meta)
    with svc.lock:
        existing = [c for c in client.containers.list()
                    if c.labels.get(LABEL_KIND) == KIND_SANDBOX and c.labels.get(LABEL_NAME) == name]
        if existing:
            raise errors.AlreadyExists(f"pod sandbox name {name!r} is already reserved for {existing[0].id}")
        sid = new_id()
        directory = Path(client.state) / "cri" / "sandboxes" / sid
        ext: dict[str, Any] = {
            "config": json_format.MessageToDict(config, preserving_proto_field_name=True),
            "created_at": time.time_ns(), "state": "notready", "pause": {}, "ip": "", "dir": str(directory),
            "runtime_handler": runtime_handler,
        }
        record = Container(id=sid, runtime_name=runtime_name, spec={}, extensions={EXTENSION: ext},
                           labels={LABEL_KIND: KIND_SANDBOX, LABEL_NAME: name})
        client.containers.create(record)
    pause_pid = 0
    networked = False
    try:
        # No hostname given: the pod keeps the node's (a new UTS namespace starts with a copy of it).
        hostname = socket.gethostname() if host_net or not config.hostname else config.hostname
        dns = config.dns_config
        oci.prepare_etc_files(directory, hostname=hostname, net_host=host_net, dns=list(dns.servers),
                              dns_search=list(dns.searches), dns_options=list(dns.options))
        flags = 0
        if not host_net:
            flags |= helper.lib.CLONE_NEWNET | helper.lib.CLONE_NEWUTS
        if not host_ipc:
            flags |= helper.lib.CLONE_NEWIPC
        if pid_mode == POD:
            flags |= helper.lib.CLONE_NEWPID
        sandbox_image = str(svc.cri_config.get("sandbox_image") or "")
        if sandbox_image:
            pause_pid = _run_sandbox_image(svc, record, sandbox_image, host_net=host_net, host_ipc=host_ipc,
                                           pid_pod=pid_mode == POD, hostname=config.hostname)
        else:
            pause_pid = helper.pause_spawn(flags, "" if host_net else config.hostname)
        ext["pause"] = {"pid": pause_pid, "start": proc_start_time(pause_pid)}
        if not host_net:
            from ctrpy.runtime import network as net

            ports = tuple(net.PortMapping(int(p.host_port), int(p.container_port),
                                          ("tcp", "udp", "sctp")[p.protocol], p.host_ip or "0.0.0.0")
                          for p in config.port_mappings if p.host_port > 0)
            request = net.NetworkRequest(network=_network_name(client), ports=ports)
            networked = True
            result = net.attach(client, sid, f"/proc/{pause_pid}/ns/net", request)
            ext["ip"] = result.address or ""
        ext["state"] = "ready"
        record.extensions = {EXTENSION: ext}
        client.containers.update(record, ["extensions"])
    except BaseException:
        _kill_pause(ext)
        if networked:
            _detach(client, sid)
        shutil.rmtree(directory, ignore_errors=True)
        try:
            if record.snapshot_key:
                from ctrpy.runtime.containers import delete_container

                delete_container(client, sid, force=True)
            else:
                client.containers.delete(sid)
        except errors.NotFound:
            pass
        raise
    return sid


def _run_sandbox_image(svc: Any, record: Any, ref: str, *, host_net: bool, host_ipc: bool, pid_pod: bool,
                       hostname: str) -> int:
    """[cri] sandbox_image set: the namespaces are held by that image's process, run as the sandbox record's
    own task (containerd's way), instead of the helper's pause process. Returns its host pid."""
    from ctrpy.runtime import oci
    from ctrpy.runtime.unpack import resolve_chain, unpack_image

    client = svc.client
    img = svc.images.find(ref)
    if img is None:
        from ctrpy.runtime.pull import options_from_config, pull

        pull(client, ref, options_from_config(client.config))
        img = svc.images.get(ref)
    image = img.records[0]
    snapshotter = svc.cri_config.get("snapshotter") or client.config["default_snapshotter"]
    chain = unpack_image(client, image, snapshotter)
    image_config = resolve_chain(client, image)[0].config
    mounts = client.snapshotter(snapshotter).prepare(record.id, chain)
    opts = [oci.with_image_config(image_config, oci.mounts_reader(mounts)), oci.with_readonly_rootfs(True),
            oci.with_cgroups_path(oci.cgroups_path(client.config.get("cgroup.parent", "ctrpy"), client.namespace,
                                                   record.id))]
    if host_net:
        opts += [oci.with_host_namespace("network"), oci.with_host_namespace("uts")]
    elif hostname:
        opts.append(oci.with_hostname(hostname))
    if host_ipc:
        opts.append(oci.with_host_namespace("ipc"))
    if not pid_pod:
        opts.append(oci.with_host_namespace("pid"))  # nobody joins it: the pause needs no PID namespace
    record.spec = oci.generate_spec(*opts)
    record.image = image.name
    record.snapshotter = snapshotter
    record.snapshot_key = record.id
    # The record was created without a rootfs: rewrite it with one (it is not visible as ready before).
    client.containers.delete(record.id)
    client.containers.create(record)
    client.tasks.create(record.id)
    client.tasks.start(record.id)
    return int(client.tasks.dir(record.id).init_pid() or 0)


def _kill_pause(ext: dict[str, Any]) -> None:
    if pause_alive(ext):
        pid = int(ext["pause"]["pid"])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while proc_start_time(pid) is not None and time.monotonic() < deadline:
            try:  # our own child when the server is a subreaper; otherwise init reaps it
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)


def _detach(client: Client, sid: str) -> None:
    from ctrpy.runtime import network as net

    try:
        net.detach(client, sid)
    except errors.CtrpyError:
        pass


def stop(svc: Any, record: Any) -> None:
    """StopPodSandbox: the containers are stopped by the caller; here the pause process and the network."""
    ext = record.extensions[EXTENSION]
    _kill_pause(ext)
    _detach(svc.client, record.id)
    if ext.get("state") != "notready":
        ext["state"] = "notready"
        record.extensions = {**record.extensions, EXTENSION: ext}
        svc.client.containers.update(record, ["extensions"])


def remove(svc: Any, record: Any) -> None:
    ext = record.extensions[EXTENSION]
    stop(svc, record)
    shutil.rmtree(ext.get("dir") or "/nonexistent", ignore_errors=True)
    try:
        if record.snapshot_key:  # a sandbox image's task and rootfs
            from ctrpy.runtime.containers import delete_container

            delete_container(svc.client, record.id, force=True)
        else:
            svc.client.containers.delete(record.id)
    except errors.NotFound:
        pass
