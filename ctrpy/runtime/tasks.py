"""Tasks: the running processes of containers (containerd's core/runtime Task and Process), and the
container-creation step that turns user options into a stored spec.

A task is created from a container record: its state directory (`bundle.TaskDir`) gets the rootfs mounted
(image containers), the /etc files, `config.json`, and one supervisor process (`supervisor.py`) which runs
the OCI runtime's create, serves stdio and records the exit. Everything else (start, kill, pause, ps, delete)
talks to the runtime directly; exec and attach talk to the supervisor over its socket.

Status comes from the durable exit record first, then from the runtime:

    exit.json present                          -> STOPPED (with its exit status)
    supervisor alive                           -> the runtime's status (CREATED / RUNNING / PAUSED)
    supervisor gone, container still alive     -> UNKNOWN (nobody reaps it; kill or delete --force it)
    supervisor gone, container gone            -> STOPPED, exit status 255 (recorded then, so it sticks)

so a task never stays RUNNING after its supervisor or its container was SIGKILLed.
"""

from __future__ import annotations

import json
import os
import select
import signal as _signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors, oci
from ctrpy.runtime import supervisor as sup
from ctrpy.runtime.bundle import TaskDir, write_json_durably
from ctrpy.runtime.metadata import now

UNKNOWN_EXIT = sup.UNKNOWN_EXIT
ETC_EXTENSION = "ctrpy.io/etc"


