"""The per-task supervisor's Python half: the frame protocol, the launch, and the runtime child.

The supervisor itself is a small C program (csrc/supervisor.c, installed as `ctrpy/ctrpy-supervisor`), one per
task, detached from the CLI like containerd's shim. How a task gets one:

1. the CLI forks; the child starts a new session, becomes a child subreaper and runs the OCI runtime's
   `create` with the modules the CLI already imported (no second interpreter: that was most of `run`'s
   latency); the container's init is its child (built-in runtime) or is reparented to it (runc, crun);
2. the child execs `ctrpy-supervisor` with the init's pid and its stdio fds: the init stays its child;
3. the supervisor answers on READY_FD one JSON line, {"ok": true, "pid": N} (or the child does, with
   {"ok": false, "error": ...}, when the runtime failed), then serves stdio, exec, restarts, and records
   exits (see the C file).

Exec processes (and restarts) are started by the C supervisor through this module's `child_main`, run as
`python -I -S -c ... exec|restart FD`: it runs the runtime verb and sends the process's pid and stdio fds
back over FD (SCM_RIGHTS).

A CRI container (task.json "log_path", set from tasks.LOG_EXTENSION) logs to kubelet's path in the CRI
format instead of output.log. Only the supervisor's own user may connect (SO_PEERCRED): the socket is abstract.

Frames are `type (1 byte) | length (4 bytes, big endian) | payload`:
  client -> supervisor: A attach {"exec_id", "stdin"}, X exec {"exec_id", "process", "stdin"},
                        I stdin bytes, C close stdin, R resize {"rows", "cols"}, S stop (no more restarts),
                        O reopen the CRI log (kubelet rotated it)
  supervisor -> client: K ok {"pid", "tty", "log_offset"}, E error {"error", ...}, 1 stdout bytes,
                        2 stderr bytes, Z exit {"exit_status", "exited_at", "oom_killed"}

This module is imported on every `run`: it imports only what the CLI has anyway (not even typing: the
annotations are strings, and the names they use are imported for the type checker only).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">cI")
F_ATTACH, F_EXEC, F_STDIN, F_CLOSE, F_RESIZE, F_STOP = b"A", b"X", b"I", b"C", b"R", b"S"
F_REOPEN = b"O"  # CRI: reopen the container log (kubelet rotated it)
F_OK, F_ERR, F_STDOUT, F_STDERR, F_EXIT = b"K", b"E", b"1", b"2", b"Z"

TASK_FILE = "task.json"
EXIT_FILE = "exit.json"
LOG_FILE = "output.log"
STREAM_LOG = "container.log"  # docker's json-file lines (written by csrc/supervisor.c), read by ctrpy.runtime.logs
LOG_MAX_SIZE_ANNOTATION = "ctrpy.io/log.max-size"  # bytes; with LOG_MAX_FILE_ANNOTATION: rotation
LOG_MAX_FILE_ANNOTATION = "ctrpy.io/log.max-file"
PID_FILE = "init.pid"
SUPERVISOR_PID_FILE = "supervisor.pid"
RESTART_FILE = "restart.json"
STOP_MARKER = "stop-requested"
CREATING_FILE = "creating"  # "<pid> <start time>" of the command creating the task
LAUNCHER_FILE = "launcher"  # the same for the forked launcher, which becomes the supervisor (same pid)
EXECS_DIR = "execs"
UNKNOWN_EXIT = 255
# Where the build puts the C supervisor: next to the package's compiled helper (setup.py).
SUPERVISOR_BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ctrpy-supervisor")
# How the C supervisor starts this module for exec and restart (it passes the package root explicitly:
# -I -S has no site, so no editable-install finder).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def json_dumps(obj: object) -> str:
    return json.dumps(obj)


def socket_address(task_dir: str) -> str:
    """The supervisor's abstract socket name: abstract, so deep state directories never hit the 108-byte
    limit of socket paths, and keyed by the directory's inode so a recreated task gets a new name."""
    st = os.stat(task_dir)
    return "\0ctrpy-sup/%d/%d" % (st.st_dev, st.st_ino)


def _peer_is_us(sock: socket.socket) -> bool:
    """SO_PEERCRED: the connecting process runs as our user (root: the CLI)."""
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return False
    return bool(uid == os.getuid())


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def jframe(kind: bytes, obj: object) -> bytes:
    return frame(kind, json_dumps(obj).encode())


