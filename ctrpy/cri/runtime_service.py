"""RuntimeService: pod sandboxes and containers in namespace k8s.io, on ctrpy's containers, tasks and networks.

A CRI container is a ctrpy container (record + rootfs snapshot, `ctrpy.io/cri` extension with its config and
times) whose task is created at StartContainer, as containerd's CRI does. Its state comes from the task:

    no task, never started            CONTAINER_CREATED
    task running (or paused)          CONTAINER_RUNNING
    task stopped (exit.json)          CONTAINER_EXITED, with exit code, finished_at, reason Completed/Error/OOMKilled
    start failed                      CONTAINER_EXITED, reason StartError, the runtime's message
    supervisor gone, process alive    CONTAINER_UNKNOWN

Its output goes to the log path kubelet gives, in the CRI log format, written by the task's supervisor
(tasks.LOG_EXTENSION), so logs keep flowing while the server restarts.
"""

from __future__ import annotations

import os
import signal as _signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ctrpy import __version__
from ctrpy.cri import (CRI_API_VERSION, EXTENSION, KIND_CONTAINER, KIND_SANDBOX, LABEL_KIND, LABEL_NAME,
                       LABEL_SANDBOX, RUNTIME_NAME)
from ctrpy.cri import sandbox as sb
from ctrpy.cri.proto import api_pb2 as api
from ctrpy.cri.proto import api_pb2_grpc
from ctrpy.cri.server import guard_all
from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

CREATED, RUNNING, EXITED, UNKNOWN = api.CONTAINER_CREATED, api.CONTAINER_RUNNING, api.CONTAINER_EXITED, \
    api.CONTAINER_UNKNOWN
SANDBOX_READY, SANDBOX_NOTREADY = api.SANDBOX_READY, api.SANDBOX_NOTREADY


def _parse_time(stamp: str) -> int:
    """RFC 3339 with nanoseconds (the supervisor's exited_at) -> nanoseconds since the epoch."""
    from ctrpy.runtime import timefmt

    if not stamp:
        return 0
    try:
        return timefmt.parse_ns(stamp)
    except ValueError:
        return 0