class TaskStatus(str, Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    UNKNOWN = "unknown"

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

@dataclass
class ContainerOptions:
    """What `containers create` and `run` accept (ctr's flags)."""

    id: str
    image: str = ""
    rootfs: str = ""
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    user: str = ""
    mounts: list[str] = field(default_factory=list)
    tty: bool = False
    snapshotter: str = ""
    runtime: str = ""
    hostname: str = ""
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    memory_limit: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    net_host: bool = False
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    # A ctrpy.runtime.network.NetworkRequest (the --network/-p/--add-host/--dns flags): the task is then
    # connected by the network module (etc files before create, attach before start, detach on delete).
    # None: no networking beyond a private namespace with lo (ctr's default), or the host's with net_host.
    network: Any = None
    # Further oci.with_*() options, applied after those above (run --security-opt).
    spec_opts: list[Any] = field(default_factory=list)


def read_env_file(path: str) -> list[str]:
    """KEY=VALUE lines; blank lines and # comments skipped; a bare KEY takes the caller's value (docker)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read env file") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            if line in os.environ:
                entries.append(f"{line}={os.environ[line]}")
            continue
        entries.append(line)
    return entries


def _default_hostname(container_id: str) -> str:
    name = "".join(c if c.isalnum() or c in ".-" else "-" for c in container_id)[:63].strip("-.")
    return name or "container"


def create_container(client: Any, opts: ContainerOptions) -> Any:
    """Build the spec from `opts` (and the image config) and store the container; with an image, the
    rootfs snapshot (key = container id) is prepared from the image's top chain ID."""
    from ctrpy.runtime.metadata.containers import Container, validate_id
    from ctrpy.runtime.ociruntime import runtime_entry

    validate_id(opts.id)
    runtime_name, _ = runtime_entry(opts.runtime or client.config["default_runtime"], client.config)
    if bool(opts.image) == bool(opts.rootfs):
        raise errors.InvalidArgument("give either an image or --rootfs DIR")
    spec_opts: list[oci.SpecOpt] = []
    snapshotter_name = ""
    snapshot_key = ""
    prepared = False
    image_name = ""
    try:
        try:
            client.containers.get(opts.id)
        except errors.NotFound:
            pass
        else:
            raise errors.AlreadyExists(f"container {opts.id!r} already exists")
        if opts.rootfs:
            rootfs = os.path.abspath(opts.rootfs)
            if not os.path.isdir(rootfs):
                raise errors.NotFound(f"rootfs directory {opts.rootfs} does not exist")
            reader = oci.rootfs_reader(rootfs)
            spec_opts.append(oci.with_rootfs(rootfs))
        else:
            from ctrpy.runtime.unpack import resolve_chain, unpack_image

            from ctrpy.runtime.images import find_image

            image = find_image(client, opts.image)
            image_name = image.name
            snapshotter_name = opts.snapshotter or client.config["default_snapshotter"]
            chain_id = unpack_image(client, image, snapshotter_name)
            image_config = resolve_chain(client, image)[0].config
            snapshotter = client.snapshotter(snapshotter_name)
            mounts = snapshotter.prepare(opts.id, chain_id)
            prepared = True
            snapshot_key = opts.id
            reader = oci.mounts_reader(mounts)
            spec_opts.append(oci.with_image_config(image_config, reader))
        if opts.args:
            spec_opts.append(oci.with_process_args(opts.args))
        env = [e for f in opts.env_files for e in read_env_file(f)] + list(opts.env)
        if env:
            spec_opts.append(oci.with_env(env))
        if opts.cwd:
            spec_opts.append(oci.with_cwd(opts.cwd))
        if opts.user:
            uid, gid, extra = oci.resolve_user(opts.user, reader)
            spec_opts.append(oci.with_user(uid, gid, extra))
        if opts.tty:
            spec_opts.append(oci.with_tty(True))
        spec_opts.append(oci.with_hostname(opts.hostname or _default_hostname(opts.id)))
        if opts.read_only:
            spec_opts.append(oci.with_readonly_rootfs(True))
        if opts.privileged:
            spec_opts.append(oci.with_privileged())
        if opts.cap_add or opts.cap_drop:
            spec_opts.append(oci.with_capabilities(opts.cap_add, opts.cap_drop))
        if opts.mounts:
            spec_opts.append(oci.with_mounts([oci.parse_mount(m) for m in opts.mounts]))
        net_extension: dict[str, Any] | None = None
        if opts.network is not None:
            from ctrpy.runtime import network as net

            mode, _ = net.resolve(client, opts.network.network)  # an unknown network fails here, nothing made
            net_extension = opts.network.to_dict()
            if mode == "host":
                spec_opts.append(oci.with_net_host())
        elif opts.net_host:
            spec_opts.append(oci.with_net_host())
        if opts.memory_limit is not None:
            spec_opts.append(oci.with_memory_limit(opts.memory_limit))
        if opts.cpus is not None:
            spec_opts.append(oci.with_cpus(opts.cpus))
        if opts.cpu_shares is not None:
            spec_opts.append(oci.with_cpu_shares(opts.cpu_shares))
        if opts.pids_limit is not None:
            spec_opts.append(oci.with_pids_limit(opts.pids_limit))
        spec_opts.extend(opts.spec_opts)
        spec_opts.append(oci.with_cgroups_path(
            oci.cgroups_path(client.config.get("cgroup.parent", "ctrpy"), client.namespace, opts.id)))
        spec = oci.generate_spec(*spec_opts)
        if not spec["process"]["args"]:
            raise errors.InvalidArgument("no command given and the image has none")
        extensions: dict[str, Any] = {ETC_EXTENSION: {"net_host": opts.net_host,
                                                      "extra_hosts": [list(h) for h in opts.extra_hosts],
                                                      "dns": list(opts.dns)}}
        if net_extension is not None:
            from ctrpy.runtime.network import EXTENSION_KEY

            extensions[EXTENSION_KEY] = net_extension
        container = Container(id=opts.id, runtime_name=runtime_name, image=image_name,
                              snapshotter=snapshotter_name, snapshot_key=snapshot_key, spec=spec,
                              extensions=extensions, labels=dict(opts.labels))
        return client.containers.create(container)
    except BaseException:
        if prepared:
            try:
                client.snapshotter(snapshotter_name).remove(opts.id)
            except errors.CtrpyError:
                pass
        raise


def delete_container(client: Any, container_id: str, *, force: bool = False, keep_snapshot: bool = False) -> None:
    """Remove a container: a live task is refused unless `force` (then killed); a stopped task is cleaned up;
    the rootfs snapshot is removed unless `keep_snapshot`."""
    container = client.containers.get(container_id)
    tasks = client.tasks
    if tasks.exists(container_id):
        state = tasks.state(container_id)
        if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN, TaskStatus.CREATED) \
                and not force:
            raise errors.FailedPrecondition(
                f"container {container_id!r} has a {state.status.value} task: stop it first or use --force")
        tasks.delete(container_id, force=True)
    # The record goes first: the snapshotter refuses to remove a container's live root file system.
    client.containers.delete(container_id)
    if container.snapshot_key and not keep_snapshot:
        try:
            client.snapshotter(container.snapshotter).remove(container.snapshot_key)
        except errors.NotFound:
            pass


