"""The per-task supervisor: one small process per task, detached from the CLI (like containerd's shim).

It is started as `python -I -S -c LAUNCH PACKAGE_ROOT TASK_DIR READY_FD` in a new session, already a child subreaper
(PR_SET_CHILD_SUBREAPER is set by the launcher before exec and survives exec), and:

1. runs the OCI runtime's `create` in a forked child (so the runtime's imports never weigh on this process);
   the container's init is reparented here when the runtime exits;
2. tells the launcher on READY_FD one JSON line: {"ok": true, "pid": N} or {"ok": false, "error": ...};
3. serves stdio: the init's output goes to TASK_DIR/output.log and to every attached client; clients
   connect to an abstract unix socket (`socket_address(TASK_DIR)`) and speak `frames` (below);
4. starts exec processes on request (again through a forked runtime child) and streams them the same way;
5. reaps the init and the exec processes, and records each exit durably (write to a temp file, fsync,
   rename, fsync the directory) in exit.json / execs/<id>/exit.json, then publishes /tasks/exit (and
   /tasks/oom) events and exits once the init is gone.

It imports only os, sys, socket, select, signal, struct, json, errno and time, to keep its memory small: it
is multiplied by every container.

Frames are `type (1 byte) | length (4 bytes, big endian) | payload`:
  client -> supervisor: A attach {"exec_id", "stdin"}, X exec {"exec_id", "process", "stdin"},
                        I stdin bytes, C close stdin, R resize {"rows", "cols"}
  supervisor -> client: K ok {...}, E error {"error", ...}, 1 stdout bytes, 2 stderr bytes,
                        Z exit {"exit_status", "exited_at", "oom_killed"}
"""

import _json
import _signal as signal
import _socket as socket
import errno
import os
import select
import struct
import sys
import time


class _JSONContext:
    """What the C scanner of the json package needs: `json`, `socket` and `signal` would each pull in
    `enum` and `re`, about 1.5 MB per supervisor, multiplied by every container."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


_scan = _json.make_scanner(_JSONContext())
_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True)


def json_loads(data) -> object:
    text = data.decode() if isinstance(data, (bytes, bytearray)) else data
    text = text.strip()
    _JSONContext.memo.clear()
    try:
        obj, end = _scan(text, 0)
    except StopIteration as exc:  # the C scanner's way of saying "no JSON value here"
        raise ValueError("invalid JSON at offset %s" % exc.value) from None
    if end != len(text):
        raise ValueError("extra data after JSON value")
    return obj


def json_dumps(obj: object) -> str:
    return "".join(_encode(obj, 0))

HEADER = struct.Struct(">cI")
F_ATTACH, F_EXEC, F_STDIN, F_CLOSE, F_RESIZE = b"A", b"X", b"I", b"C", b"R"
F_OK, F_ERR, F_STDOUT, F_STDERR, F_EXIT = b"K", b"E", b"1", b"2", b"Z"

TASK_FILE = "task.json"
EXIT_FILE = "exit.json"
LOG_FILE = "output.log"
STREAM_LOG = "container.log"  # docker's json-file lines, read by ctrpy.runtime.logs
LOG_MAX_SIZE_ANNOTATION = "ctrpy.io/log.max-size"  # bytes; with LOG_MAX_FILE_ANNOTATION: rotation
LOG_MAX_FILE_ANNOTATION = "ctrpy.io/log.max-file"
PID_FILE = "init.pid"
SUPERVISOR_PID_FILE = "supervisor.pid"
EXECS_DIR = "execs"
UNKNOWN_EXIT = 255
DRAIN_SECONDS = 2.0
CLIENT_SEND_TIMEOUT = 10.0


def socket_address(task_dir: str) -> str:
    """The supervisor's abstract socket name: abstract, so deep state directories never hit the 108-byte
    limit of socket paths, and keyed by the directory's inode so a recreated task gets a new name."""
    st = os.stat(task_dir)
    return "\0ctrpy-sup/%d/%d" % (st.st_dev, st.st_ino)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def jframe(kind: bytes, obj: object) -> bytes:
    return frame(kind, json_dumps(obj).encode())


