"""`serve()`: the CRI gRPC server on a unix socket (containerd's CRI plugin, served by grpcio).

grpc is imported here and only here (and in the generated stubs): the CLI never pays for it. Each RPC runs in
a worker thread; errors raised as ctrpy's error classes reach the client with the class's gRPC status code
(`errors.CtrpyError.grpc_code`), anything else as INTERNAL with the traceback on the server's stderr.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

UNIX_PREFIX = "unix://"


def socket_path(address: str) -> str:
    """`unix:///run/x.sock` or `/run/x.sock` -> `/run/x.sock`; anything else is refused."""
    path = address[len(UNIX_PREFIX):] if address.startswith(UNIX_PREFIX) else address
    if not path.startswith("/"):
        raise errors.InvalidArgument(f"invalid address {address!r}: give unix:///absolute/path.sock")
    return path


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap one RPC: a CtrpyError becomes its gRPC status, anything else INTERNAL (and a traceback)."""
    @functools.wraps(method)
    def call(self: Any, request: Any, context: Any) -> Any:
        import grpc

        try:
            return method(self, request, context)
        except errors.CtrpyError as exc:
            context.abort(getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.UNKNOWN), str(exc))
        except Exception as exc:  # noqa: BLE001 - the one place where unexpected errors are turned into statuses
            if type(exc).__name__ == "_AbortedRpc" or isinstance(exc, grpc.RpcError):  # context.abort's own
                raise
            traceback.print_exc()
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    return call


def guard_all(cls: type) -> type:
    """Apply `guarded` to every RPC (CamelCase method) the class defines."""
    for name, value in list(vars(cls).items()):
        if callable(value) and name[:1].isupper():
            setattr(cls, name, guarded(value))
    return cls


class Server:
    """The running server: gRPC plus the services' shared state; `stop()` ends it."""

    def __init__(self, client: Client, address: str, *, workers: int = 16) -> None:
        # The server forks (pause processes, task supervisors, runtimes) from worker threads: grpc's fork
        # handlers would run in those children and may hang or kill them. Must be set before grpc loads.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        import grpc
        from concurrent import futures

        from ctrpy.cri.image_service import ImageService
        from ctrpy.cri.proto import api_pb2_grpc
        from ctrpy.cri.runtime_service import RuntimeService

        self.path = socket_path(address)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path):
            if not _stale_socket(self.path):
                raise errors.AlreadyExists(f"another server is listening on {self.path}")
            os.unlink(self.path)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cri"),
                                options=[("grpc.max_receive_message_length", 16 << 20),
                                         ("grpc.max_send_message_length", 16 << 20)])
        self.images = ImageService(client)
        self.runtime = RuntimeService(client, self.images)
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(self.runtime, self.grpc)
        api_pb2_grpc.add_ImageServiceServicer_to_server(self.images, self.grpc)
        if self.grpc.add_insecure_port("unix:" + self.path) == 0:
            raise errors.Unavailable(f"cannot listen on {self.path}")
        self.stopped = threading.Event()

    def start(self) -> None:
        self.runtime.streaming.start()
        self.grpc.start()
        os.chmod(self.path, 0o660)

    def stop(self, grace: float = 2.0) -> None:
        self.grpc.stop(grace).wait()
        self.runtime.streaming.stop()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.stopped.set()


def _stale_socket(path: str) -> bool:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        return True
    finally:
        sock.close()
    return False


def serve(client: Client, address: str, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT. `client` is a runtime Client (its namespace is replaced by k8s.io)."""
    from ctrpy.cri import NAMESPACE

    server = Server(client.with_namespace(NAMESPACE), address)
    server.start()
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if on_ready is not None:
        on_ready(server.path)
    try:
        while not done.wait(1.0):
            server.runtime.reap()
    finally:
        server.stop()
        sys.stderr.flush()