# ------------------------------------------------------------------------------------------------ attach

class Attachment:
    """A connection to a supervisor, attached to one process (the init or an exec)."""

    def __init__(self, sock: socket.socket, pid: int, tty: bool) -> None:
        self.sock = sock
        self.pid = pid
        self.tty = tty
        self.exec_id = ""
        self._buf = b""

    @classmethod
    def connect(cls, address: str, kind: bytes, request: dict[str, Any], timeout: float = 30) -> Attachment:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise errors.Unavailable(f"the task's supervisor is not reachable: {exc.strerror}") from None
        att = cls(sock, 0, False)
        sock.sendall(sup.jframe(kind, request))
        sock.settimeout(timeout)
        try:
            reply_kind, payload = att.read_frame()
        except (socket.timeout, OSError) as exc:
            sock.close()
            raise errors.Unavailable(f"no answer from the task's supervisor: {exc}") from None
        sock.settimeout(None)
        if reply_kind == sup.F_ERR:
            sock.close()
            raise _error_from_reply(json.loads(payload))
        if reply_kind != sup.F_OK:
            sock.close()
            raise errors.Internal(f"unexpected supervisor answer {reply_kind!r}")
        info = json.loads(payload)
        att.pid, att.tty = int(info.get("pid", 0)), bool(info.get("tty"))
        return att

    def read_frame(self) -> tuple[bytes, bytes]:
        """One frame; (b"", b"") when the supervisor closed the connection."""
        while True:
            if len(self._buf) >= sup.HEADER.size:
                kind, length = sup.HEADER.unpack_from(self._buf)
                if len(self._buf) >= sup.HEADER.size + length:
                    payload = self._buf[sup.HEADER.size:sup.HEADER.size + length]
                    self._buf = self._buf[sup.HEADER.size + length:]
                    return kind, payload
            data = self.sock.recv(65536)
            if not data:
                return b"", b""
            self._buf += data

    def has_buffered_frame(self) -> bool:
        if len(self._buf) < sup.HEADER.size:
            return False
        _, length = sup.HEADER.unpack_from(self._buf)
        return len(self._buf) >= sup.HEADER.size + length

    def send_stdin(self, data: bytes) -> None:
        self.sock.sendall(sup.frame(sup.F_STDIN, data))

    def close_stdin(self) -> None:
        self.sock.sendall(sup.frame(sup.F_CLOSE))

    def resize(self, rows: int, cols: int) -> None:
        self.sock.sendall(sup.jframe(sup.F_RESIZE, {"rows": rows, "cols": cols}))

    def close(self) -> None:
        self.sock.close()

    def pump(self, stdin_fd: int | None, stdout_fd: int = 1, stderr_fd: int = 2,
             on_signal: Callable[[int], None] | None = None, close_empty_stdin: bool = True) -> dict[str, Any] | None:
        """Copy stdin to the process and its output to our fds until it exits; returns its exit record,
        or None if the supervisor went away first. With a TTY the local terminal is put in raw mode and
        window size changes are forwarded; otherwise SIGINT/SIGTERM are passed to `on_signal`.
        End of our stdin closes the process's stdin, except, without `close_empty_stdin`, when we sent
        nothing at all (so a second, passive attach does not close the owner's input)."""
        sent_input = False
        restore: Callable[[], None] | None = None
        old_handlers: dict[int, Any] = {}
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        pending: list[int] = []
        try:
            old_wakeup = _signal.set_wakeup_fd(wake_w)
        except ValueError:  # not the main thread
            old_wakeup = None
        try:
            if self.tty and stdin_fd is not None and os.isatty(stdin_fd):
                restore = _raw_mode(stdin_fd)
                self._send_size(stdin_fd)
                old_handlers[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, lambda s, f: pending.append(s))
            elif on_signal is not None:
                for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
                    old_handlers[sig] = _signal.signal(sig, lambda s, f: pending.append(s))
            reading_stdin = stdin_fd is not None
            while True:
                while self.has_buffered_frame():
                    record = self._deliver(*self.read_frame(), stdout_fd, stderr_fd)
                    if record is not None:
                        return record
                watch = [self.sock, wake_r] + ([stdin_fd] if reading_stdin and stdin_fd is not None else [])
                try:
                    ready, _, _ = select.select(watch, [], [])
                except InterruptedError:
                    ready = []
                if wake_r in ready:
                    try:
                        os.read(wake_r, 1024)
                    except BlockingIOError:
                        pass
                while pending:
                    sig = pending.pop(0)
                    if sig == _signal.SIGWINCH and stdin_fd is not None:
                        self._send_size(stdin_fd)
                    elif on_signal is not None:
                        on_signal(sig)
                if stdin_fd is not None and stdin_fd in ready:
                    try:
                        data = os.read(stdin_fd, 65536)
                    except OSError:
                        data = b""
                    try:
                        if data:
                            self.send_stdin(data)
                            sent_input = True
                        else:
                            reading_stdin = False
                            if sent_input or close_empty_stdin:
                                self.close_stdin()
                    except OSError:
                        reading_stdin = False
                if self.sock in ready:
                    data = self.sock.recv(65536)
                    if not data:
                        return None
                    self._buf += data
        finally:
            if restore is not None:
                restore()
            for sig, handler in old_handlers.items():
                _signal.signal(sig, handler)
            if old_wakeup is not None:
                _signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _deliver(self, kind: bytes, payload: bytes, stdout_fd: int, stderr_fd: int) -> dict[str, Any] | None:
        if kind == sup.F_STDOUT:
            _write_all(stdout_fd, payload)
        elif kind == sup.F_STDERR:
            _write_all(stderr_fd, payload)
        elif kind == sup.F_EXIT:
            record: dict[str, Any] = json.loads(payload)
            return record
        return None

    def _send_size(self, fd: int) -> None:
        try:
            cols, rows = os.get_terminal_size(fd)
            self.resize(rows, cols)
        except OSError:
            pass

    def wait(self) -> dict[str, Any] | None:
        """Discard output until the exit frame; None if the supervisor went away."""
        while True:
            kind, payload = self.read_frame()
            if not kind:
                return None
            if kind == sup.F_EXIT:
                record: dict[str, Any] = json.loads(payload)
                return record