def write_durably(path: str, data: dict[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old file or the whole new one."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json_dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def binary() -> str:
    """The C supervisor's path; a clear error when the install did not build it."""
    if not os.access(SUPERVISOR_BINARY, os.X_OK):
        from ctrpy.runtime import errors

        raise errors.Unavailable(f"the ctrpy supervisor ({SUPERVISOR_BINARY}) is not built; reinstall ctrpy "
                                 "(`pip install .` compiles it and needs a C compiler)")
    return SUPERVISOR_BINARY


def _reset_signals() -> None:
    import signal

    # The runtime and the container must not inherit the CLI's signal handling (Python ignores SIGPIPE).
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _set_subreaper() -> None:
    try:
        from ctrpy.runtime import helper

        if helper.lib is not None:
            helper.set_subreaper()
            return
    except ImportError:
        pass
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _recv_fd(sock: socket.socket) -> int:
    """Receive one fd sent with SCM_RIGHTS (the pty master, from the runtime's console socket)."""
    _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 4)
    if not fds:
        raise OSError(errno.EPROTO, "no file descriptor received on the console socket")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


def _error_reply(runtime_name: str, exc: BaseException) -> dict[str, Any]:
    try:
        from ctrpy.runtime.ociruntime import as_runtime_error

        exc = as_runtime_error(runtime_name, exc)
    except ImportError:
        pass
    return {"ok": False, "error": str(exc) or type(exc).__name__, "class": type(exc).__name__,
            "exit_code": getattr(exc, "exit_code", 1), "run_exit_code": getattr(exc, "run_exit_code", None)}


def start_process(op: str, task_dir: str, task: dict[str, Any],
                  request: dict[str, Any]) -> tuple[int, bool, bool, list[int]]:
    """Run one runtime verb for the supervisor: "create" (the init), "exec" (request = the X frame's
    payload) or "restart" (delete the stopped init's runtime state, create and start again).
    Returns (pid, tty, stdin, fds to hand over: [master] or [stdin_w, out_r, err_r] or [out_r, err_r])."""
    from pathlib import Path  # already imported with ociruntime

    from ctrpy.runtime.ociruntime import open_runtime_entry

    runtime = open_runtime_entry(task["runtime"], task["runtime_entry"], Path(task["state_root"]))
    cid = task["id"]
    if op == "exec":
        process = request["process"]
        tty = bool(process.get("terminal"))
        stdin = bool(request.get("stdin"))
        size = request.get("console_size")
        record_dir = os.path.join(task_dir, EXECS_DIR, request["exec_id"])
        os.makedirs(record_dir, exist_ok=True)
        pid_file = os.path.join(record_dir, "pid")
    else:
        tty = bool(task.get("terminal"))
        stdin = bool(task.get("stdin")) and op == "create"
        size = task.get("console_size")
        pid_file = os.path.join(task_dir, PID_FILE)
    console_dir = console_path = ""
    listener = None
    keep: list[int] = []
    child_fds: list[int] = []
    stdio: tuple[int, int, int] | None = None
    try:
        if tty:
            # Console socket paths are limited to 108 bytes: keep it in a short private directory.
            console_dir = "/tmp/ctrpy-console-%d-%d" % (os.getpid(), time.monotonic_ns())
            os.mkdir(console_dir, 0o700)
            console_path = console_dir + "/c.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(console_path)
            listener.listen(1)
        else:
            if stdin:
                in_r, in_w = os.pipe()
                keep.append(in_w)
            else:
                in_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            keep += [out_r, err_r]
            child_fds = [in_r, out_w, err_w]
            stdio = (in_r, out_w, err_w)
        console_socket = Path(console_path) if console_path else None
        if op == "restart":
            try:
                runtime.delete(cid, force=True)
            except Exception:  # noqa: BLE001 - already gone is fine; create reports real trouble
                pass
        if op == "exec":
            if request.get("privileged"):  # passed only when set: a plugin runtime may predate the keyword
                runtime.exec(cid, process, pid_file=Path(pid_file), console_socket=console_socket, stdio=stdio,
                             privileged=True)
            else:
                runtime.exec(cid, process, pid_file=Path(pid_file), console_socket=console_socket, stdio=stdio)
        else:
            runtime.create(cid, Path(task_dir), pid_file=Path(pid_file), console_socket=console_socket, stdio=stdio)
        for fd in child_fds:
            os.close(fd)
        child_fds = []
        if listener is not None:
            # The runtime connected and sent the pty master before it returned: the connection is queued.
            listener.settimeout(30)
            conn, _ = listener.accept()
            with conn:
                master = _recv_fd(conn)
            if size:
                _set_winsize(master, int(size[0]), int(size[1]))
            keep = [master]
        if op == "restart":
            if task.get("network"):
                _reattach_network(task, cid, pid_file)
            runtime.start(cid)
        with open(pid_file) as f:
            pid = int(f.read().strip())
        return pid, tty, stdin, keep
    except BaseException:
        for fd in keep + child_fds:
            os.close(fd)
        raise
    finally:
        if listener is not None:
            listener.close()
            try:
                os.unlink(console_path)
                os.rmdir(console_dir)
            except OSError:
                pass


def _reattach_network(task: dict[str, Any], cid: str, pid_file: str) -> None:
    """A restarted init has a new network namespace: connect it again as the task's create did."""
    from ctrpy.runtime import network as net
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.config import load_config

    client = Client(task["root"], task["state_root"], task["namespace"], load_config(task.get("config_path")))
    request = net.NetworkRequest.from_dict(client.containers.get(cid).extensions[net.EXTENSION_KEY])
    with open(pid_file) as f:
        pid = int(f.read().strip())
    net.attach(client, cid, f"/proc/{pid}/ns/net", request)


def launch(task_dir: str, task: dict[str, Any], ready_w: int, log_fd: int, program: str) -> None:
    """The forked CLI child: create the init, then become the C supervisor. Never returns."""
    try:
        # Our identity first (the CLI writes it too): if the CLI is killed right after the fork, a repair still
        # finds and stops us.
        from ctrpy.runtime.linux.proc import proc_id  # already imported: we are the forked CLI

        with open(os.path.join(task_dir, LAUNCHER_FILE), "w") as f:
            f.write(proc_id(os.getpid()))
        os.setsid()
        _set_subreaper()
        _reset_signals()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.chdir("/")
        pid, tty, stdin, fds = start_process("create", task_dir, task, {})
        for fd in fds + [ready_w]:
            os.set_inheritable(fd, True)
        argv = [program, "--ready", str(ready_w), "--pid", str(pid), "--id", task["id"],
                "--namespace", task["namespace"], "--root", task["root"], "--cgroup", task.get("cgroups_path") or "",
                "--python", task.get("python") or sys.executable, "--pkgroot", PACKAGE_ROOT,
                "--restart", task.get("restart_policy") or "no", "--log-path", task.get("log_path") or ""]
        if tty:
            argv += ["--master", str(fds[0])]
        elif stdin:
            argv += ["--stdin", str(fds[0]), "--stdout", str(fds[1]), "--stderr", str(fds[2])]
        else:
            argv += ["--stdout", str(fds[0]), "--stderr", str(fds[1])]
        argv.append(task_dir)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(program, argv)
    except BaseException as exc:  # every failure goes back to the CLI as one line
        try:
            os.write(ready_w, (json_dumps(_error_reply(task.get("runtime", ""), exc)) + "\n").encode())
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(1)


def child_main(argv: list[str]) -> int:
    """`exec` or `restart` for the C supervisor: TASK_DIR OP FD (the request arrives on FD)."""
    task_dir, op, fd = argv[0], argv[1], int(argv[2])
    sock = socket.socket(fileno=fd)
    with open(os.path.join(task_dir, TASK_FILE)) as f:
        task = json.load(f)
    sys.path[:] = task["sys_path"]
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    fds: list[int] = []
    try:
        request = json.loads(data or b"{}")
        pid, tty, stdin, fds = start_process(op, task_dir, task, request)
        reply = {"ok": True, "pid": pid, "tty": tty, "stdin": stdin}
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, then to the client
        reply = _error_reply(task.get("runtime", ""), exc)
    socket.send_fds(sock, [(json_dumps(reply) + "\n").encode()], fds)
    return 0 if reply["ok"] else 1