def now() -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac


def write_durably(path: str, data: dict) -> None:
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


def status_code(status: int) -> int:
    """A wait status as a shell exit code: 128+N for a signal, as docker and ctr report it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return UNKNOWN_EXIT


def recv_fd(sock: "socket.socket") -> int:
    """Receive one fd sent with SCM_RIGHTS (the pty master, from the runtime's console socket)."""
    fds = []
    msg, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds += list(struct.unpack("%di" % (usable // 4), data[:usable]))
    if not fds:
        raise OSError(errno.EPROTO, "no file descriptor received on the console socket")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


class Client:
    def __init__(self, sock: "socket.socket") -> None:
        self.sock = sock
        self.buf = b""
        self.proc = None  # the Proc this client is attached to

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False


class StreamLog:
    """The init's output as docker's json-file driver keeps it: one JSON line per line of output, with its
    stream and time, rotated at `max_size` bytes into STREAM_LOG.1 .. STREAM_LOG.<max_file - 1>."""

    def __init__(self, task_dir: str, max_size: int = 0, max_file: int = 1) -> None:
        self.path = os.path.join(task_dir, STREAM_LOG)
        self.max_size, self.max_file = max_size, max(1, max_file)
        self.fd = -1
        self.size = 0
        self.partial = {F_STDOUT: b"", F_STDERR: b""}
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, kind: bytes, data: bytes) -> None:
        lines = (self.partial.get(kind, b"") + data).split(b"\n")
        self.partial[kind] = lines.pop()
        for line in lines:
            self._emit(kind, line + b"\n")

    def flush(self, kind: bytes) -> None:
        if self.partial.get(kind):
            self._emit(kind, self.partial[kind])
            self.partial[kind] = b""

    def _emit(self, kind: bytes, data: bytes) -> None:
        record = (json_dumps({"log": data.decode("utf-8", "surrogateescape"),
                              "stream": "stderr" if kind == F_STDERR else "stdout", "time": now()}) + "\n").encode()
        if self.max_size and self.size and self.size + len(record) > self.max_size:
            self._rotate()
        try:
            os.write(self.fd, record)
            self.size += len(record)
        except OSError:
            pass

    def _rotate(self) -> None:
        os.close(self.fd)
        for i in range(self.max_file - 1, 0, -1):
            src = self.path if i == 1 else "%s.%d" % (self.path, i - 1)
            try:
                os.rename(src, "%s.%d" % (self.path, i))
            except OSError:
                pass
        if self.max_file == 1:
            os.truncate(self.path, 0)
        self._open()

    def close(self) -> None:
        for kind in list(self.partial):
            self.flush(kind)
        os.close(self.fd)


def _stream_log(task_dir: str):
    """The StreamLog with the spec's rotation annotations (set by `run --log-opt`)."""
    try:
        with open(os.path.join(task_dir, "config.json")) as f:
            annotations = json_loads(f.read()).get("annotations") or {}
        max_size = int(annotations.get(LOG_MAX_SIZE_ANNOTATION) or 0)
        max_file = int(annotations.get(LOG_MAX_FILE_ANNOTATION) or 1)
    except (OSError, ValueError):
        max_size, max_file = 0, 1
    try:
        return StreamLog(task_dir, max_size, max_file)
    except OSError:
        return None


class Proc:
    """The init or one exec process: its fds, its clients, its exit."""

    def __init__(self, exec_id: str, record_dir: str, log_fd: int = -1) -> None:
        self.exec_id = exec_id
        self.record_dir = record_dir
        self.pid = 0
        self.outputs = {}  # fd -> frame type
        self.stdin_fd = -1
        self.stdin_buf = b""
        self.stdin_closing = False
        self.tty = False
        self.master = -1
        self.clients = []
        self.log_fd = log_fd
        self.stream_log = None
        self.status = None
        self.exited_at = ""
        self.drain_until = 0.0
        self.finished = False


class Supervisor:
    def __init__(self, task_dir: str) -> None:
        self.dir = task_dir
        with open(os.path.join(task_dir, TASK_FILE)) as f:
            self.task = json_loads(f.read())
        self.id = self.task["id"]
        self.procs = {}  # exec id ("" = init) -> Proc
        self.by_pid = {}  # pid -> Proc
        self.unclaimed = {}  # pid -> wait status, for processes reaped before their pid was known
        self.clients = []
        self.listener = None
        self.wake_r = -1
        self.oom_killed = False
        self.ready_fd = -1

    # ---- runtime calls, in a forked child ------------------------------------------------------------

    def _runtime_child(self, op: str, args: dict, stdio, console: str, result_w: int) -> None:
        """Child side: import the runtime, run one verb, report {"ok"} or the error on result_w."""
        code = 1
        try:
            if self.ready_fd >= 0:
                os.close(self.ready_fd)
            # The runtime and the container must not inherit the supervisor's own signal handling.
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            sys.path[:] = self.task["sys_path"]
            from ctrpy.runtime.ociruntime import as_runtime_error, open_runtime_entry

            runtime = open_runtime_entry(self.task["runtime"], self.task["runtime_entry"], self.task["state_root"])
            kwargs = {"pid_file": args["pid_file"], "console_socket": console or None,
                      "stdio": None if console else stdio}
            if op == "create":
                runtime.create(self.id, args["bundle"], **kwargs)
            else:
                runtime.exec(self.id, args["process"], **kwargs)
            reply = {"ok": True}
            code = 0
        except BaseException as exc:  # every failure goes back to the supervisor as one line
            try:
                exc = as_runtime_error(self.task["runtime"], exc)
            except NameError:  # the import itself failed
                pass
            reply = {"ok": False, "error": str(exc) or type(exc).__name__, "class": type(exc).__name__,
                     "exit_code": getattr(exc, "exit_code", 1), "run_exit_code": getattr(exc, "run_exit_code", None)}
        try:
            os.write(result_w, (json_dumps(reply) + "\n").encode())
        finally:
            os._exit(code)

    def run_runtime(self, op: str, args: dict, proc: Proc, stdin: bool, size=None) -> dict:
        """Create or exec through the runtime; on success `proc` owns the process's stdio and pid."""
        child_fds = []
        console_dir = ""
        console_listener = None
        stdio = None
        if proc.tty:
            # Console socket paths are limited to 108 bytes: keep it in a short private directory.
            console_dir = "/tmp/ctrpy-console-%d-%d" % (os.getpid(), time.monotonic_ns())
            os.mkdir(console_dir, 0o700)
            console_path = console_dir + "/c.sock"
            console_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console_listener.bind(console_path)
            console_listener.listen(1)
        else:
            console_path = ""
            if stdin:
                in_r, in_w = os.pipe()
                proc.stdin_fd = in_w
                os.set_blocking(in_w, False)
            else:
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            proc.outputs = {out_r: F_STDOUT, err_r: F_STDERR}
            stdio = (in_r, out_w, err_w)
            child_fds = [in_r, out_w, err_w]
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(result_r)
            self._runtime_child(op, args, stdio, console_path, result_w)
        os.close(result_w)
        for fd in child_fds:
            os.close(fd)
        reply = None
        data = b""
        try:
            deadline = time.monotonic() + 120
            while reply is None or (proc.tty and reply.get("ok") and proc.master < 0):
                watch = [result_r] if reply is None else []
                if console_listener is not None and proc.master < 0:
                    watch.append(console_listener)
                ready, _, _ = select.select(watch, [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    reply = {"ok": False, "error": "%s: timed out" % op}
                    break
                if console_listener is not None and console_listener in ready:
                    conn = socket.socket(fileno=console_listener._accept()[0])
                    try:
                        proc.master = recv_fd(conn)
                    finally:
                        conn.close()
                if result_r in ready:
                    chunk = os.read(result_r, 65536)
                    data += chunk
                    if b"\n" in data or not chunk:
                        try:
                            reply = json_loads(data.split(b"\n", 1)[0] or b"{}")
                        except ValueError:
                            reply = {"ok": False, "error": "%s: runtime child died" % op}
                        if "ok" not in reply:
                            reply = {"ok": False, "error": "%s: runtime child died" % op}
        finally:
            os.close(result_r)
            if console_listener is not None:
                console_listener.close()
                try:
                    os.unlink(console_path)
                    os.rmdir(console_dir)
                except OSError:
                    pass
            self._wait_child(pid)
        if reply.get("ok"):
            try:
                with open(args["pid_file"]) as f:
                    proc.pid = int(f.read().strip())
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": "%s: no pid from the runtime: %s" % (op, exc)}
        if not reply.get("ok"):
            self._close_proc_fds(proc)
            return reply
        if proc.tty:
            if size:
                set_winsize(proc.master, size[0], size[1])
            proc.outputs = {proc.master: F_STDOUT}
            proc.stdin_fd = os.dup(proc.master)
            os.set_blocking(proc.stdin_fd, False)
        for fd in proc.outputs:
            os.set_blocking(fd, False)
        self.by_pid[proc.pid] = proc
        if proc.pid in self.unclaimed:
            self._exited(proc, self.unclaimed.pop(proc.pid))
        return {"ok": True, "pid": proc.pid}

    def _wait_child(self, pid: int) -> None:
        while True:
            try:
                os.waitpid(pid, 0)
                return
            except ChildProcessError:
                return
            except InterruptedError:
                continue

    def _close_proc_fds(self, proc: Proc) -> None:
        for fd in list(proc.outputs) + [proc.stdin_fd, proc.master]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        proc.outputs = {}
        proc.stdin_fd = proc.master = -1

    # ---- exits -----------------------------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.get(pid)
            if proc is None:
                self.unclaimed[pid] = status
            else:
                self._exited(proc, status)

    def _exited(self, proc: Proc, status: int) -> None:
        if proc.status is not None:
            return
        proc.status = status_code(status)
        proc.exited_at = now()
        proc.drain_until = time.monotonic() + DRAIN_SECONDS
        if proc.exec_id == "":
            self.oom_killed = self._oom_killed()
            # Every process of a pid namespace dies with its init: their exits are final too.
            for other in self.procs.values():
                if other is not proc and other.status is None and other.pid:
                    other.drain_until = proc.drain_until

    def _oom_killed(self) -> bool:
        path = self.task.get("cgroups_path", "").strip("/")
        if not path:
            return False
        for candidate, key in (("/sys/fs/cgroup/memory/%s/memory.oom_control" % path, "oom_kill"),
                               ("/sys/fs/cgroup/%s/memory.events" % path, "oom_kill")):
            try:
                with open(candidate) as f:
                    for line in f:
                        name, _, value = line.partition(" ")
                        if name == key and int(value) > 0:
                            return True
            except (OSError, ValueError):
                continue
        return False

    def _finish(self, proc: Proc) -> None:
        """Output drained (or the drain timed out): record the exit and tell the clients."""
        proc.finished = True
        self._close_proc_fds(proc)
        record = {"exit_status": proc.status, "exited_at": proc.exited_at, "pid": proc.pid}
        if proc.exec_id == "":
            record["oom_killed"] = self.oom_killed
        try:
            os.makedirs(proc.record_dir, exist_ok=True)
            write_durably(os.path.join(proc.record_dir, EXIT_FILE), record)
        except OSError as exc:
            sys.stderr.write("supervisor: cannot record exit of %s: %s\n" % (proc.exec_id or "init", exc))
        for client in proc.clients:
            client.send(jframe(F_EXIT, record))

    # ---- client protocol ---------------------------------------------------------------------------------

    def handle_frame(self, client: Client, kind: bytes, payload: bytes) -> None:
        if kind == F_ATTACH:
            req = json_loads(payload or b"{}")
            proc = self.procs.get(req.get("exec_id", ""))
            if proc is None:
                client.send(jframe(F_ERR, {"error": "process %r not found" % req.get("exec_id", "")}))
                return
            client.proc = proc
            proc.clients.append(client)
            client.send(jframe(F_OK, {"pid": proc.pid, "tty": proc.tty}))
            if proc.finished:
                record = {"exit_status": proc.status, "exited_at": proc.exited_at, "pid": proc.pid}
                client.send(jframe(F_EXIT, record))
        elif kind == F_EXEC:
            req = json_loads(payload)
            exec_id = req["exec_id"]
            init = self.procs[""]
            if exec_id in self.procs:
                client.send(jframe(F_ERR, {"error": "exec %r already exists" % exec_id, "class": "AlreadyExists",
                                          "exit_code": 5}))
                return
            if init.status is not None:
                client.send(jframe(F_ERR, {"error": "task %s is not running" % self.id,
                                          "class": "FailedPrecondition", "exit_code": 6}))
                return
            record_dir = os.path.join(self.dir, EXECS_DIR, exec_id)
            os.makedirs(record_dir, exist_ok=True)
            proc = Proc(exec_id, record_dir)
            proc.tty = bool(req["process"].get("terminal"))
            reply = self.run_runtime("exec", {"process": req["process"],
                                              "pid_file": os.path.join(record_dir, "pid")}, proc, req.get("stdin", False),
                                     req.get("console_size"))
            if not reply.get("ok"):
                client.send(jframe(F_ERR, reply))
                return
            self.procs[exec_id] = proc
            client.proc = proc
            proc.clients.append(client)
            client.send(jframe(F_OK, {"pid": proc.pid, "tty": proc.tty}))
        elif kind == F_STDIN:
            proc = client.proc
            if proc is not None and proc.stdin_fd >= 0:
                proc.stdin_buf += payload
        elif kind == F_CLOSE:
            proc = client.proc
            if proc is not None:
                if proc.tty:
                    proc.stdin_buf += b"\x04"  # end of input on a terminal is ^D
                else:
                    proc.stdin_closing = True
        elif kind == F_RESIZE:
            proc = client.proc
            req = json_loads(payload)
            if proc is not None and proc.master >= 0:
                set_winsize(proc.master, int(req["rows"]), int(req["cols"]))

    def _client_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.buf += data
        while len(client.buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(client.buf)
            if len(client.buf) < HEADER.size + length:
                break
            payload = client.buf[HEADER.size:HEADER.size + length]
            client.buf = client.buf[HEADER.size + length:]
            try:
                self.handle_frame(client, kind, payload)
            except (ValueError, KeyError, TypeError) as exc:
                client.send(jframe(F_ERR, {"error": "bad request: %s" % exc}))

    def _drop(self, client: Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        if client.proc is not None and client in client.proc.clients:
            client.proc.clients.remove(client)
        client.sock.close()

    def _output(self, proc: Proc, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        if not data:
            if proc.stream_log is not None:
                proc.stream_log.flush(proc.outputs[fd])
            del proc.outputs[fd]
            os.close(fd)
            if fd == proc.master:
                proc.master = -1
            return
        if proc.log_fd >= 0:
            try:
                os.write(proc.log_fd, data)
            except OSError:
                pass
        kind = proc.outputs[fd]
        if proc.stream_log is not None:
            proc.stream_log.write(kind, data)
        for client in list(proc.clients):
            if not client.send(frame(kind, data)):
                self._drop(client)

    def _flush_stdin(self, proc: Proc) -> None:
        if proc.stdin_buf:
            try:
                n = os.write(proc.stdin_fd, proc.stdin_buf)
                proc.stdin_buf = proc.stdin_buf[n:]
            except BlockingIOError:
                return
            except OSError:  # the reader is gone: drop the input
                proc.stdin_buf = b""
        if not proc.stdin_buf and proc.stdin_closing and not proc.tty:
            os.close(proc.stdin_fd)
            proc.stdin_fd = -1
            proc.stdin_closing = False

    # ---- main loop ---------------------------------------------------------------------------------------

    def serve(self) -> int:
        init = self.procs[""]
        while True:
            now_m = time.monotonic()
            for proc in list(self.procs.values()):
                if proc.status is not None and not proc.finished and (not proc.outputs or now_m > proc.drain_until):
                    self._finish(proc)
            if init.finished and all(p.finished for p in self.procs.values()):
                return init.status
            rlist = [self.wake_r, self.listener] + [c.sock for c in self.clients]
            wlist = []
            fd_proc = {}
            for proc in self.procs.values():
                for fd in proc.outputs:
                    rlist.append(fd)
                    fd_proc[fd] = proc
                if proc.stdin_fd >= 0 and (proc.stdin_buf or proc.stdin_closing):
                    wlist.append(proc.stdin_fd)
                    fd_proc[-proc.stdin_fd - 1] = proc
            timeout = None
            pending = [p.drain_until for p in self.procs.values() if p.status is not None and not p.finished]
            if pending:
                timeout = max(0.0, min(pending) - now_m) + 0.01
            try:
                readable, writable, _ = select.select(rlist, wlist, [], timeout)
            except InterruptedError:
                continue
            for item in readable:
                if item == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                elif item is self.listener:
                    try:
                        sock = socket.socket(fileno=self.listener._accept()[0])
                    except OSError:
                        continue
                    # A client that stops reading (a suspended `tasks attach`) is dropped after a while
                    # instead of blocking the container's output for everyone.
                    sock.settimeout(CLIENT_SEND_TIMEOUT)
                    self.clients.append(Client(sock))
                elif isinstance(item, socket.socket):
                    client = next((c for c in self.clients if c.sock is item), None)
                    if client is not None:
                        self._client_readable(client)
                elif item in fd_proc and item in fd_proc[item].outputs:
                    self._output(fd_proc[item], item)
            for fd in writable:
                proc = fd_proc.get(-fd - 1)
                if proc is not None and proc.stdin_fd == fd:
                    self._flush_stdin(proc)
            self.reap()

    def publish_events(self, status: int) -> None:
        """Record /tasks/exit (and /tasks/oom) in the metadata store; best effort, the exit file is the truth."""
        try:
            sys.path[:] = self.task["sys_path"]
            from ctrpy.runtime.metadata import DB, append_event

            db = DB(self.task["root"])
            init = self.procs[""]
            with db.update() as tx:
                if self.oom_killed:
                    append_event(tx, self.task["namespace"], "/tasks/oom", {"container_id": self.id})
                append_event(tx, self.task["namespace"], "/tasks/exit",
                             {"container_id": self.id, "id": self.id, "pid": init.pid, "exit_status": status,
                              "exited_at": init.exited_at})
        except Exception as exc:  # noqa: BLE001 - never let event recording lose the exit
            sys.stderr.write("supervisor: cannot record events: %s\n" % exc)

    def main(self, ready_fd: int) -> int:
        self.ready_fd = ready_fd
        os.set_inheritable(ready_fd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        with open(os.path.join(self.dir, SUPERVISOR_PID_FILE), "w") as f:
            f.write(str(os.getpid()))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_address(self.dir))
        self.listener.listen(64)
        log_fd = os.open(os.path.join(self.dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o640)
        init = Proc("", self.dir, log_fd)
        init.stream_log = _stream_log(self.dir)
        init.tty = bool(self.task.get("terminal"))
        self.procs[""] = init
        reply = self.run_runtime("create", {"bundle": self.dir, "pid_file": os.path.join(self.dir, PID_FILE)},
                                 init, bool(self.task.get("stdin")), self.task.get("console_size"))
        try:
            os.write(ready_fd, (json_dumps(reply) + "\n").encode())
        except OSError:
            pass
        os.close(ready_fd)
        self.ready_fd = -1
        if not reply.get("ok"):
            return 1
        # Nothing of ours may stay on the CLI's terminal: the launcher's stdio was /dev/null or a file.
        status = self.serve()
        os.close(log_fd)
        if init.stream_log is not None:
            init.stream_log.close()
        self.publish_events(status)
        for client in self.clients:
            client.sock.close()
        self.listener.close()
        return 0


def main(argv: list) -> int:
    return Supervisor(argv[0]).main(int(argv[1]))


# How the launcher starts it: `python -I -S -c LAUNCH PACKAGE_ROOT TASK_DIR READY_FD`. Imported as a module
# (not run as a script) so its compiled bytecode is cached instead of compiled in every supervisor.
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from ctrpy.runtime import supervisor; " \
         "sys.exit(supervisor.main(sys.argv[2:]))"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