def terminal_size(fd: int = 0) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, if it is one: a TTY task starts with the caller's size."""
    try:
        if not os.isatty(fd):
            return None
        cols, rows = os.get_terminal_size(fd)
        return rows, cols
    except OSError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def _raw_mode(fd: int) -> Callable[[], None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return restore


def _error_from_reply(reply: dict[str, Any]) -> errors.CtrpyError:
    """Rebuild the error a runtime child raised, keeping its class (and `run`'s exit code)."""
    from ctrpy.runtime import ociruntime

    message = str(reply.get("error") or "runtime failure")
    name = reply.get("class", "")
    run_code = reply.get("run_exit_code")
    if name == "ExecFailure" or run_code in (errors.EXIT_CANNOT_EXEC, errors.EXIT_COMMAND_NOT_FOUND):
        return ociruntime.ExecFailure(message, not_found=run_code == errors.EXIT_COMMAND_NOT_FOUND)
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.CtrpyError):
        return cls(message)
    if name == "RuntimeFailure" or run_code == errors.EXIT_RUNTIME_FAILURE or not name:
        return ociruntime.RuntimeFailure(message)
    return ociruntime.RuntimeFailure(message)


# ------------------------------------------------------------------------------------------------- tasks

SUPERVISOR_SCRIPT = Path(sup.__file__).resolve()
# The supervisor runs with -I -S (no site, so no editable-install finder): it gets the import path explicitly.
PACKAGE_ROOT = str(SUPERVISOR_SCRIPT.parents[2])


def _subreaper_setter() -> Callable[[], None]:
    """What the supervisor's process runs between fork and exec: PR_SET_CHILD_SUBREAPER survives exec, so the
    supervisor adopts the container's init once the runtime exits, without importing anything for it.
    The C helper does it (3 ms to load); ctypes (50 ms to import) only when the helper is not built."""
    from ctrpy.runtime import helper

    if helper.lib is not None:
        return helper.set_subreaper
    else:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return lambda: libc.prctl(36, 1, 0, 0, 0)


