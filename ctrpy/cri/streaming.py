"""The streaming server behind Exec, Attach and PortForward: the URLs those RPCs return point here, and
kubelet's client (client-go's SPDY executor and port forwarder, as crictl and critest use it) connects to them.

    GET/POST /exec/<token>          remotecommand v4.channel.k8s.io (v3, v2 and channel.k8s.io accepted)
    GET/POST /attach/<token>        the same protocol, attached to the container's own process
    GET/POST /portforward/<token>   portforward.k8s.io

Each token is single-use and expires after a minute (kubelet's streaming server does the same). The
connection is upgraded to SPDY/3.1: the client opens one stream per channel (header `streamtype`: error,
stdin, stdout, stderr, resize; for port forwarding error and data with `port` and `requestid`), the server
replies to each, copies bytes between the streams and the task's supervisor (attach.Attachment) or a socket
inside the pod's network namespace, and ends with a metav1.Status on the error stream (v4: exit code as a
NonZeroExitCode cause).

SPDY/3 framing in brief (draft-mbelshe-httpbis-spdy-00): an 8-byte header, control frames (bit 0x80 set:
version 3, type, flags, 24-bit length) and data frames (31-bit stream id, flags, length); header blocks are
zlib-compressed with one stream per direction and the dictionary below. Flow control is not enforced by
client-go's spdystream, so WINDOW_UPDATE frames are read and ignored.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors

TOKEN_TTL = 60.0
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
MAX_DATA = 32 * 1024
REMOTECOMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
PORTFORWARD_PROTOCOL = "portforward.k8s.io"


def _spdy3_dictionary() -> bytes:
    """The SPDY/3 header compression dictionary: length-prefixed header names and values, then a run of
    common text (status codes and reasons, dates, content types), 1423 bytes in all."""
    words = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
             "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
             "content-base", "content-encoding", "content-language", "content-length", "content-location",
             "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
             "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
             "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate",
             "proxy-authorization", "range", "referer", "retry-after", "server", "te", "trailer",
             "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning", "www-authenticate",
             "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
             "keep-alive", "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _spdy3_dictionary()
assert len(DICTIONARY) == 1423


@dataclass
class Stream:
    id: int
    headers: dict[str, str]
    closed_remote: bool = False  # the client sent FIN
    data: list[bytes] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.headers.get("streamtype", "")


class SpdyConnection:
    """A server-side SPDY/3.1 session on an upgraded socket: read frames in the handler's thread, write from
    any thread (one lock)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wlock = threading.Lock()
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self._buf = b""

    # ---- reading

    def _fill(self, n: int) -> bool:
        """Buffer at least n bytes; False at end of stream. A socket timeout propagates with nothing lost."""
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                chunk = b""
            if not chunk:
                return False
            self._buf += chunk
        return True

    def _headers(self, block: bytes) -> dict[str, str]:
        raw = self.inflate.decompress(block)
        count = struct.unpack_from(">I", raw)[0]
        pos, out = 4, {}
        for _ in range(count):
            (klen,) = struct.unpack_from(">I", raw, pos)
            key = raw[pos + 4:pos + 4 + klen].decode(errors="replace").lower()
            pos += 4 + klen
            (vlen,) = struct.unpack_from(">I", raw, pos)
            out[key] = raw[pos + 4:pos + 4 + vlen].decode(errors="replace").split("\0")[0]
            pos += 4 + vlen
        return out

    def next_event(self) -> tuple[str, Stream | None, bytes]:
        """("open", stream, b"") | ("data", stream, bytes) | ("fin", stream, b"") | ("reset", stream, b"") |
        ("eof", None, b""); control frames that need nothing from the caller are handled here."""
        while True:
            if not self._fill(8):
                return "eof", None, b""
            length = int.from_bytes(self._buf[5:8], "big")
            if not self._fill(8 + length):
                return "eof", None, b""
            head, payload = self._buf[:8], self._buf[8:8 + length]
            self._buf = self._buf[8 + length:]
            flags = head[4]
            if head[0] & 0x80:
                kind = int.from_bytes(head[2:4], "big")
                if kind == SYN_STREAM:
                    sid = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                    opened = Stream(sid, self._headers(payload[10:]))
                    self.streams[sid] = opened
                    self.reply(sid)
                    if flags & FLAG_FIN:
                        opened.closed_remote = True
                    return "open", opened, b""
                if kind == RST_STREAM:
                    sid = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                    reset = self.streams.get(sid)
                    if reset is not None:
                        reset.closed_remote = True
                        return "reset", reset, b""
                elif kind == PING:
                    self._write(head[:5] + (4).to_bytes(3, "big") + payload[:4])
                elif kind == GOAWAY:
                    return "eof", None, b""
                elif kind == HEADERS:
                    self._headers(payload[4:])
                continue  # SETTINGS, WINDOW_UPDATE and others: nothing to do
            sid = int.from_bytes(head[0:4], "big") & 0x7FFFFFFF
            stream = self.streams.get(sid)
            if stream is None:
                continue
            if payload:
                if flags & FLAG_FIN:
                    stream.closed_remote = True
                return "data", stream, payload
            if flags & FLAG_FIN:
                stream.closed_remote = True
                return "fin", stream, b""

    # ---- writing

    def _write(self, data: bytes) -> bool:
        with self.wlock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def _control(self, kind: int, flags: int, payload: bytes) -> bool:
        return self._write(struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload)

    def reply(self, sid: int) -> None:
        with self.wlock:
            block = self.deflate.compress(struct.pack(">I", 0)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self._control(SYN_REPLY, 0, struct.pack(">I", sid) + block)

    def send(self, sid: int, data: bytes, fin: bool = False) -> bool:
        view = memoryview(data)
        while True:
            chunk, view = bytes(view[:MAX_DATA]), view[MAX_DATA:]
            last = not len(view)
            flags = FLAG_FIN if (fin and last) else 0
            if not self._write(struct.pack(">II", sid, (flags << 24) | len(chunk)) + chunk):
                return False
            if last:
                return True

    def close_stream(self, sid: int) -> None:
        self.send(sid, b"", fin=True)

    def close(self) -> None:
        with self.wlock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@dataclass
class Pending:
    kind: str  # exec | attach | portforward
    request: Any
    expires: float


class StreamingServer:
    """HTTP on [cri] stream_address:stream_port, one thread per connection."""

    def __init__(self, service: Any, address: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.listener = socket.create_server((address, port), reuse_port=False)
        self.host, self.port = self.listener.getsockname()[:2]
        self.pending: dict[str, Pending] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="cri-streaming", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        try:
            self.listener.close()
        except OSError:
            pass

    def url(self, kind: str, request: Any) -> str:
        token = secrets.token_urlsafe(12)
        now = time.monotonic()
        with self.lock:
            for key in [k for k, p in self.pending.items() if p.expires < now]:
                del self.pending[key]
            self.pending[token] = Pending(kind, request, now + TOKEN_TTL)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{kind}/{token}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="cri-stream", daemon=True).start()

    # ---- HTTP upgrade

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk or len(data) > 65536:
                    conn.close()
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            headers: dict[str, list[str]] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).extend(v.strip() for v in value.split(","))
            segments = path.strip("/").split("/")
            with self.lock:
                pending = self.pending.pop(segments[-1], None) if len(segments) == 2 else None
            if pending is None or pending.kind != segments[0] or pending.expires < time.monotonic():
                self._http_error(conn, 404, "unknown or expired streaming token")
                return
            if "spdy/3.1" not in [u.lower() for u in headers.get("upgrade", [])]:
                self._http_error(conn, 400, "this endpoint speaks SPDY/3.1 (Upgrade: SPDY/3.1)")
                return
            offered = headers.get("x-stream-protocol-version", [])
            if pending.kind == "portforward":
                protocol = PORTFORWARD_PROTOCOL if not offered or PORTFORWARD_PROTOCOL in offered else ""
            else:
                protocol = next((p for p in REMOTECOMMAND_PROTOCOLS if p in offered), "" if offered else "v1")
            if not protocol:
                self._http_error(conn, 403, f"no supported stream protocol in {offered}")
                return
            reply = ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     + (f"X-Stream-Protocol-Version: {protocol}\r\n" if protocol != "v1" else "") + "\r\n")
            conn.sendall(reply.encode())
            conn.settimeout(None)
            spdy = SpdyConnection(conn)
            spdy._buf = rest
            try:
                if pending.kind == "portforward":
                    PortForwardSession(self.service, spdy, pending.request).run()
                else:
                    RemoteCommandSession(self.service, spdy, pending.kind, pending.request, protocol).run()
            finally:
                spdy.close()
        except Exception:  # noqa: BLE001 - one broken connection must not take the server down
            import traceback

            traceback.print_exc()
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _http_error(conn: socket.socket, code: int, message: str) -> None:
        body = message.encode() + b"\n"
        reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[code]
        conn.sendall(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        conn.close()


def _status(exit_code: int | None, error: str = "") -> bytes:
    """The metav1.Status that ends a v4 session."""
    if error:
        return json.dumps({"metadata": {}, "status": "Failure", "message": error, "reason": "InternalError",
                           "code": 500}).encode()
    if not exit_code:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({"metadata": {}, "status": "Failure",
                       "message": f"command terminated with non-zero exit code: exit status {exit_code}",
                       "reason": "NonZeroExitCode",
                       "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}).encode()


class RemoteCommandSession:
    """One exec or attach: the client's channels <-> the supervisor's frames."""

    def __init__(self, service: Any, spdy: SpdyConnection, kind: str, request: Any, protocol: str) -> None:
        self.service, self.spdy, self.kind, self.req, self.protocol = service, spdy, kind, request, protocol
        self.channels: dict[str, Stream] = {}

    def _expected(self) -> set[str]:
        want = {"error"}
        for name in ("stdin", "stdout", "stderr"):
            if getattr(self.req, name):
                want.add(name)
        if self.req.tty:
            want.discard("stderr")
            if self.protocol in ("v4.channel.k8s.io", "v3.channel.k8s.io"):
                want.add("resize")
        return want

    def run(self) -> None:
        from ctrpy.runtime import supervisor as sup

        want = self._expected()
        deadline = time.monotonic() + 30
        early: list[tuple[str, Stream, bytes]] = []
        self.spdy.sock.settimeout(1.0)
        while not want <= set(self.channels):
            if time.monotonic() > deadline:
                return
            try:
                event, stream, data = self.spdy.next_event()
            except TimeoutError:
                continue
            if event == "eof":
                return
            if event == "open" and stream is not None:
                self.channels[stream.kind] = stream
            elif stream is not None:
                early.append((event, stream, data))
        self.spdy.sock.settimeout(None)
        tasks = self.service.client.tasks
        cid = self.service.resolve_container(self.req.container_id)
        try:
            if self.kind == "exec":
                att = tasks.exec(cid, "", list(self.req.cmd), tty=bool(self.req.tty), stdin=bool(self.req.stdin))
            else:
                att = tasks.attach(cid, stdin=bool(self.req.stdin))
        except errors.CtrpyError as exc:
            self._finish(None, str(exc))
            return
        done = threading.Event()
        result: dict[str, Any] = {}

        def pump_output() -> None:
            try:
                while True:
                    kind, payload = att.read_frame()
                    if not kind:
                        result["error"] = "" if self.kind == "attach" else "the task's supervisor went away"
                        break
                    if kind == sup.F_STDOUT and "stdout" in self.channels:
                        self.spdy.send(self.channels["stdout"].id, payload)
                    elif kind == sup.F_STDERR:
                        target = self.channels.get("stderr") or self.channels.get("stdout")
                        if target is not None:
                            self.spdy.send(target.id, payload)
                    elif kind == sup.F_EXIT:
                        result["exit"] = int(json.loads(payload).get("exit_status") or 0)
                        break
            except OSError:
                pass
            finally:
                done.set()

        reader = threading.Thread(target=pump_output, name="cri-stream-out", daemon=True)
        reader.start()
        for event, stream, data in early:
            self._client_event(att, event, stream, data)
        detached = False
        self.spdy.sock.settimeout(0.2)  # so the loop sees the process's exit without client traffic
        while not done.is_set():
            try:
                event, stream, data = self.spdy.next_event()
            except TimeoutError:
                continue
            if event == "eof":
                break
            if self._client_event(att, event, stream, data):
                detached = True  # attach: the client closed its stdin, so it leaves
                break
        self.spdy.sock.settimeout(None)
        if detached or not done.is_set():
            try:
                att.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            reader.join(5)
            att.close()
            if not done.is_set():
                return
        else:
            reader.join(5)
            att.close()
        self._finish(result.get("exit"), result.get("error", ""))

    def _client_event(self, att: Any, event: str, stream: Stream | None, data: bytes) -> bool:
        if stream is None:
            return False
        if stream.kind == "stdin":
            if data:
                att.send_stdin(data)
            if stream.closed_remote and event in ("fin", "reset", "data"):
                # exec, and attach to a stdin_once container: the process sees end of input and its output
                # keeps flowing until it exits. Attach otherwise: the client leaves, the container goes on.
                if self.kind == "exec" or getattr(self.req, "stdin_once", False):
                    att.close_stdin()
                    return False
                return True
        elif stream.kind == "resize" and data:
            for line in data.decode(errors="replace").splitlines() or [data.decode(errors="replace")]:
                try:
                    size = json.loads(line)
                    att.resize(int(size.get("Height", 0)), int(size.get("Width", 0)))
                except (ValueError, AttributeError):
                    continue
        return False

    def _finish(self, exit_code: int | None, error: str) -> None:
        for name in ("stdout", "stderr"):
            if name in self.channels:
                self.spdy.close_stream(self.channels[name].id)
        err_stream = self.channels.get("error")
        if err_stream is not None:
            if self.protocol in ("v4.channel.k8s.io",):
                self.spdy.send(err_stream.id, _status(exit_code, error), fin=True)
            else:
                message = error or (f"command terminated with non-zero exit code: {exit_code}" if exit_code else "")
                self.spdy.send(err_stream.id, message.encode(), fin=True)
        # Let the client read everything and hang up first (closing with its data unread would reset).
        self.spdy.sock.settimeout(5)
        try:
            while self.spdy.next_event()[0] != "eof":
                pass
        except OSError:  # TimeoutError included
            pass


class PortForwardSession:
    """portforward.k8s.io: per request id an error stream and a data stream, the data stream copied to a TCP
    connection made inside the pod's network namespace."""

    def __init__(self, service: Any, spdy: SpdyConnection, request: Any) -> None:
        self.service, self.spdy, self.req = service, spdy, request
        self.pairs: dict[str, dict[str, Stream]] = {}
        self.sockets: dict[int, socket.socket] = {}

    def run(self) -> None:
        while True:
            event, stream, data = self.spdy.next_event()
            if event == "eof":
                break
            if stream is None:
                continue
            if event == "open":
                pair = self.pairs.setdefault(stream.headers.get("requestid", str(stream.id)), {})
                pair[stream.kind] = stream
                if "data" in pair and "error" in pair and pair["data"].id not in self.sockets:
                    self._connect(pair)
            elif stream.kind == "data":
                sock = self.sockets.get(stream.id)
                if sock is not None:
                    try:
                        if data:
                            sock.sendall(data)
                        if stream.closed_remote:
                            sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        for sock in self.sockets.values():
            try:
                sock.close()
            except OSError:
                pass

    def _connect(self, pair: dict[str, Stream]) -> None:
        data, err = pair["data"], pair["error"]
        try:
            port = int(data.headers.get("port", "0"))
            if not 0 < port < 65536:
                raise errors.InvalidArgument(f"invalid port {data.headers.get('port')!r}")
            sock = self.service.pod_connect(self.req.pod_sandbox_id, port)
        except (errors.CtrpyError, OSError) as exc:
            self.spdy.send(err.id, f"error forwarding port {data.headers.get('port')}: {exc}".encode(), fin=True)
            self.spdy.close_stream(data.id)
            return
        self.sockets[data.id] = sock

        def pump() -> None:
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    if not self.spdy.send(data.id, chunk):
                        break
            except OSError:
                pass
            self.spdy.close_stream(data.id)
            self.spdy.close_stream(err.id)

        threading.Thread(target=pump, name="cri-portforward", daemon=True).start()


CLONE_NEWNET = 0x40000000


def _setns(fd: int, nstype: int) -> None:
    """setns(2) for this thread (os.setns exists only from Python 3.12)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, nstype)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def connect_in_netns(netns_path: str | None, port: int, timeout: float = 10) -> socket.socket:
    """A TCP connection to localhost:port inside the network namespace at `netns_path` (None: the host's).
    setns affects only the calling thread, so the socket is made in a short-lived thread of its own."""
    if netns_path is None:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.settimeout(None)
            out["sock"] = sock
        except OSError as exc:
            out["error"] = exc

    t = threading.Thread(target=work, name="cri-netns-connect")
    t.start()
    t.join()
    if "error" in out:
        raise errors.from_oserror(out["error"], f"cannot connect to port {port} in the pod")
    return out["sock"]
