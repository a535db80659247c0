"""A small registry of the tests' own on 127.0.0.1 that can lie: distribution API v2 from memory.

    reg = HostileRegistry()                     # started; reg.host is "127.0.0.1:<port>"
    ref = reg.add_image("app", [layer_tar, ...])   # gzip layers, OCI config + manifest, tagged latest
    reg.behave["/v2/app/manifests/latest"] = endless_body(b"{")   # replace the answer for one path
    reg.stop()

A behaviour is a function taking the request handler; helpers below build the classic lies (a huge
declared length, an endless chunked body, a slow drip, a wrong content type, redirects). `log` records
(method, path, headers) of every request. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class HostileRegistry:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}   # "repo:tag" and "repo@digest" -> (type, body)
        self.behave: dict[str, Behaviour] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.stopping = threading.Event()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                registry.handle(self)

            do_HEAD = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- content -------------------------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, repo: str, body: bytes, *, tag: str = "latest", media_type: str = OCI_MANIFEST) -> str:
        """Serve `body` as repo:tag and repo@digest; returns the reference repo:tag."""
        self.manifests[f"{repo}:{tag}"] = (media_type, body)
        self.manifests[f"{repo}@{sha256(body)}"] = (media_type, body)
        return f"{self.host}/{repo}:{tag}"

    def add_image(self, repo: str, layers: list[bytes], *, tag: str = "latest", compressed: bool = False,
                  diff_ids: list[str] | None = None) -> str:
        """Store an image (layers gzipped unless `compressed`); returns the reference repo:tag."""
        descs, ids = [], []
        for raw in layers:
            blob = raw if compressed else gzip.compress(raw, mtime=0)
            descs.append({"mediaType": OCI_LAYER_GZIP, "digest": self.add_blob(blob), "size": len(blob)})
            ids.append(sha256(gzip.decompress(blob) if compressed else raw))
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": ids if diff_ids is None else diff_ids}},
                            sort_keys=True).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": self.add_blob(config),
                                          "size": len(config)},
                               "layers": descs}, sort_keys=True).encode()
        return self.add_manifest(repo, manifest, tag=tag)

    # -- serving -------------------------------------------------------------------------------------------

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?")[0]
        self.log.append((req.command, req.path, dict(req.headers.items())))
        behaviour = self.behave.get(path)
        if behaviour is not None:
            try:
                behaviour(req)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                req.close_connection = True
            return
        if path in ("/v2", "/v2/"):
            return send(req, 200, b"{}", "application/json")
        if "/manifests/" in path:
            repo, _, ref = path[len("/v2/"):].partition("/manifests/")
            key = f"{repo}@{ref}" if ref.startswith("sha256:") else f"{repo}:{ref}"
            if key in self.manifests:
                media_type, body = self.manifests[key]
                return send(req, 200, body, media_type, {"Docker-Content-Digest": sha256(body)})
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[-1]
            if digest in self.blobs:
                return send(req, 200, self.blobs[digest], "application/octet-stream",
                            {"Docker-Content-Digest": digest})
        send(req, 404, b'{"errors":[{"code":"NOT_FOUND","message":"no such thing"}]}', "application/json")

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def send(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
         headers: dict[str, str] | None = None) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        req.send_header(key, value)
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(body)


# ---------------------------------------------------------------------------------------------- the lies

def huge_declared_length(length: int = 10 << 30, content_type: str = OCI_MANIFEST, status: int = 200) -> Behaviour:
    """Declare `length` bytes, send 64 KiB of JSON-looking bytes, then wait for the client to give up."""
    def behave(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(length))
        req.end_headers()
        if req.command == "HEAD":
            return
        req.wfile.write(b"{" + b" " * 65535)
        req.wfile.flush()
        time.sleep(5)
        req.close_connection = True
    return behave


def endless_body(content_type: str = OCI_MANIFEST, status: int = 200, seconds: float = 20.0,
                 headers: dict[str, str] | None = None) -> Behaviour:
    """A chunked body that never ends (until the client closes or `seconds` pass)."""
    def behave(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Transfer-Encoding", "chunked")
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if req.command == "HEAD":
            return
        chunk = b" " * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        req.wfile.write(b"1\r\n{\r\n")
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            req.wfile.write(frame)
        req.close_connection = True
    return behave


def slow_drip(body: bytes, content_type: str = OCI_MANIFEST, interval: float = 0.2) -> Behaviour:
    """Declare the whole body, then send one byte every `interval` seconds (below any read timeout)."""
    def behave(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Docker-Content-Digest", sha256(body))
        req.end_headers()
        if req.command == "HEAD":
            return
        for i in range(len(body)):
            req.wfile.write(body[i:i + 1])
            req.wfile.flush()
            time.sleep(interval)
    return behave


def wrong_type(body: bytes, content_type: str = "text/html") -> Behaviour:
    def behave(req: BaseHTTPRequestHandler) -> None:
        send(req, 200, body, content_type)
    return behave


def redirect(location: str, status: int = 307) -> Behaviour:
    def behave(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        req.send_header("Location", location)
        req.send_header("Content-Length", "0")
        req.end_headers()
    return behave
