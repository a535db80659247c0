"""Tasks: the running processes of containers (containerd's core/runtime Task and Process). Containers
themselves are created and deleted in ctrpy.runtime.containers; the client half of the supervisor protocol
(Attachment) is ctrpy.runtime.attach.

A task is created from a container record: its state directory (`bundle.TaskDir`) gets the rootfs mounted
(image containers), the /etc files, `config.json`, and one supervisor process: the CLI forks, the child runs
the OCI runtime's create and execs the C supervisor (`supervisor.launch`, csrc/supervisor.c), which serves
stdio, exec and restarts, and records the exit. Everything else (start, kill, pause, ps, delete) talks to the
runtime directly; exec and attach talk to the supervisor over its socket.

Status comes from the durable exit record first, then from the runtime:

    exit.json present                          -> STOPPED (with its exit status)
    supervisor alive, restart.json restarting  -> RESTARTING (its restart policy starts it after a back-off)
    supervisor alive                           -> the runtime's status (CREATED / RUNNING / PAUSED)
    supervisor gone, container still alive     -> UNKNOWN (`wait`/`kill` start a tracing supervisor, `adopt`)
    supervisor gone, container gone            -> STOPPED, exit status 255 (recorded then, so it sticks)

so a task never stays RUNNING after its supervisor or its container was SIGKILLed.
"""

from __future__ import annotations

import builtins
import json
import os
import signal as _signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, identifiers, oci
from ctrpy.runtime import supervisor as sup
from ctrpy.runtime.attach import Attachment, error_from_reply
from ctrpy.runtime.bundle import TaskDir, write_json_durably
from ctrpy.runtime.linux import proc
from ctrpy.runtime.linux.proc import proc_alive, proc_id
from ctrpy.runtime.metadata import now

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

UNKNOWN_EXIT = sup.UNKNOWN_EXIT
# Container extensions a task reads. ETC_EXTENSION: how to write /etc/hosts, resolv.conf and hostname
# (containers.create_container records it). LOG_EXTENSION {"path": P}: the init's output goes to P in the
# CRI log format instead of output.log (ctrpy.cri).
ETC_EXTENSION = "ctrpy.io/etc"
# The image manifest (and so the platform) an image-based container was created from.
MANIFEST_EXTENSION = "ctrpy.io/image-manifest"
LOG_EXTENSION = "ctrpy.io/log"


class TaskStatus(str, Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    UNKNOWN = "unknown"
    RESTARTING = "restarting"  # exited, and its restart policy starts it again after a back-off

    def __str__(self) -> str:
        return self.value.upper()


@dataclass
class TaskState:
    """A task as seen now."""

    id: str
    pid: int
    status: TaskStatus
    runtime: str = ""
    exit_status: int | None = None
    exited_at: str = ""
    oom_killed: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pid": self.pid, "status": self.status.value, "runtime": self.runtime,
                "exit_status": self.exit_status, "exited_at": self.exited_at, "oom_killed": self.oom_killed,
                **({"reason": self.reason} if self.reason else {})}


# ------------------------------------------------------------------------------------------- containers
# ------------------------------------------------------------------------------------------------- tasks

PACKAGE_ROOT = sup.PACKAGE_ROOT