class TaskManager:
    """Create and drive the tasks of one namespace."""

    def __init__(self, client: Any) -> None:
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
            # Another create is under way, or one died half-way (no supervisor): only the latter is ours to clear.
            if td.supervisor_pid() is not None or time.time() - td.path.stat().st_mtime < 30:
                raise errors.AlreadyExists(f"task {container_id!r} is being created") from None
            self._teardown(td)
            td.path.mkdir(parents=True)
        mounted = False
        try:
            if container.snapshot_key:
                from ctrpy.runtime.mount import mount_all

                mounts = self.client.snapshotter(container.snapshotter).mounts(container.snapshot_key)
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
            }
            write_json_durably(td.task_file, task_info)
            reply = self._launch(td)
            if not reply.get("ok"):
                raise _error_from_reply(reply)
            if net_request is not None:
                net.attach(self.client, container_id, f"/proc/{int(reply['pid'])}/ns/net", net_request)
            td.created_marker.touch()
        except BaseException:
            self._abort_create(td, runtime_name, entry)
            if networked:
                self._detach_network(container_id)
            self._teardown(td, mounted)
            raise
        self._publish("/tasks/create", {"container_id": container_id, "pid": reply["pid"]})
        return TaskState(container_id, int(reply["pid"]), TaskStatus.CREATED, runtime_name)

    def _launch(self, td: TaskDir) -> dict[str, Any]:
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-I", "-S", "-c", sup.LAUNCH, PACKAGE_ROOT, str(td.path), str(ready_w)]
        set_subreaper = _subreaper_setter()
        log_fd = os.open(td.path / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        # fork + exec by hand: `subprocess` costs 10 ms of imports on every `run`, and the child must call
        # prctl between fork and exec (the subreaper flag survives exec but not fork).
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits at once
            try:
                os.setsid()
                set_subreaper()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                os.set_inheritable(ready_w, True)
                os.chdir("/")
                os.execv(sys.executable, argv)
            finally:
                os._exit(127)
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

    def _abort_create(self, td: TaskDir, runtime_name: str, entry: dict[str, Any]) -> None:
        """Undo a create interrupted after the supervisor started (Ctrl-C, a failure after the runtime's create):
        nothing may keep running for a task that does not exist."""
        from ctrpy.runtime.ociruntime import open_runtime_entry

        pid = td.supervisor_pid()
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
        try:
            runtime.start(container_id)
        except errors.CtrpyError as exc:
            from ctrpy.runtime.ociruntime import as_runtime_error

            raise as_runtime_error(runtime.name, exc) from None
        pid = td.init_pid()
        self._publish("/tasks/start", {"container_id": container_id, "pid": pid})
        return TaskState(container_id, pid, TaskStatus.RUNNING, runtime.name)

    def attach(self, container_id: str, exec_id: str = "", stdin: bool = False) -> Attachment:
        td = self._taskdir(container_id)
        return Attachment.connect(td.socket_address(), sup.F_ATTACH, {"exec_id": exec_id, "stdin": stdin})

    # ---- state ---------------------------------------------------------------------------------------------

    def state(self, container_id: str) -> TaskState:
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
        try:
            rt_state = self.runtime_for(td).state(container_id)
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
        out = []
        for entry in sorted(base.iterdir()):
            if (entry / "created").exists():
                try:
                    out.append(self.state(entry.name))
                except errors.NotFound:
                    continue
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
        self.runtime_for(td).kill(container_id, signal, all=all)

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
                return record or {"exit_status": UNKNOWN_EXIT, "exited_at": now(), "pid": 0}
            state = self.state(container_id)
            if state.status == TaskStatus.STOPPED:
                return {"exit_status": state.exit_status, "exited_at": state.exited_at, "pid": state.pid,
                        "oom_killed": state.oom_killed}
            # Supervisor gone, container alive: nobody will record its exit; poll until it is gone.
            time.sleep(0.1)

    def delete(self, container_id: str, force: bool = False) -> TaskState:
        td = self._taskdir(container_id)
        state = self.state(container_id)
        runtime = self.runtime_for(td)
        if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN) and not force:
            raise errors.FailedPrecondition(
                f"task {container_id!r} is {state.status.value}: stop it first or use --force")
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

    def _remove_cgroup(self, td: TaskDir) -> None:
        """Whatever the runtime left of the task's cgroup (empty directories) goes too."""
        path = td.task().get("cgroups_path", "").strip("/")
        if not path:
            return
        base = Path("/sys/fs/cgroup")
        candidates = [base / path] if (base / "cgroup.controllers").exists() else \
            [d / path for d in base.iterdir() if d.is_dir() and not d.is_symlink()]
        for cg in candidates:
            if cg.is_dir():
                for sub in sorted(cg.glob("**/"), key=lambda p: len(str(p)), reverse=True):
                    try:
                        sub.rmdir()
                    except OSError:
                        pass

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

    def ps(self, container_id: str) -> list[dict[str, Any]]:
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
        try:
            from ctrpy.runtime.cgroups import Cgroup  # type: ignore[import-not-found]

            stats: dict[str, Any] = Cgroup(path).stats()
        except ImportError:
            stats = cgroup_stats(path)
        return {"id": container_id, "cgroup": path, **stats}

    # ---- exec, logs --------------------------------------------------------------------------------------

    def exec(self, container_id: str, exec_id: str, args: list[str], *, tty: bool = False, stdin: bool = False,
             env: list[str] | None = None, cwd: str = "", user: str = "",
             console_size: tuple[int, int] | None = None) -> Attachment:
        """Start a process in the running task (joining its namespaces); returns the attached stream."""
        import re

        exec_id = exec_id or "exec-" + os.urandom(6).hex()  # generated when none is given (ctr requires one)
        if not re.match(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$", exec_id) or len(exec_id) > 76:
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
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
        if user:
            root = spec["root"]["path"]
            rootfs = root if os.path.isabs(root) else str(td.path / root)
            uid, gid, extra = oci.resolve_user(user, oci.rootfs_reader(rootfs))
            process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        att = Attachment.connect(td.socket_address(), sup.F_EXEC,
                                 {"exec_id": exec_id, "process": process, "stdin": stdin,
                                  "console_size": list(size or ()) or None},
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


def _proc_info(pid: int) -> dict[str, Any] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat.rsplit(")", 1)[1].split()[0]
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return {"state": state, "command": cmd or comm}
    except (OSError, ValueError):
        return None


def cgroup_stats(path: str) -> dict[str, Any]:
    """memory/cpu/pids of a cgroup (v2 unified or v1 controllers), read straight from cgroupfs."""
    base = Path("/sys/fs/cgroup")
    rel = path.strip("/")

    def read(p: Path) -> str:
        try:
            return p.read_text().strip()
        except OSError:
            return ""

    def num(text: str) -> int | None:
        if not text or text == "max":
            return None
        try:
            return int(text.split()[0])
        except ValueError:
            return None

    def keyed(text: str) -> dict[str, int]:
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
        return out

    if (base / "cgroup.controllers").exists():
        cg = base / rel
        events = keyed(read(cg / "memory.events"))
        cpu = keyed(read(cg / "cpu.stat"))
        return {
            "memory": {"usage": num(read(cg / "memory.current")), "limit": num(read(cg / "memory.max")),
                       "max_usage": num(read(cg / "memory.peak")), "oom_kills": events.get("oom_kill", 0)},
            "cpu": {"usage_ns": cpu.get("usage_usec", 0) * 1000},
            "pids": {"current": num(read(cg / "pids.current")), "limit": num(read(cg / "pids.max"))},
        }
    mem = base / "memory" / rel
    limit = num(read(mem / "memory.limit_in_bytes"))
    if limit is not None and limit >= 1 << 62:
        limit = None
    oom = keyed(read(mem / "memory.oom_control"))
    return {
        "memory": {"usage": num(read(mem / "memory.usage_in_bytes")), "limit": limit,
                   "max_usage": num(read(mem / "memory.max_usage_in_bytes")), "oom_kills": oom.get("oom_kill", 0)},
        "cpu": {"usage_ns": num(read(base / "cpuacct" / rel / "cpuacct.usage")) or 0},
        "pids": {"current": num(read(base / "pids" / rel / "pids.current")),
                 "limit": num(read(base / "pids" / rel / "pids.max"))},
    }
