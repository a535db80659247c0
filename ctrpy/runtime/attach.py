"""The client half of the supervisor protocol (csrc/supervisor.c, ctrpy.runtime.supervisor): an
`Attachment` is one connection to a task's supervisor, attached to the init or an exec; `pump` copies stdio
until the process exits.

Attaching with docker's detach keys (default ctrl-p ctrl-q): the keys are looked for in what the user types;
once the whole sequence is seen, the client leaves and the container keeps running. A partial sequence
followed by other input is sent on, as docker does.
"""

from __future__ import annotations

import json
import os
import select
import signal as _signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime import supervisor as sup


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
            raise error_from_reply(json.loads(payload))
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
        length: int = sup.HEADER.unpack_from(self._buf)[1]
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
                watch: list[socket.socket | int] = [self.sock, wake_r]
                if reading_stdin and stdin_fd is not None:
                    watch.append(stdin_fd)
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
                    signum = pending.pop(0)
                    if signum == _signal.SIGWINCH and stdin_fd is not None:
                        self._send_size(stdin_fd)
                    elif on_signal is not None:
                        on_signal(signum)
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
            for signum, handler in old_handlers.items():
                _signal.signal(signum, handler)
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


def error_from_reply(reply: dict[str, Any]) -> errors.CtrpyError:
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


# ------------------------------------------------------------------------------------------- detach keys

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(text: str) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11" (docker's syntax: ctrl-<a-z@[\\]^_> or single characters)."""
    out = bytearray()
    for key in [k.strip() for k in (text or DEFAULT_DETACH_KEYS).split(",")]:
        if key.lower().startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise errors.InvalidArgument(f"invalid detach key {key!r}")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise errors.InvalidArgument(f"invalid detach keys {text!r}: use e.g. ctrl-p,ctrl-q or ctrl-x")
    return bytes(out)


def pump_with_detach(attachment: Any, stdin_fd: int | None, keys: bytes,
                     on_signal: Callable[[int], None] | None = None) -> tuple[dict[str, Any] | None, bool]:
    """Copy stdio until the process exits (its exit record, False) or the detach keys are typed (None, True)."""
    restore = None
    if attachment.tty and stdin_fd is not None and os.isatty(stdin_fd):
        restore = _raw_mode(stdin_fd)
        attachment._send_size(stdin_fd)
    matched = b""
    reading = stdin_fd is not None
    try:
        while True:
            while attachment.has_buffered_frame():
                kind, payload = attachment.read_frame()
                if kind == sup.F_STDOUT:
                    os.write(1, payload)
                elif kind == sup.F_STDERR:
                    os.write(2, payload)
                elif kind == sup.F_EXIT:
                    import json

                    return json.loads(payload), False
            watch = [attachment.sock] + ([stdin_fd] if reading and stdin_fd is not None else [])
            ready, _, _ = select.select(watch, [], [])
            if stdin_fd is not None and stdin_fd in ready:
                data = os.read(stdin_fd, 4096)
                if not data:
                    reading = False
                    continue
                send = b""
                for byte in data:
                    b = bytes([byte])
                    if keys and b == keys[len(matched):len(matched) + 1]:
                        matched += b
                        if matched == keys:
                            if matched:
                                return None, True
                        continue
                    send += matched + b
                    matched = b""
                if send:
                    attachment.send_stdin(send)
            if attachment.sock in ready:
                data = attachment.sock.recv(65536)
                if not data:
                    return None, False
                attachment._buf += data
    finally:
        if restore is not None:
            restore()