class TaskManager:
    """Create and drive the tasks of one namespace."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespace = client.namespace
        self.state_dir = Path(client.state)

    # ---- helpers -----------------------------------------------------------------------------------------

    def dir(self, container_id: str) -> TaskDir:
        return TaskDir(self.state_dir, self.namespace, container_id)

    def exists(self, container_id: str) -> bool:
        return self.dir(container_id).exists()

    def _taskdir(self, container_id: str) -> TaskDir:
        td = self.dir(container_id)
        if not td.exists():
            raise errors.NotFound(f"no task for container {container_id!r}")
        return td

    def runtime_for(self, td: TaskDir) -> Any:
        from ctrpy.runtime.ociruntime import open_runtime_entry

        info = td.task()
        if not info:  # deleted while we looked
            raise errors.NotFound(f"no task for container {td.id!r}")
        return open_runtime_entry(info["runtime"], info["runtime_entry"], Path(info["state_root"]))

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self.client.events.publish(topic, payload)
        except errors.CtrpyError:
            pass

    # ---- create / start --------------------------------------------------------------------------------

    def create(self, container_id: str, *, stdin: bool = False,
               console_size: tuple[int, int] | None = None) -> TaskState:
        """Set up the bundle and the supervisor; the task is CREATED (its process waits for start)."""
        from ctrpy.runtime.ociruntime import runtime_entry

        container = self.client.containers.get(container_id)
        td = self.dir(container_id)
        if td.exists():
            raise errors.AlreadyExists(f"task {container_id!r} already exists (delete it first)")
        runtime_name, entry = runtime_entry(container.runtime_name, self.client.config)
        from ctrpy.runtime import restart

        if container.labels.get(restart.STOPPED_LABEL):
            restart.mark_stopped(self.client, container_id, False)  # started again: restarts apply again
        # One runtime state root per namespace (as containerd's runc shim does): the same container id in two
        # namespaces must not collide inside the runtime.
        entry["root"] = str(Path(entry.get("root") or self.state_dir / "runtime" / runtime_name) / self.namespace)
        spec = json.loads(json.dumps(container.spec))
        net_request = None
        networked = False
        from ctrpy.runtime.network import EXTENSION_KEY as NET_KEY

        if NET_KEY in container.extensions:
            from ctrpy.runtime.network import NetworkRequest

            net_request = NetworkRequest.from_dict(container.extensions[NET_KEY])
        td.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            td.path.mkdir()
        except FileExistsError:
            # Another create is under way, or one was killed half-way: only the latter is ours to clear.
            if not self.repair(container_id):
                raise errors.AlreadyExists(f"task {container_id!r} is being created") from None
            td.path.mkdir(parents=True)
        mounted = False
        try:
            # Who is creating it: a create whose process is gone is a leftover that any later command repairs.
            # Inside the try: a full state directory fails here first, and must be reported and cleared as one.
            (td.path / CREATING_FILE).write_text(proc_id(os.getpid()))
            test_hook("create-after-mkdir")
            if container.snapshot_key:
                from ctrpy.runtime.dockerrun import DOCKER_EXT
                from ctrpy.runtime.mount import mount_all, volatile

                mounts = self.client.snapshotter(container.snapshotter).mounts(container.snapshot_key)
                if (container.extensions.get(DOCKER_EXT) or {}).get("auto_remove"):
                    mounts = volatile(mounts)  # `run --rm`: the rootfs goes with the container
                td.rootfs.mkdir(exist_ok=True)
                mount_all(mounts, td.rootfs)
                mounted = True
                spec["root"]["path"] = "rootfs"
            if net_request is not None:
                from ctrpy.runtime import network as net

                networked = True  # from here on, a failure must release what etc_files reserved
                files = net.etc_files(self.client, container_id, net_request, spec.get("hostname", ""))
                td.etc.mkdir(parents=True, exist_ok=True)
                net.write_etc_files(td.etc, files)
                paths = {name: td.etc / name for name in files}
            else:
                etc = container.extensions.get(ETC_EXTENSION, {})
            if net_request is None and etc.get("paths"):  # files a pod's containers share (ctrpy.cri)
                paths = {name: Path(path) for name, path in etc["paths"].items()}
            elif net_request is None:
                paths = oci.prepare_etc_files(
                    td.etc, hostname=spec.get("hostname", ""), net_host=bool(etc.get("net_host")),
                    extra_hosts=[tuple(h) for h in etc.get("extra_hosts", [])], dns=etc.get("dns", []))
            oci.with_etc_files(paths, readonly=bool(spec["root"].get("readonly")))(spec)
            terminal = bool(spec["process"].get("terminal"))
            size = console_size or terminal_size()
            if terminal and size:
                spec["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
            td.config.write_text(json.dumps(spec, indent=1))
            task_info = {
                "id": container_id, "namespace": self.namespace, "runtime": runtime_name, "runtime_entry": entry,
                "state_root": str(self.state_dir), "root": str(self.client.root), "sys_path": [PACKAGE_ROOT] + sys.path,
                "terminal": terminal, "stdin": stdin, "cgroups_path": spec["linux"].get("cgroupsPath", ""),
                "created_at": now(), "console_size": list(size or ()) or None, "network": networked,
                "log_path": str((container.extensions.get(LOG_EXTENSION) or {}).get("path", "")),
                "python": sys.executable, "restart_policy": container.labels.get(restart.LABEL, ""),
                "config_path": getattr(self.client.config, "path", None),
            }
            write_json_durably(td.task_file, task_info)
            test_hook("create-before-launch")
            # The runtime's modules (for the built-in one, the cffi helper) load once, before the fork: the
            # child creates the container with them, and this process starts it with them.
            from ctrpy.runtime.ociruntime import open_runtime_entry

            open_runtime_entry(runtime_name, entry, self.state_dir)
            reply = self._launch(td, task_info)
            test_hook("create-after-launch")
            if not reply.get("ok"):
                raise error_from_reply(reply)
            if net_request is not None:
                net.attach(self.client, container_id, f"/proc/{int(reply['pid'])}/ns/net", net_request)
            td.created_marker.touch()
        except BaseException as exc:
            self._abort_create(td, runtime_name, entry)
            if networked:
                self._detach_network(container_id)
            self._teardown(td, mounted)
            if errors.is_no_space(exc):  # i15: say where the disk is full (the state dir, usually a tmpfs)
                raise errors.no_space(f"create task {container_id!r}: state directory", td.path) from exc
            raise
        self._publish("/tasks/create", {"container_id": container_id, "pid": reply["pid"]})
        return TaskState(container_id, int(reply["pid"]), TaskStatus.CREATED, runtime_name)

    def _launch(self, td: TaskDir, task_info: dict[str, Any]) -> dict[str, Any]:
        """Fork; the child creates the init and execs the C supervisor (supervisor.launch); one JSON line
        comes back on the ready pipe, from the supervisor or from the child when the runtime failed."""
        program = sup.binary()
        ready_r, ready_w = os.pipe()
        log_fd = os.open(td.path / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        # An attached creator (stdin: `run`, `tasks start` without -d) stays for the whole task: an init orphaned
        # by a dying supervisor then comes to us, and we record its real exit (`_reap_orphan`). Detached creators
        # (and long-lived callers such as a server) are left alone: they would only collect zombies.
        if task_info.get("stdin"):
            sup._set_subreaper()
        # fork by hand: `subprocess` costs 10 ms of imports on every `run`, and the child runs the runtime's
        # create with what this process already imported before it execs the supervisor.
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits at once
            os.close(ready_r)
            sup.launch(str(td.path), task_info, ready_w, log_fd, program)
            os._exit(1)
        # The launcher becomes the supervisor (same pid): recorded now, so a repair can stop it at any point.
        (td.path / LAUNCHER_FILE).write_text(proc_id(pid))
        os.close(log_fd)
        os.close(ready_w)
        # The supervisor stays our child until we exit (then init adopts it); it never waits for us.
        # Read exactly one line: a container init created by the runtime may still hold the pipe open.
        data = b""
        with os.fdopen(ready_r, "rb") as f:
            while not data.endswith(b"\n"):
                chunk = f.read1(4096)
                if not chunk:
                    break
                data += chunk
        try:
            reply: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            log_text = (td.path / "supervisor.log").read_text(errors="replace").strip().splitlines()
            detail = log_text[-1] if log_text else "no output"
            return {"ok": False, "error": f"the task supervisor failed to start: {detail}", "class": "Internal"}
        return reply

    def _detach_network(self, container_id: str) -> None:
        """Release the task's network (best effort: `network prune` retries what is left)."""
        from ctrpy.runtime import network as net

        try:
            net.detach(self.client, container_id)
        except errors.CtrpyError as exc:
            sys.stderr.write(f"ctrpy: warning: {exc}\n")

    def leftover(self, container_id: str) -> bool:
        """A task directory that a killed command left half-made (not created, and its creator is gone), or
        whose create finished but was interrupted before it could be used."""
        td = self.dir(container_id)
        if not td.path.is_dir() or td.exists():
            return False
        creator = _read_text(td.path / CREATING_FILE)
        if creator:
            return not proc_alive(creator)
        # Killed between mkdir and the creator file: a live create writes it within microseconds.
        try:
            return time.time() - td.path.stat().st_mtime > 5
        except OSError:
            return False

    def repair(self, container_id: str) -> bool:
        """Undo what a killed `create`/`run`/`rm` left of the task: launcher or supervisor, init, runtime
        state, cgroups, network, rootfs mount, state directory. False if a live command is creating it."""
        td = self.dir(container_id)
        if not td.path.is_dir():
            return True
        if not self.leftover(container_id):
            return False
        ident = _read_text(td.path / LAUNCHER_FILE)
        if ident and proc_alive(ident):
            try:
                os.kill(int(ident.split()[0]), _signal.SIGKILL)
            except ProcessLookupError:
                pass
        info = td.task()
        if info:
            self._abort_create(td, info["runtime"], info["runtime_entry"])
            if info.get("network"):
                self._detach_network(container_id)
        self._teardown(td)
        return True

    def repair_all(self) -> list[str]:
        """Repair every leftover task directory of this namespace (`gc` calls it); the ids repaired."""
        base = self.state_dir / self.namespace
        done = []
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.is_dir() and self.leftover(entry.name) and self.repair(entry.name):
                    done.append(entry.name)
        return done

    def _abort_create(self, td: TaskDir, runtime_name: str, entry: dict[str, Any]) -> None:
        """Undo a create interrupted after the supervisor started (Ctrl-C, a failure after the runtime's create):
        nothing may keep running for a task that does not exist."""
        from ctrpy.runtime.ociruntime import open_runtime_entry

        pid = td.supervisor_pid()
        launcher = _read_text(td.path / LAUNCHER_FILE)  # the same process before it became the supervisor
        if pid is None and launcher and proc_alive(launcher):
            pid = int(launcher.split()[0])
        if pid is not None:
            try:
                os.kill(pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            open_runtime_entry(runtime_name, entry, self.state_dir).delete(td.id, force=True)
        except errors.CtrpyError:
            pass
        self._remove_cgroup(td)

    def _teardown(self, td: TaskDir, mounted: bool | None = None) -> None:
        if mounted or (mounted is None and td.rootfs.exists()):
            from ctrpy.runtime.mount import unmount_all

            try:
                unmount_all(td.rootfs, detach=True)
            except errors.CtrpyError:
                pass
        td.remove()

    def start(self, container_id: str) -> TaskState:
        td = self._taskdir(container_id)
        if td.exit() is not None:
            raise errors.FailedPrecondition(f"task {container_id!r} is stopped, not created")
        # No status query first (a whole `runc state` on the hot path): the runtime refuses a started task.
        runtime = self.runtime_for(td)
        pid = td.init_pid()
        # Published just before the start: the process may exit (and its supervisor record /tasks/exit) before
        # the runtime's `start` even returns, and the events must stay in order. A failed start is followed by
        # the task's delete.
        self._publish("/tasks/start", {"container_id": container_id, "pid": pid})
        try:
            runtime.start(container_id)
        except errors.CtrpyError as exc:
            from ctrpy.runtime.ociruntime import as_runtime_error

            raise as_runtime_error(runtime.name, exc) from None
        return TaskState(container_id, pid, TaskStatus.RUNNING, runtime.name)

    def attach(self, container_id: str, exec_id: str = "", stdin: bool = False) -> Attachment:
        """Attach to the init or an exec. The owner (`stdin`) also gets the output fds, so that the rest of the
        output still reaches it if the supervisor dies (see Attachment._recover)."""
        td = self._taskdir(container_id)
        att = Attachment.connect(td.socket_address(), sup.F_ATTACH, {"exec_id": exec_id, "stdin": stdin,
                                                                     "fds": stdin})
        if not exec_id:
            att.log_path = td.log
        return att

    # ---- state ---------------------------------------------------------------------------------------------

    def state(self, container_id: str, runtime_states: dict[str, dict[str, Any]] | None = None) -> TaskState:
        """The task's state; `runtime_states` (listings: the runtimes' own lists, by ID) saves asking the
        runtime about this one task (an exec of runc per task)."""
        td = self._taskdir(container_id)
        info = td.task()
        if not info:  # deleted while we looked
            raise errors.NotFound(f"no task for container {container_id!r}")
        runtime_name = info.get("runtime", "")
        record = td.exit()
        if record is not None:
            return self._stopped(container_id, runtime_name, record)
        sup_pid = td.supervisor_pid()
        pid = td.init_pid()
        if sup_pid is not None and info.get("restart_policy", "") not in ("", "no"):
            from ctrpy.runtime.bundle import read_json

            rs = read_json(td.path / sup.RESTART_FILE) or {}
            if rs.get("restarting"):
                return TaskState(container_id, pid, TaskStatus.RESTARTING, runtime_name,
                                 exit_status=rs.get("last_exit_status"),
                                 reason=f"restart {rs.get('restart_count', 0) + 1} at {rs.get('next_start_at')}")
        try:
            rt_state = (runtime_states or {}).get(container_id) or self.runtime_for(td).state(container_id)
        except errors.NotFound:
            rt_state = {"status": "stopped"}
        except errors.CtrpyError as exc:
            rt_state = {"status": "unknown", "error": str(exc)}
        status = rt_state.get("status", "unknown")
        pid = int(rt_state.get("pid") or pid or 0)
        if sup_pid is None:
            record = td.exit()  # the supervisor may have finished between our two reads
            if record is not None:
                return self._stopped(container_id, runtime_name, record)
            if status in ("created", "running", "paused", "creating"):
                return TaskState(container_id, pid, TaskStatus.UNKNOWN, runtime_name,
                                 reason="the task's supervisor is gone")
            record = {"exit_status": UNKNOWN_EXIT, "exited_at": now(), "pid": pid,
                      "reason": "the supervisor exited before recording the exit"}
            try:
                write_json_durably(td.exit_file(), record)
            except OSError:
                pass
            return self._stopped(container_id, runtime_name, record)
        mapping = {"created": TaskStatus.CREATED, "creating": TaskStatus.CREATED, "running": TaskStatus.RUNNING,
                   "paused": TaskStatus.PAUSED, "pausing": TaskStatus.RUNNING}
        if status == "stopped" and sup_pid is not None and info.get("restart_policy", "") not in ("", "no"):
            # Exited under a restart policy: the supervisor either schedules a restart (restart.json) or
            # records the exit as final; wait for its decision rather than call it stopped.
            deadline = time.monotonic() + 5.0
            while td.exit() is None and not td.restart().get("restarting") and time.monotonic() < deadline \
                    and td.supervisor_pid() is not None:
                time.sleep(0.02)
            if td.exit() is None and td.restart().get("restarting"):
                return self.state(container_id)
        if status == "stopped":
            # Exited, and the supervisor is still draining output and writing the record.
            record = self._wait_record(td, 5.0)
            if record is not None:
                return self._stopped(container_id, runtime_name, record)
            return TaskState(container_id, pid, TaskStatus.STOPPED, runtime_name)
        return TaskState(container_id, pid, mapping.get(status, TaskStatus.UNKNOWN), runtime_name)

    @staticmethod
    def _stopped(container_id: str, runtime_name: str, record: dict[str, Any]) -> TaskState:
        return TaskState(container_id, int(record.get("pid") or 0), TaskStatus.STOPPED, runtime_name,
                         exit_status=record.get("exit_status"), exited_at=record.get("exited_at", ""),
                         oom_killed=bool(record.get("oom_killed")), reason=record.get("reason", ""))

    @staticmethod
    def _wait_record(td: TaskDir, seconds: float, exec_id: str = "") -> dict[str, Any] | None:
        deadline = time.monotonic() + seconds
        while True:
            record = td.exit(exec_id)
            if record is not None or time.monotonic() > deadline:
                return record
            if td.supervisor_pid() is None:
                return td.exit(exec_id)
            time.sleep(0.02)

    def list(self) -> list[TaskState]:
        base = self.state_dir / self.namespace
        if not base.is_dir():
            return []
        ids = [entry.name for entry in sorted(base.iterdir()) if (entry / "created").exists()]
        known = self._runtime_states(ids)
        out = []
        for cid in ids:
            try:
                out.append(self.state(cid, known))
            except errors.NotFound:
                continue
        return out

    def _runtime_states(self, ids: builtins.list[str]) -> dict[str, dict[str, Any]]:
        """One `list` per runtime (root) that runs two tasks or more, instead of a `state` per task (runc:
        an exec each). A task missing from its runtime's list is asked about alone, as before."""
        from ctrpy.runtime.ociruntime import open_runtime_entry

        groups: dict[str, builtins.list[Any]] = {}
        for cid in ids:
            info = self.dir(cid).task()
            if info.get("runtime_entry") is not None:
                key = json.dumps([info.get("runtime"), info["runtime_entry"], info.get("state_root")], sort_keys=True)
                groups.setdefault(key, []).append(info)
        out: dict[str, dict[str, Any]] = {}
        for infos in groups.values():
            if len(infos) < 2:
                continue
            info = infos[0]
            try:
                runtime = open_runtime_entry(info["runtime"], info["runtime_entry"], Path(info["state_root"]))
                listed = runtime.list()
            except (errors.CtrpyError, KeyError, TypeError):
                continue
            out.update((str(st.get("id")), st) for st in listed)
        return out

    # ---- signals, wait, delete ---------------------------------------------------------------------------

    def kill(self, container_id: str, signal: int, all: bool = False, exec_id: str = "") -> None:
        td = self._taskdir(container_id)
        if exec_id:
            record = td.exit(exec_id)
            try:
                pid = int((td.exec_dir(exec_id) / "pid").read_text())
            except (OSError, ValueError):
                raise errors.NotFound(f"exec {exec_id!r} of task {container_id!r} not found") from None
            if record is not None:
                raise errors.FailedPrecondition(f"exec {exec_id!r} has already exited")
            os.kill(pid, signal)
            return
        state = self.state(container_id)
        if state.status == TaskStatus.STOPPED:
            raise errors.FailedPrecondition(f"task {container_id!r} is not running")
        if td.task().get("restart_policy", "") not in ("", "no"):
            self._stop_restarts(td)
        if state.status == TaskStatus.UNKNOWN:
            self.adopt(container_id)  # so the exit this signal causes is recorded for real
        if state.status == TaskStatus.RESTARTING:
            return  # between two runs: the supervisor has just recorded the last exit as final
        self.runtime_for(td).kill(container_id, signal, all=all)

    def _stop_restarts(self, td: TaskDir, persist: bool = True) -> None:
        """An explicit stop/kill: the supervisor stops restarting the process (and the boot leaves an
        `unless-stopped` container alone)."""
        (td.path / sup.STOP_MARKER).touch()
        try:
            att = Attachment.connect(td.socket_address(), sup.F_STOP, {}, timeout=5)
        except errors.CtrpyError:
            pass
        else:
            att.close()
        if persist:
            from ctrpy.runtime import restart

            restart.mark_stopped(self.client, td.id, True)

    def wait(self, container_id: str, exec_id: str = "") -> dict[str, Any]:
        """Block until the process exits; its exit record (also after the supervisor is gone)."""
        td = self._taskdir(container_id)
        while True:
            record = td.exit(exec_id)
            if record is not None:
                return record
            try:
                att = Attachment.connect(td.socket_address(), sup.F_ATTACH, {"exec_id": exec_id})
            except errors.Unavailable:
                att = None
            if att is not None:
                try:
                    got = att.wait()
                finally:
                    att.close()
                if got is not None:
                    return got
                continue
            if exec_id:
                record = td.exit(exec_id)
                return record or {"exit_status": UNKNOWN_EXIT, "exited_at": now(), "pid": 0,
                                  "reason": "the supervisor died before the exec process exited"}
            record = self._reap_orphan(td)
            if record is not None:
                return record
            state = self.state(container_id)
            if state.status == TaskStatus.STOPPED:
                return {"exit_status": state.exit_status, "exited_at": state.exited_at, "pid": state.pid,
                        "oom_killed": state.oom_killed, **({"reason": state.reason} if state.reason else {})}
            if state.status == TaskStatus.UNKNOWN and self.adopt(container_id):
                continue
            # Supervisor gone, container alive, and nobody could adopt it: poll until it is gone.
            time.sleep(0.1)

    def _reap_orphan(self, td: TaskDir) -> dict[str, Any] | None:
        """The supervisor died and its init was reparented to us (the CLI that created the task is a subreaper
        while it stays attached): reap it and record its real exit status."""
        pid = td.init_pid()
        if pid <= 0 or td.exit() is not None:
            return None
        st = proc.stat(pid)
        if st is None or st.ppid != os.getpid():
            return None
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                return None
        record = {"exit_status": _status_code(status), "exited_at": now(), "pid": pid,
                  "reason": "recorded by the attached client: the supervisor died before the process exited"}
        try:
            write_json_durably(td.exit_file(), record)
        except OSError:
            pass
        self._publish("/tasks/exit", {"container_id": td.id, "id": td.id, "pid": pid,
                                      "exit_status": record["exit_status"], "exited_at": record["exited_at"]})
        return record

    def adopt(self, container_id: str) -> bool:
        """Start a tracing supervisor (`ctrpy-supervisor --adopt`) for a live task whose supervisor was killed,
        so that its real exit status is still recorded (it ptraces the init: PTRACE_O_TRACEEXIT). Output
        and exec are lost with the old supervisor. False when that is not possible (already traced...)."""
        td = self._taskdir(container_id)
        pid = td.init_pid()
        if pid <= 0 or td.exit() is not None or td.supervisor_pid() is not None:
            return False
        info = td.task()
        argv = [sup.binary(), "--adopt", str(pid), "--id", container_id, "--namespace", self.namespace,
                "--root", str(info.get("root", self.client.root)), "--cgroup", info.get("cgroups_path", ""),
                str(td.path)]
        r, w = os.pipe()
        log_fd = os.open(td.path / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        child = os.fork()
        if child == 0:  # pragma: no cover - the child execs or exits at once
            try:
                os.setsid()
                os.dup2(w, 1)
                os.dup2(log_fd, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.chdir("/")
                if os.fork() == 0:  # detached: a Ctrl-C'd `wait` must not take the adopter along
                    os.execv(argv[0], argv)
                os._exit(0)
            finally:
                os._exit(127)
        os.close(w)
        os.close(log_fd)
        try:
            os.waitpid(child, 0)
        except ChildProcessError:
            pass
        with os.fdopen(r, "rb") as f:
            line = f.readline()
        return line.startswith(b"{\"ok\": true")

    def delete(self, container_id: str, force: bool = False) -> TaskState:
        td = self._taskdir(container_id)
        state = self.state(container_id)
        runtime = self.runtime_for(td)
        if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN, TaskStatus.RESTARTING) \
                and not force:
            raise errors.FailedPrecondition(
                f"task {container_id!r} is {state.status.value}: stop it first (`ctrpy stop {container_id}` or "
                f"`ctrpy tasks kill {container_id}`) or use --force")
        if state.status != TaskStatus.STOPPED and td.task().get("restart_policy", "") not in ("", "no"):
            self._stop_restarts(td, persist=False)  # the kill below must not be followed by a restart
        if state.status != TaskStatus.STOPPED:
            if state.status == TaskStatus.PAUSED:
                try:
                    runtime.resume(container_id)
                except errors.CtrpyError:
                    pass
            try:
                runtime.kill(container_id, _signal.SIGKILL, all=True)
            except errors.CtrpyError:
                pass
            if td.supervisor_pid() is not None:
                self._wait_record(td, 10.0)
            state = self.state(container_id)
        try:
            runtime.delete(container_id, force=True)
        except errors.NotFound:
            pass
        except errors.CtrpyError as exc:
            if "not exist" not in str(exc) and "not found" not in str(exc):
                raise
        self._remove_cgroup(td)
        if td.task().get("network"):
            self._detach_network(container_id)
        self._teardown(td)
        self._publish("/tasks/delete", {"container_id": container_id, "pid": state.pid,
                                        "exit_status": state.exit_status, "exited_at": state.exited_at})
        return state

    @staticmethod
    def _remove_cgroup(td: TaskDir) -> None:
        """Whatever the runtime left of the task's cgroup goes too: processes a killed create left in it (an
        init waiting for `start` that no runtime state names), then the directories."""
        path = td.task().get("cgroups_path", "")
        if not path:
            return
        from ctrpy.runtime.cgroups import Cgroup

        try:
            cgroup = Cgroup(path)
            if cgroup.exists():
                cgroup.kill_all()
                cgroup.destroy(timeout=2)
        except errors.CtrpyError:
            pass  # best effort, as the runtime's own delete: a busy cgroup is left for the next delete

    # ---- pause, ps, metrics ------------------------------------------------------------------------------

    def pause(self, container_id: str) -> None:
        td = self._taskdir(container_id)
        state = self.state(container_id)
        if state.status != TaskStatus.RUNNING:
            raise errors.FailedPrecondition(f"task {container_id!r} is {state.status.value}, not running")
        self.runtime_for(td).pause(container_id)
        self._publish("/tasks/paused", {"container_id": container_id})

    def resume(self, container_id: str) -> None:
        td = self._taskdir(container_id)
        state = self.state(container_id)
        if state.status != TaskStatus.PAUSED:
            raise errors.FailedPrecondition(f"task {container_id!r} is {state.status.value}, not paused")
        self.runtime_for(td).resume(container_id)
        self._publish("/tasks/resumed", {"container_id": container_id})

    def ps(self, container_id: str) -> builtins.list[dict[str, Any]]:
        td = self._taskdir(container_id)
        state = self.state(container_id)
        if state.status == TaskStatus.STOPPED:
            return []
        out = []
        for pid in self.runtime_for(td).ps(container_id):
            info = _proc_info(pid)
            if info is not None:  # None: it exited while we looked
                out.append({"pid": pid, **info})
        return out

    def metrics(self, container_id: str) -> dict[str, Any]:
        td = self._taskdir(container_id)
        path = td.task().get("cgroups_path", "")
        from ctrpy.runtime.cgroups import Cgroup

        stats = Cgroup(path).stats()
        return {"id": container_id, "cgroup": path, **stats}

    # ---- exec, logs --------------------------------------------------------------------------------------

    def exec(self, container_id: str, exec_id: str, args: builtins.list[str], *, tty: bool = False, stdin: bool = False,
             env: builtins.list[str] | None = None, cwd: str = "", user: str = "",
             console_size: tuple[int, int] | None = None, privileged: bool = False) -> Attachment:
        """Start a process in the running task (joining its namespaces); returns the attached stream."""
        exec_id = identifiers.validate(exec_id or "exec-" + os.urandom(6).hex(), "exec id")  # ctr requires one
        if not args:
            raise errors.InvalidArgument("no command given")
        td = self._taskdir(container_id)
        state = self.state(container_id)
        if state.status not in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            raise errors.FailedPrecondition(f"task {container_id!r} is {state.status.value}, not running")
        spec = json.loads(td.config.read_text())
        process = dict(spec["process"])
        process["args"] = list(args)
        process["terminal"] = tty
        size = console_size or terminal_size()
        if tty and size:
            # An exec'd process runs at once: its size must be in the spec, not sent after the pty exists.
            process["consoleSize"] = {"height": size[0], "width": size[1]}
        if env:
            process["env"] = oci._set_env(process.get("env", []), env)
        if cwd:
            process["cwd"] = cwd
        if privileged:  # `exec --privileged`: every capability the host has, for this process only
            caps = oci.host_capabilities()
            process["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
        if user:
            root = spec["root"]["path"]
            rootfs = root if os.path.isabs(root) else str(td.path / root)
            uid, gid, extra = oci.resolve_user(user, oci.rootfs_reader(rootfs))
            process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        att = Attachment.connect(td.socket_address(), sup.F_EXEC,
                                 {"exec_id": exec_id, "process": process, "stdin": stdin,
                                  "console_size": list(size or ()) or None,
                                  **({"privileged": True} if privileged else {})},
                                 timeout=120)
        att.exec_id = exec_id
        self._publish("/tasks/exec-started", {"container_id": container_id, "exec_id": exec_id, "pid": att.pid})
        return att

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> Iterator[bytes]:
        """The task's output: the last `tail` lines, then (with `follow`) new output until the task exits."""
        td = self._taskdir(container_id)
        try:
            f = open(td.log, "rb")
        except FileNotFoundError:
            return
        with f:
            if tail is not None:
                yield from _tail_lines(f, tail)
            else:
                while chunk := f.read(65536):
                    yield chunk
            if not follow:
                return
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                if td.exit() is not None or td.supervisor_pid() is None or not td.exists():
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                time.sleep(0.1)


def terminal_size(fd: int = 0) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, if it is one: a TTY task starts with the caller's size."""
    try:
        if not os.isatty(fd):
            return None
        cols, rows = os.get_terminal_size(fd)
        return rows, cols
    except OSError:
        return None


def _tail_lines(f: Any, count: int) -> Iterator[bytes]:
    if count <= 0:
        f.seek(0, os.SEEK_END)
        return
    end = f.seek(0, os.SEEK_END)
    pos = end
    data = b""
    while pos > 0 and data.count(b"\n") <= count:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    lines = data.splitlines(keepends=True)
    f.seek(end)
    yield b"".join(lines[-count:])


CREATING_FILE = sup.CREATING_FILE
LAUNCHER_FILE = sup.LAUNCHER_FILE


def test_hook(point: str) -> None:
    """Crash tests: CTRPY_TEST_KILL_AT=<point> SIGKILLs this command at that point (see tests/test_crash.py)."""
    if os.environ.get("CTRPY_TEST_KILL_AT") == point:
        os.kill(os.getpid(), _signal.SIGKILL)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _status_code(status: int) -> int:
    """A wait status as a shell exit code: 128+N for a signal, as docker and ctr report it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return UNKNOWN_EXIT


def _proc_info(pid: int) -> dict[str, Any] | None:
    st = proc.stat(pid)
    if st is None:
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    return {"state": st.state, "command": cmd or st.comm}
