"""Tasks: the running processes of containers (containerd's core/runtime Task and Process), and the
container-creation step that turns user options into a stored spec.

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
# {"path": P}: the init's output goes to P in the CRI log format instead of output.log (ctrpy.cri).
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
    # Applied after every option above (the docker-shaped flags of ctrpy.runtime.dockerrun), and extra
    # extensions stored with the container.
    spec_opts: list[Any] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)


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
            mounts = _prepare_rootfs(client, snapshotter, opts.id, chain_id)
            prepared = True
            test_hook("create-after-prepare")
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
        extensions: dict[str, Any] = {**opts.extensions, ETC_EXTENSION: {"net_host": opts.net_host,
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


CREATOR_LABEL = "ctrpy.io/creator"  # "<pid> <start time>" of the command that prepared a rootfs snapshot


def _prepare_rootfs(client: Any, snapshotter: Any, key: str, chain_id: str) -> Any:
    """Prepare the container's rootfs snapshot (key = container id). One left by a killed `run`/`create`/`rm`
    (no container names it, and the command that made it is gone) is removed and made again."""
    labels = {CREATOR_LABEL: _proc_id(os.getpid())}
    try:
        return snapshotter.prepare(key, chain_id, labels)
    except errors.AlreadyExists:
        if not orphan_rootfs(client, snapshotter, key):
            raise
    snapshotter.remove(key)
    return snapshotter.prepare(key, chain_id, labels)


def orphan_rootfs(client: Any, snapshotter: Any, key: str) -> bool:
    """True if snapshot `key` is a container rootfs whose creator is gone and that no container uses."""
    try:
        info = snapshotter.stat(key)
    except errors.NotFound:
        return False
    creator = info.labels.get(CREATOR_LABEL)
    if not creator or _proc_alive(creator):
        return False
    return not any(c.snapshot_key == key for c in client.containers.list())


def delete_container(client: Any, container_id: str, *, force: bool = False, keep_snapshot: bool = False) -> None:
    """Remove a container: a live task is refused unless `force` (then killed); a stopped task is cleaned up;
    the rootfs snapshot is removed unless `keep_snapshot`."""
    container = client.containers.get(container_id)
    tasks = client.tasks
    if tasks.exists(container_id):
        state = tasks.state(container_id)
        if state.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.UNKNOWN, TaskStatus.CREATED,
                            TaskStatus.RESTARTING) and not force:
            raise errors.FailedPrecondition(
                f"container {container_id!r} has a {state.status.value} task: stop it first "
                f"(`ctrpy stop {container_id}`) or use --force")
        tasks.delete(container_id, force=True)
    elif tasks.dir(container_id).path.exists() and not tasks.repair(container_id):
        raise errors.FailedPrecondition(f"container {container_id!r}: its task is being created")
    test_hook("rm-after-task")
    if container.snapshot_key and not keep_snapshot:
        # The snapshot goes before the record, as containerd does: a kill in between leaves a record that
        # `rm` removes again, never a snapshot that blocks the id. The record stops naming it first (the
        # snapshotter refuses to remove a container's root file system).
        from ctrpy.runtime.metadata.containers import Container

        client.containers.update(Container(id=container_id, runtime_name=container.runtime_name, snapshot_key=""),
                                 ["snapshotkey"])
        test_hook("rm-after-unref")
        try:
            client.snapshotter(container.snapshotter).remove(container.snapshot_key)
        except errors.NotFound:
            pass
        test_hook("rm-after-snapshot")
    client.containers.delete(container_id)


# ------------------------------------------------------------------------------------------------ attach

class Attachment:
    """A connection to a supervisor, attached to one process (the init or an exec)."""

    def __init__(self, sock: socket.socket, pid: int, tty: bool) -> None:
        self.sock = sock
        self.pid = pid
        self.tty = tty
        self.exec_id = ""
        self._buf = b""
        # Kept for the supervisor's death: the process's output fds (unread while it lives), the task's log
        # and where in it our stream began, and how much output we got.
        self.fds: list[int] = []
        self.log_path: Path | None = None
        self.log_offset = -1
        self.received = 0

    @classmethod
    def connect(cls, address: str, kind: bytes, request: dict[str, Any], timeout: float = 30) -> Attachment:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise errors.Unavailable(f"the task's supervisor is not reachable: {exc.strerror}") from None
        if not sup._peer_is_us(sock):  # i15: an abstract name can be squatted by another user
            sock.close()
            raise errors.PermissionDenied(f"the task's supervisor socket {address[1:]!r} belongs to another user")
        att = cls(sock, 0, False)
        sock.sendall(sup.jframe(kind, request))
        sock.settimeout(timeout)
        try:
            # The first read may carry fds (SCM_RIGHTS, when the request asked for them).
            data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
            att.fds = list(fds)
            for fd in att.fds:
                os.set_inheritable(fd, False)
            att._buf = data
            reply_kind, payload = att.read_frame() if data else (b"", b"")
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
        att.log_offset = int(info.get("log_offset", -1))
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
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _recover(self, stdout_fd: int, stderr_fd: int) -> None:
        """The supervisor died: copy what it logged but never sent us, then read the process's output
        ourselves (through the fds it handed us) until the process closes it. The logged part cannot tell
        stdout from stderr: it goes to stdout."""
        if self.log_path is not None and self.log_offset >= 0:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self.log_offset + self.received)
                    while chunk := f.read(65536):
                        _write_all(stdout_fd, chunk)
            except OSError:
                pass
        targets = {fd: (stdout_fd if i == 0 else stderr_fd) for i, fd in enumerate(self.fds)}
        while targets:
            ready, _, _ = select.select(list(targets), [], [])
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: a pty whose last slave closed
                    chunk = b""
                if chunk:
                    _write_all(targets[fd], chunk)
                else:
                    del targets[fd]

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
                    try:
                        data = self.sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if not data:
                        self._recover(stdout_fd, stderr_fd)
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
            self.received += len(payload)
            _write_all(stdout_fd, payload)
        elif kind == sup.F_STDERR:
            self.received += len(payload)
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

PACKAGE_ROOT = sup.PACKAGE_ROOT


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
            (td.path / CREATING_FILE).write_text(_proc_id(os.getpid()))
            test_hook("create-after-mkdir")
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
            reply = self._launch(td, task_info)
            test_hook("create-after-launch")
            if not reply.get("ok"):
                raise _error_from_reply(reply)
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
        (td.path / LAUNCHER_FILE).write_text(_proc_id(pid))
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
            return not _proc_alive(creator)
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
        if ident and _proc_alive(ident):
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
        if pid is None and launcher and _proc_alive(launcher):
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

    def _runtime_states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """One `list` per runtime (root) that runs two tasks or more, instead of a `state` per task (runc:
        an exec each). A task missing from its runtime's list is asked about alone, as before."""
        from ctrpy.runtime.ociruntime import open_runtime_entry

        groups: dict[str, list[Any]] = {}
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
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if int(fields[1]) != os.getpid():
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

    def _remove_cgroup(self, td: TaskDir) -> None:
        """Whatever the runtime left of the task's cgroup goes too: processes a killed create left in it (an
        init waiting for `start` that no runtime state names), then the empty directories."""
        path = td.task().get("cgroups_path", "").strip("/")
        if not path:
            return
        base = Path("/sys/fs/cgroup")
        candidates = [base / path] if (base / "cgroup.controllers").exists() else \
            [d / path for d in base.iterdir() if d.is_dir() and not d.is_symlink()]
        for cg in candidates:
            for procs in cg.glob("**/cgroup.procs") if cg.is_dir() else ():
                for pid in _read_text(procs).split():
                    try:
                        os.kill(int(pid), _signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
        for cg in candidates:
            if cg.is_dir():
                deadline = time.monotonic() + 2
                while any(_read_text(p) for p in cg.glob("**/cgroup.procs")) and time.monotonic() < deadline:
                    time.sleep(0.02)
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
             console_size: tuple[int, int] | None = None, privileged: bool = False) -> Attachment:
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


def _proc_id(pid: int) -> str:
    """A process's identity that survives pid reuse: pid and start time."""
    from ctrpy.runtime.bundle import _proc_start_time

    return f"{pid} {_proc_start_time(pid) or 0}"


def _proc_alive(ident: str) -> bool:
    from ctrpy.runtime.bundle import _proc_start_time

    try:
        pid, start = (int(x) for x in ident.split())
    except ValueError:
        return False
    return _proc_start_time(pid) == start


def _status_code(status: int) -> int:
    """A wait status as a shell exit code: 128+N for a signal, as docker and ctr report it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return UNKNOWN_EXIT


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