def _labels_match(selector: Any, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@guard_all
class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, client: Client, images: Any) -> None:
        self.client = client
        self.images = images
        self.cri_config = dict(client.config.get("cri") or {})
        net = client.config.data.setdefault("network", {})
        # Pods use the node's CNI configuration (kubelet's /etc/cni/net.d), not the CLI's.
        net["cni_conf_dir"] = self.cri_config.get("cni_conf_dir", "/etc/cni/net.d")
        net["cni_bin_dir"] = self.cri_config.get("cni_bin_dir", "/usr/lib/cni")
        self.runtime = self.cri_config.get("runtime") or client.config["default_runtime"]
        self.lock = threading.RLock()
        self._children: set[int] = set()
        from ctrpy.cri.streaming import StreamingServer

        self.streaming = StreamingServer(self, str(self.cri_config.get("stream_address") or "127.0.0.1"),
                                         int(self.cri_config.get("stream_port") or 0))

    # ---- helpers -------------------------------------------------------------------------------------------

    def runtime_for_handler(self, handler: str) -> str:
        if not handler:
            return str(self.runtime)
        if handler not in (self.client.config.get("runtimes") or {}):
            raise errors.NotFound(f"no runtime for handler {handler!r} is configured")
        return handler

    def reap(self) -> None:
        """Collect the supervisors this server launched once they exit (they are its children)."""
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.discard(pid)

    def _record(self, rid: str, kind: str) -> Any:
        if not rid:
            raise errors.InvalidArgument(f"no {kind} id given")
        try:
            record = self.client.containers.get(rid)
        except errors.NotFound:
            record = None
        except errors.InvalidArgument:
            record = None
        if record is None or record.labels.get(LABEL_KIND) != kind:
            # A unique prefix of an id is accepted too, as crictl users expect.
            matches = list(self._listed(kind, rid))
            if len(matches) != 1:
                what = "pod sandbox" if kind == KIND_SANDBOX else "container"
                raise errors.NotFound(f"{what} {rid!r} not found")
            record = matches[0]
        return record

    def _sandbox(self, sid: str) -> Any:
        return self._record(sid, KIND_SANDBOX)

    def _container(self, cid: str) -> Any:
        return self._record(cid, KIND_CONTAINER)

    def _listed(self, kind: str, id_prefix: str = "", sandbox_prefix: str = "") -> Iterator[Any]:
        """The records of one kind, narrowed by the id and sandbox-id prefixes of a CRI list filter."""
        for record in self.client.containers.list():
            if record.labels.get(LABEL_KIND) != kind or not record.id.startswith(id_prefix):
                continue
            if sandbox_prefix and not record.labels.get(LABEL_SANDBOX, "").startswith(sandbox_prefix):
                continue
            yield record

    def _containers_of(self, sid: str) -> list[Any]:
        return [c for c in self._listed(KIND_CONTAINER) if c.labels.get(LABEL_SANDBOX) == sid]

    def _save_ext(self, record: Any, ext: dict[str, Any]) -> None:
        record.extensions = {**record.extensions, EXTENSION: ext}
        self.client.containers.update(record, [f"extensions.{EXTENSION}"])

    # ---- version, status, config ---------------------------------------------------------------------------

    def Version(self, request: Any, context: Any) -> Any:
        return api.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=__version__,
                                   runtime_api_version=CRI_API_VERSION)

    def Status(self, request: Any, context: Any) -> Any:
        ready, reason, message = sb.network_status(self.client)
        conditions = [api.RuntimeCondition(type="RuntimeReady", status=True),
                      api.RuntimeCondition(type="NetworkReady", status=ready, reason=reason, message=message)]
        info = {}
        if request.verbose:
            import json

            info["config"] = json.dumps({"cri": self.cri_config, "runtime": self.runtime,
                                         "root": str(self.client.root), "state": str(self.client.state)})
        return api.StatusResponse(status=api.RuntimeStatus(conditions=conditions), info=info)

    def UpdateRuntimeConfig(self, request: Any, context: Any) -> Any:
        # The pod CIDR kubelet sends is not kept: pod addresses come from the node's CNI conflist (its IPAM),
        # and nothing here templates a conflist from the CIDR as containerd's cni conf template can.
        return api.UpdateRuntimeConfigResponse()

    # ---- pod sandboxes -------------------------------------------------------------------------------------

    def RunPodSandbox(self, request: Any, context: Any) -> Any:
        return api.RunPodSandboxResponse(pod_sandbox_id=sb.run(self, request.config, request.runtime_handler))

    def StopPodSandbox(self, request: Any, context: Any) -> Any:
        try:
            record = self._sandbox(request.pod_sandbox_id)
        except errors.NotFound:
            return api.StopPodSandboxResponse()  # idempotent, as the CRI asks
        for c in self._containers_of(record.id):
            self._stop_container(c, 0)
        sb.stop(self, record)
        return api.StopPodSandboxResponse()

    def RemovePodSandbox(self, request: Any, context: Any) -> Any:
        try:
            record = self._sandbox(request.pod_sandbox_id)
        except errors.NotFound:
            return api.RemovePodSandboxResponse()  # idempotent, as the CRI asks
        for c in self._containers_of(record.id):
            self._remove_container(c)
        sb.remove(self, record)
        return api.RemovePodSandboxResponse()

    def _sandbox_state(self, ext: dict[str, Any]) -> Any:
        return SANDBOX_READY if ext.get("state") == "ready" and sb.pause_alive(ext) else SANDBOX_NOTREADY

    def _sandbox_meta(self, ext: dict[str, Any]) -> tuple[Any, Any]:
        from google.protobuf import json_format

        config = json_format.ParseDict(ext["config"], api.PodSandboxConfig(), ignore_unknown_fields=True)
        return config, config.metadata

    def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        record = self._sandbox(request.pod_sandbox_id)
        ext = record.extensions[EXTENSION]
        config, meta = self._sandbox_meta(ext)
        nsopts = config.linux.security_context.namespace_options
        status = api.PodSandboxStatus(
            id=record.id, metadata=meta, state=self._sandbox_state(ext), created_at=int(ext["created_at"]),
            network=api.PodSandboxNetworkStatus(ip=ext.get("ip", "")),
            linux=api.LinuxPodSandboxStatus(namespaces=api.Namespace(options=api.NamespaceOption(
                network=nsopts.network, pid=nsopts.pid, ipc=nsopts.ipc))),
            labels=dict(config.labels), annotations=dict(config.annotations),
            runtime_handler=ext.get("runtime_handler", ""))
        info = {}
        if request.verbose:
            import json

            info["info"] = json.dumps({"pid": (ext.get("pause") or {}).get("pid", 0), "image": "(built-in pause)",
                                       "runtimeHandler": ext.get("runtime_handler", ""), "dir": ext.get("dir")})
        return api.PodSandboxStatusResponse(status=status, info=info, timestamp=time.time_ns())

    def ListPodSandbox(self, request: Any, context: Any) -> Any:
        f = request.filter
        items = []
        for record in self._listed(KIND_SANDBOX, f.id):
            ext = record.extensions.get(EXTENSION) or {}
            config, meta = self._sandbox_meta(ext)
            state = self._sandbox_state(ext)
            if f.HasField("state") and f.state.state != state:
                continue
            if not _labels_match(f.label_selector, dict(config.labels)):
                continue
            items.append(api.PodSandbox(id=record.id, metadata=meta, state=state,
                                        created_at=int(ext["created_at"]), labels=dict(config.labels),
                                        annotations=dict(config.annotations),
                                        runtime_handler=ext.get("runtime_handler", "")))
        return api.ListPodSandboxResponse(items=items)

    # ---- containers ----------------------------------------------------------------------------------------

    def CreateContainer(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format

        from ctrpy.cri import container as cc
        from ctrpy.runtime import oci
        from ctrpy.runtime.metadata.containers import Container
        from ctrpy.runtime.tasks import ETC_EXTENSION, LOG_EXTENSION
        from ctrpy.runtime.unpack import resolve_chain, unpack_image

        config = request.config
        if not config.metadata.name:
            raise errors.InvalidArgument("container config must include metadata.name")
        if not config.image.image:
            raise errors.InvalidArgument("container config must include an image")
        sandbox = self._sandbox(request.pod_sandbox_id)
        sb_ext = sandbox.extensions[EXTENSION]
        if not sb.pause_alive(sb_ext):
            raise errors.FailedPrecondition(f"pod sandbox {sandbox.id} is not ready")
        sandbox_config, sb_meta = self._sandbox_meta(sb_ext)
        name = f"{config.metadata.name}_{sb_meta.name}_{sb_meta.namespace}_{sb_meta.uid}_{config.metadata.attempt}"
        img = self.images.get(config.image.image)
        target_pid = None
        if config.linux.security_context.namespace_options.pid == sb.TARGET:
            target = self._container(config.linux.security_context.namespace_options.target_id)
            td = self.client.tasks.dir(target.id)
            target_pid = td.init_pid() if td.exists() else None
        snapshotter = self.cri_config.get("snapshotter") or self.client.config["default_snapshotter"]
        with self.lock:
            taken = [c for c in self.client.containers.list()
                     if c.labels.get(LABEL_KIND) == KIND_CONTAINER and c.labels.get(LABEL_NAME) == name]
            if taken:
                raise errors.AlreadyExists(f"container name {name!r} is already reserved for {taken[0].id}")
            cid = sb.new_id()
            image = img.records[0]
            chain = unpack_image(self.client, image, snapshotter)
            image_config = resolve_chain(self.client, image)[0].config
            mounts = self.client.snapshotter(snapshotter).prepare(cid, chain)
            try:
                spec = cc.build_spec(self, cid, config, sandbox_config, {**sb_ext, "id": sandbox.id},
                                     image_config, oci.mounts_reader(mounts), target_pid)
                if not spec["process"]["args"]:
                    raise errors.InvalidArgument("no command given and the image has none")
                sb_dir = sb_ext["dir"]
                extensions: dict[str, Any] = {
                    EXTENSION: {"config": json_format.MessageToDict(config, preserving_proto_field_name=True),
                                "sandbox_id": sandbox.id, "created_at": time.time_ns(), "image_ref": img.id,
                                "stop_signal": str((image_config.get("config") or {}).get("StopSignal") or ""),
                                "log_path": _log_path(sandbox_config, config)},
                    ETC_EXTENSION: {"paths": {n: os.path.join(sb_dir, n) for n in ("hosts", "resolv.conf", "hostname")}},
                }
                if extensions[EXTENSION]["log_path"]:
                    extensions[LOG_EXTENSION] = {"path": extensions[EXTENSION]["log_path"]}
                self.client.containers.create(Container(
                    id=cid, runtime_name=self.runtime_for_handler(sb_ext.get("runtime_handler", "")),
                    image=image.name, snapshotter=snapshotter, snapshot_key=cid, spec=spec, extensions=extensions,
                    labels={LABEL_KIND: KIND_CONTAINER, LABEL_NAME: name, LABEL_SANDBOX: sandbox.id}))
            except BaseException:
                try:
                    self.client.snapshotter(snapshotter).remove(cid)
                except errors.CtrpyError:
                    pass
                raise
        return api.CreateContainerResponse(container_id=cid)

    def StartContainer(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format

        record = self._container(request.container_id)
        ext = record.extensions[EXTENSION]
        tasks = self.client.tasks
        if ext.get("started_at") or ext.get("finished_at") or tasks.exists(record.id):
            raise errors.FailedPrecondition(f"container {record.id} is not in the created state")
        sandbox = self._sandbox(ext["sandbox_id"])
        if not sb.pause_alive(sandbox.extensions[EXTENSION]):
            raise errors.FailedPrecondition(f"pod sandbox {sandbox.id} of container {record.id} is not running")
        log_path = ext.get("log_path")
        if log_path:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
        try:
            config = json_format.ParseDict(ext["config"], api.ContainerConfig(), ignore_unknown_fields=True)
            tasks.create(record.id, stdin=bool(config.stdin))
            sup = tasks.dir(record.id).supervisor_pid()
            if sup:
                self._children.add(sup)
            tasks.start(record.id)
        except errors.CtrpyError as exc:
            ext.update(started_at=0, finished_at=time.time_ns(), exit_code=128, reason="StartError",
                       message=str(exc))
            self._save_ext(record, ext)
            if tasks.exists(record.id):
                try:
                    tasks.delete(record.id, force=True)
                except errors.CtrpyError:
                    pass
            raise
        ext["started_at"] = time.time_ns()
        self._save_ext(record, ext)
        return api.StartContainerResponse()

    def _task_state(self, record: Any) -> Any:
        tasks = self.client.tasks
        if not tasks.exists(record.id):
            return None
        td = tasks.dir(record.id)
        rec = td.exit()
        from ctrpy.runtime.tasks import TaskManager, TaskState, TaskStatus

        if rec is not None:
            return TaskManager._stopped(record.id, "", rec)
        # Fast path (kubelet lists every second): a started task whose supervisor is alive and whose init
        # process exists is running; only the doubtful cases ask the runtime.
        from ctrpy.runtime.linux.proc import start_time

        pid = td.init_pid()
        if (record.extensions[EXTENSION].get("started_at") and pid and td.supervisor_pid() is not None
                and start_time(pid) is not None):
            return TaskState(record.id, pid, TaskStatus.RUNNING)
        try:
            return tasks.state(record.id)
        except errors.NotFound:
            return None

    def _stop_container(self, record: Any, timeout: int) -> None:
        from ctrpy.runtime.tasks import TaskStatus

        state = self._task_state(record)
        if state is None or state.status == TaskStatus.STOPPED:
            return
        tasks = self.client.tasks
        td = tasks.dir(record.id)
        ext = record.extensions[EXTENSION]
        if timeout > 0 and state.status != TaskStatus.PAUSED:
            sig = _signal_number(ext.get("stop_signal") or "SIGTERM")
            try:
                tasks.kill(record.id, sig)
            except errors.CtrpyError:
                pass
            if _wait_exit(td, float(timeout)):
                return
        try:
            tasks.kill(record.id, _signal.SIGKILL, all=True)
        except errors.CtrpyError:
            pass
        if not _wait_exit(td, 10.0):
            raise errors.DeadlineExceeded(f"container {record.id} did not exit after SIGKILL")

    def StopContainer(self, request: Any, context: Any) -> Any:
        record = self._container(request.container_id)
        self._stop_container(record, int(request.timeout))
        return api.StopContainerResponse()

    def _remove_container(self, record: Any) -> None:
        from ctrpy.runtime.containers import delete_container

        self._stop_container(record, 0)
        delete_container(self.client, record.id, force=True)

    def RemoveContainer(self, request: Any, context: Any) -> Any:
        try:
            record = self._container(request.container_id)
        except errors.NotFound:
            return api.RemoveContainerResponse()  # idempotent, as the CRI asks
        self._remove_container(record)
        return api.RemoveContainerResponse()

    def _status(self, record: Any) -> Any:
        from google.protobuf import json_format

        from ctrpy.runtime.tasks import TaskStatus

        ext = record.extensions[EXTENSION]
        config = json_format.ParseDict(ext["config"], api.ContainerConfig(), ignore_unknown_fields=True)
        st = api.ContainerStatus(id=record.id, metadata=config.metadata, created_at=int(ext["created_at"]),
                                 image=config.image, image_ref=ext.get("image_ref", ""),
                                 labels=dict(config.labels), annotations=dict(config.annotations),
                                 mounts=list(config.mounts), log_path=ext.get("log_path", ""))
        st.resources.linux.CopyFrom(config.linux.resources)
        state = self._task_state(record)
        st.started_at = int(ext.get("started_at") or 0)
        if ext.get("reason") == "StartError":
            st.state, st.reason, st.message = EXITED, "StartError", ext.get("message", "")
            st.exit_code, st.finished_at = int(ext.get("exit_code", 128)), int(ext.get("finished_at", 0))
        elif state is None and ext.get("started_at"):
            # Started once, and its task is gone (the state directory did not survive a reboot).
            st.state, st.exit_code, st.reason = EXITED, 255, "Unknown"
            st.message = "the container's task state was lost (host reboot?)"
            st.finished_at = int(ext["started_at"])
        elif state is None:
            st.state = CREATED
        elif state.status == TaskStatus.STOPPED:
            st.state = EXITED
            st.exit_code = int(state.exit_status if state.exit_status is not None else 255)
            st.finished_at = _parse_time(state.exited_at) or time.time_ns()
            st.reason = "OOMKilled" if state.oom_killed else ("Completed" if st.exit_code == 0 else "Error")
            st.message = state.reason
        elif state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            st.state = RUNNING
        elif state.status == TaskStatus.CREATED:
            st.state = CREATED
        else:
            st.state = UNKNOWN
            st.reason, st.message = "Unknown", state.reason
        return st

    def ContainerStatus(self, request: Any, context: Any) -> Any:
        record = self._container(request.container_id)
        st = self._status(record)
        info = {}
        if request.verbose:
            import json

            td = self.client.tasks.dir(record.id)
            info["info"] = json.dumps({"sandboxID": record.labels.get(LABEL_SANDBOX), "pid": td.init_pid() or 0,
                                       "runtimeSpec": record.spec, "snapshotKey": record.snapshot_key,
                                       "snapshotter": record.snapshotter})
        return api.ContainerStatusResponse(status=st, info=info)

    def ListContainers(self, request: Any, context: Any) -> Any:
        f = request.filter
        out = []
        for record in self._listed(KIND_CONTAINER, f.id, f.pod_sandbox_id):
            st = self._status(record)
            if f.HasField("state") and f.state.state != st.state:
                continue
            if not _labels_match(f.label_selector, dict(st.labels)):
                continue
            out.append(api.Container(id=st.id, pod_sandbox_id=record.labels.get(LABEL_SANDBOX, ""),
                                     metadata=st.metadata, image=st.image, image_ref=st.image_ref, state=st.state,
                                     created_at=st.created_at, labels=st.labels, annotations=st.annotations))
        return api.ListContainersResponse(containers=out)

    def UpdateContainerResources(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format

        from ctrpy.cri import container as cc

        record = self._container(request.container_id)
        ext = record.extensions[EXTENSION]
        config = json_format.ParseDict(ext["config"], api.ContainerConfig(), ignore_unknown_fields=True)
        config.linux.resources.CopyFrom(request.linux)
        spec = dict(record.spec)
        cc.with_resources(request.linux, bool(self.cri_config.get("restrict_oom_score_adj", True)))(spec)
        state = self._task_state(record)
        from ctrpy.runtime.tasks import TaskStatus

        if state is not None and state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            _write_cgroup_resources(spec["linux"].get("cgroupsPath", ""), spec["linux"]["resources"])
        ext["config"] = json_format.MessageToDict(config, preserving_proto_field_name=True)
        record.spec = spec
        record.extensions = {**record.extensions, EXTENSION: ext}
        self.client.containers.update(record, ["spec", f"extensions.{EXTENSION}"])
        return api.UpdateContainerResourcesResponse()

    def ReopenContainerLog(self, request: Any, context: Any) -> Any:
        from ctrpy.runtime import supervisor as sup
        from ctrpy.runtime.attach import Attachment
        from ctrpy.runtime.tasks import TaskStatus

        record = self._container(request.container_id)
        state = self._task_state(record)
        if state is None or state.status not in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            raise errors.FailedPrecondition(f"container {record.id} is not running")
        td = self.client.tasks.dir(record.id)
        Attachment.connect(td.socket_address(), sup.F_REOPEN, {}).close()
        return api.ReopenContainerLogResponse()

    # ---- exec ----------------------------------------------------------------------------------------------

    def ExecSync(self, request: Any, context: Any) -> Any:
        from ctrpy.runtime import supervisor as sup

        if not request.cmd:
            raise errors.InvalidArgument("no command given")
        record = self._running(request.container_id)
        att = self.client.tasks.exec(record.id, "", list(request.cmd))
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + request.timeout if request.timeout > 0 else None
        try:
            while True:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 and not att.has_buffered_frame():
                        _kill_exec(att)
                        raise errors.DeadlineExceeded(
                            f"timeout {request.timeout}s exceeded running {list(request.cmd)!r}")
                    att.sock.settimeout(max(left, 0.01))
                try:
                    kind, payload = att.read_frame()
                except TimeoutError:
                    continue
                if not kind:
                    raise errors.Unavailable(f"the supervisor of container {record.id} went away")
                if kind == sup.F_STDOUT:
                    out.append(payload)
                elif kind == sup.F_STDERR:
                    err.append(payload)
                elif kind == sup.F_EXIT:
                    import json

                    code = int(json.loads(payload).get("exit_status") or 0)
                    return api.ExecSyncResponse(stdout=b"".join(out), stderr=b"".join(err), exit_code=code)
        finally:
            att.close()

    # ---- streaming (streaming.py serves the URLs) -----------------------------------------------------------

    def resolve_container(self, cid: str) -> str:
        return str(self._container(cid).id)

    def pod_connect(self, sid: str, port: int) -> Any:
        from ctrpy.cri.streaming import connect_in_netns

        record = self._sandbox(sid)
        ext = record.extensions[EXTENSION]
        if not sb.pause_alive(ext):
            raise errors.FailedPrecondition(f"pod sandbox {record.id} is not ready")
        config, _ = self._sandbox_meta(ext)
        host = config.linux.security_context.namespace_options.network == sb.NODE
        return connect_in_netns(None if host else sb.ns_path(ext, "net"), port)

    def _running(self, cid: str) -> Any:
        from ctrpy.runtime.tasks import TaskStatus

        record = self._container(cid)
        state = self._task_state(record)
        if state is None or state.status not in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            raise errors.FailedPrecondition(f"container {record.id} is not running")
        return record

    def Exec(self, request: Any, context: Any) -> Any:
        record = self._running(request.container_id)
        if not request.cmd:
            raise errors.InvalidArgument("no command given")
        if not (request.stdin or request.stdout or request.stderr):
            raise errors.InvalidArgument("one of stdin, stdout and stderr must be streamed")
        if request.tty and request.stderr:
            raise errors.InvalidArgument("tty and stderr cannot both be true")
        req = api.ExecRequest()
        req.CopyFrom(request)
        req.container_id = record.id
        return api.ExecResponse(url=self.streaming.url("exec", req))

    def Attach(self, request: Any, context: Any) -> Any:
        from types import SimpleNamespace

        from google.protobuf import json_format

        record = self._running(request.container_id)
        if not (request.stdin or request.stdout or request.stderr):
            raise errors.InvalidArgument("one of stdin, stdout and stderr must be streamed")
        config = json_format.ParseDict(record.extensions[EXTENSION]["config"], api.ContainerConfig(),
                                       ignore_unknown_fields=True)
        req = SimpleNamespace(container_id=record.id, stdin=request.stdin and config.stdin, stdout=request.stdout,
                              stderr=request.stderr and not config.tty, tty=config.tty, stdin_once=config.stdin_once)
        return api.AttachResponse(url=self.streaming.url("attach", req))

    def PortForward(self, request: Any, context: Any) -> Any:
        record = self._sandbox(request.pod_sandbox_id)
        if not sb.pause_alive(record.extensions[EXTENSION]):
            raise errors.FailedPrecondition(f"pod sandbox {record.id} is not ready")
        req = api.PortForwardRequest(pod_sandbox_id=record.id, port=list(request.port))
        return api.PortForwardResponse(url=self.streaming.url("portforward", req))

    # ---- events --------------------------------------------------------------------------------------------

    def GetContainerEvents(self, request: Any, context: Any) -> Any:
        """Container lifecycle events (kubelet's evented PLEG), found by comparing states every 0.5 s: the
        store has no change feed the server could follow across its own restarts."""
        last: dict[str, int] | None = None
        while context.is_active():
            current: dict[str, Any] = {}
            for record in self._listed(KIND_CONTAINER):
                try:
                    current[record.id] = (record, self._status(record))
                except errors.CtrpyError:
                    continue
            if last is not None:
                now = time.time_ns()
                for cid, (_record, st) in current.items():
                    before = last.get(cid)
                    kinds = []
                    if before is None:
                        kinds.append(api.CONTAINER_CREATED_EVENT)
                    if st.state == RUNNING and before in (None, CREATED):
                        kinds.append(api.CONTAINER_STARTED_EVENT)
                    if st.state == EXITED and before != EXITED:
                        kinds.append(api.CONTAINER_STOPPED_EVENT)
                    for kind in kinds:
                        yield api.ContainerEventResponse(container_id=cid, container_event_type=kind,
                                                         created_at=now, containers_statuses=[st])
                for cid in set(last) - set(current):
                    yield api.ContainerEventResponse(container_id=cid, created_at=now,
                                                     container_event_type=api.CONTAINER_DELETED_EVENT)
            last = {cid: st.state for cid, (_, st) in current.items()}
            time.sleep(0.5)

    # ---- stats ---------------------------------------------------------------------------------------------

    def _stats(self, record: Any) -> Any:
        from google.protobuf import json_format

        from ctrpy.runtime.tasks import TaskStatus

        ext = record.extensions[EXTENSION]
        config = json_format.ParseDict(ext["config"], api.ContainerConfig(), ignore_unknown_fields=True)
        now = time.time_ns()
        stats = api.ContainerStats(attributes=api.ContainerAttributes(
            id=record.id, metadata=config.metadata, labels=dict(config.labels),
            annotations=dict(config.annotations)))
        stats.cpu.timestamp = now
        stats.memory.timestamp = now
        state = self._task_state(record)
        if state is not None and state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            try:
                m = self.client.tasks.metrics(record.id)
            except errors.CtrpyError:
                m = {}
            stats.cpu.usage_core_nano_seconds.value = int((m.get("cpu") or {}).get("usage_ns") or 0)
            usage = int((m.get("memory") or {}).get("usage") or 0)
            stats.memory.usage_bytes.value = usage
            stats.memory.working_set_bytes.value = usage
        stats.writable_layer.timestamp = now
        stats.writable_layer.fs_id.mountpoint = str(self.client.root)
        try:
            u = self.client.snapshotter(record.snapshotter).usage(record.snapshot_key)
            stats.writable_layer.used_bytes.value = int(getattr(u, "size", 0))
            stats.writable_layer.inodes_used.value = int(getattr(u, "inodes", 0))
        except (errors.CtrpyError, AttributeError):
            pass
        return stats

    def ContainerStats(self, request: Any, context: Any) -> Any:
        return api.ContainerStatsResponse(stats=self._stats(self._container(request.container_id)))

    def ListContainerStats(self, request: Any, context: Any) -> Any:
        f = request.filter
        out = []
        for record in self._listed(KIND_CONTAINER, f.id, f.pod_sandbox_id):
            stats = self._stats(record)
            if not _labels_match(f.label_selector, dict(stats.attributes.labels)):
                continue
            out.append(stats)
        return api.ListContainerStatsResponse(stats=out)

    def _pod_stats(self, record: Any) -> Any:
        ext = record.extensions[EXTENSION]
        config, meta = self._sandbox_meta(ext)
        now = time.time_ns()
        stats = api.PodSandboxStats(attributes=api.PodSandboxAttributes(
            id=record.id, metadata=meta, labels=dict(config.labels), annotations=dict(config.annotations)))
        containers = [self._stats(c) for c in self._containers_of(record.id)]
        linux = stats.linux
        linux.cpu.timestamp = linux.memory.timestamp = now
        linux.cpu.usage_core_nano_seconds.value = sum(c.cpu.usage_core_nano_seconds.value for c in containers)
        linux.memory.working_set_bytes.value = sum(c.memory.working_set_bytes.value for c in containers)
        linux.memory.usage_bytes.value = sum(c.memory.usage_bytes.value for c in containers)
        linux.process.timestamp = now
        linux.containers.extend(containers)
        return stats

    def PodSandboxStats(self, request: Any, context: Any) -> Any:
        return api.PodSandboxStatsResponse(stats=self._pod_stats(self._sandbox(request.pod_sandbox_id)))

    def ListPodSandboxStats(self, request: Any, context: Any) -> Any:
        f = request.filter
        out = []
        for record in self._listed(KIND_SANDBOX, f.id):
            stats = self._pod_stats(record)
            if _labels_match(f.label_selector, dict(stats.attributes.labels)):
                out.append(stats)
        return api.ListPodSandboxStatsResponse(stats=out)


def _kill_exec(att: Any) -> None:
    """SIGKILL a timed-out exec and wait (briefly) until its supervisor reports it gone, so the caller's next
    look inside the container no longer sees it."""
    from ctrpy.runtime import supervisor as sup

    try:
        os.kill(att.pid, _signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        att.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            kind, _ = att.read_frame()
        except (TimeoutError, OSError):
            return
        if not kind or kind == sup.F_EXIT:
            return


def _log_path(sandbox_config: Any, config: Any) -> str:
    if not config.log_path or not sandbox_config.log_directory:
        return ""
    return os.path.join(sandbox_config.log_directory, config.log_path)


def _signal_number(name: str) -> int:
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(_signal, name, _signal.SIGTERM))


def _wait_exit(td: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if td.exit() is not None or not td.exists():
            return True
        if td.supervisor_pid() is None:
            return td.exit() is not None
        time.sleep(0.02)
    return td.exit() is not None


def _write_cgroup_resources(path: str, resources: dict[str, Any]) -> None:
    """Apply updated limits to a running container's cgroup (v1 controllers or v2)."""
    from pathlib import Path

    base = Path("/sys/fs/cgroup")
    rel = path.strip("/")
    cpu = resources.get("cpu") or {}
    mem = resources.get("memory") or {}
    if (base / "cgroup.controllers").exists():
        writes = {"memory.max": mem.get("limit"), "cpu.weight": None,
                  "cpuset.cpus": cpu.get("cpus"), "cpuset.mems": cpu.get("mems")}
        if cpu.get("quota"):
            writes["cpu.max"] = f"{cpu['quota']} {cpu.get('period', 100000)}"
        files = {base / rel / k: v for k, v in writes.items() if v is not None}
    else:
        files = {base / "memory" / rel / "memory.limit_in_bytes": mem.get("limit"),
                 base / "cpu" / rel / "cpu.shares": cpu.get("shares"),
                 base / "cpu" / rel / "cpu.cfs_period_us": cpu.get("period"),
                 base / "cpu" / rel / "cpu.cfs_quota_us": cpu.get("quota"),
                 base / "cpuset" / rel / "cpuset.cpus": cpu.get("cpus"),
                 base / "cpuset" / rel / "cpuset.mems": cpu.get("mems")}
    for file, value in files.items():
        if value is None or value == "":
            continue
        try:
            file.write_text(str(value))
        except OSError as exc:
            raise errors.from_oserror(exc, "cannot update container resources") from None
