"""Real registries for the suite: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1.

Three variants, each a session fixture (the registry keeps running; tests use their own repository names):

    registry        plain HTTP, no auth
    registry_tls    HTTPS with a CA generated here, htpasswd basic auth (user "alice", password "s3cret")
    registry_token  plain HTTP, `auth: token`: a token issuer in this file speaks Docker Hub's realm/service/scope
                    flow; anonymous clients may pull any repository not under "private/", "alice" may push

and `test_images` (the standard images of support.testimages, built once), `seeded_registry` (the plain
registry holding them as busybox, layered, docker, multi, docker-multi, all tagged latest), `fault_proxy`
(a FaultProxy in front of the seeded registry, per test: tampered, truncated, stalled or throttled blobs,
request log; also an HTTP/HTTPS forward proxy).

Every process started here is stopped by PID when the session ends; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from support import testimages

USER, PASSWORD = "alice", "s3cret"
SERVICE = "ctrpy-test-registry"
ISSUER = "ctrpy-test-issuer"
NO_PROXY_ENV = {"NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
    kw.setdefault("text", True)
    return subprocess.run(argv, check=True, capture_output=True, **kw)


# ---------------------------------------------------------------------------------------------- certificates

class CA:
    """A throwaway certificate authority and a server certificate for 127.0.0.1/localhost."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.dir = base
        self.cert = base / "ca.crt"
        self.key = base / "ca.key"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ctrpy test CA",
              "-keyout", str(self.key), "-out", str(self.cert),
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.server_cert, self.server_key = self.issue("127.0.0.1", ["IP:127.0.0.1", "DNS:localhost"])

    def issue(self, cn: str, sans: list[str]) -> tuple[Path, Path]:
        key, csr, crt = (self.dir / f"{cn}.key"), (self.dir / f"{cn}.csr"), (self.dir / f"{cn}.crt")
        ext = self.dir / f"{cn}.ext"
        ext.write_text(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key),
              "-out", str(csr)])
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
              "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt)])
        return crt, key


# ---------------------------------------------------------------------------------------------- token issuer

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Docker's token flow: GET <realm>?service=S&scope=repository:NAME:ACTIONS with optional basic auth.

    Anonymous: pull on every repository except under "private/". USER/PASSWORD: pull and push everywhere.
    Wrong credentials: 401. Tokens are RS256 JWTs carrying the signing certificate in `x5c`, which the registry
    checks against its rootcertbundle. `requests` records (account, scopes) of every issued token.
    """

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.key = base / "token.key"
        self.cert = base / "token.crt"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=token issuer",
              "-keyout", str(self.key), "-out", str(self.cert)])
        der = _run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], text=False).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[tuple[str, list[str]]] = []
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                issuer.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlparse(req.path)
        if url.path != "/token":
            req.send_response(404)
            req.end_headers()
            return
        query = urllib.parse.parse_qs(url.query)
        account = ""
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"invalid credentials"}]}'
                req.send_response(401)
                req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
            account = user
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if account:
                granted = [a for a in wanted if a in ("pull", "push", "*")]
            else:
                granted = [a for a in wanted if a == "pull" and not name.startswith("private/")]
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        self.requests.append((account, scopes))
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": account, "aud": query.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        token = self.sign(claims)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------- registry

class Registry:
    """One docker-registry process on 127.0.0.1:<free port>."""

    def __init__(self, base: Path, *, tls: CA | None = None, htpasswd: bool = False,
                 token: TokenIssuer | None = None, client_ca: Path | None = None) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://{self.host}"
        self.ca = tls
        self.creds: str | None = f"{USER}:{PASSWORD}" if (htpasswd or token) else None
        self.token = token
        self.log = base / "registry.log"
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {base / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if tls:
            lines += ["  tls:", f"    certificate: {tls.server_cert}", f"    key: {tls.server_key}"]
            if client_ca:
                # Mutual TLS: only clients with a certificate from this CA get in.
                lines += ["    clientcas:", f"      - {client_ca}"]
        if htpasswd:
            pw = base / "htpasswd"
            pw.write_text(_run(["htpasswd", "-Bbn", USER, PASSWORD]).stdout)
            lines += ["auth:", "  htpasswd:", "    realm: ctrpy-test", f"    path: {pw}"]
        elif token:
            lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {SERVICE}",
                      f"    issuer: {ISSUER}", f"    rootcertbundle: {token.cert}"]
        self.config = base / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")
        self._logf = open(self.log, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not listen on {self.host}")

    def push(self, layout: Path, repo: str, *, tag: str = "latest", creds: str | None = None,
             src_tag: str = "latest") -> str:
        """Copy `layout`:src_tag to this registry as repo:tag (skopeo); returns the reference."""
        ref = f"{self.host}/{repo}:{tag}"
        cert_dir = None
        if self.ca:
            cert_dir = str(self.base / "skopeo-certs")
            Path(cert_dir).mkdir(exist_ok=True)
            (Path(cert_dir) / "ca.crt").write_bytes(self.ca.cert.read_bytes())
        testimages.push_layout(layout, ref, tag=src_tag, creds=creds or self.creds, tls_verify=bool(self.ca),
                               cert_dir=cert_dir)
        return ref

    def log_text(self) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")

    def requests(self, method: str, path_fragment: str) -> int:
        """How many completed requests of `method` whose URI contains `path_fragment` the access log shows."""
        count = 0
        for line in self.log_text().splitlines():
            # Access log lines: 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...
            if f'"{method} ' in line and path_fragment in line and " HTTP/1.1\"" in line:
                count += 1
        return count

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()


# ---------------------------------------------------------------------------------------------- fault proxy

class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of a plain-HTTP registry that can misbehave on purpose.

    Clients use `proxy.host` as the registry host. Per blob digest (set the dicts before pulling):
      tamper    {digest}                 flip one byte of the body (same length)
      truncate  {digest: n}              announce the full length, send n bytes, close the connection
      stall     {digest: n}              send n bytes, then nothing until `release` is set (or 120 s)
      delay     seconds                  sleep between 64 KiB chunks of every blob body (throttle)
    `log` records (method, path, Range header, status, bytes sent) of every request. It also works as a
    forward proxy (HTTP_PROXY: absolute URLs are served from the upstream; HTTPS_PROXY: CONNECT is
    tunnelled to the upstream port, recorded in `connects`), so no name a client asks for is ever resolved.
    """

    def __init__(self, upstream: Registry) -> None:
        self.upstream = upstream
        self.tamper: set[str] = set()
        self.truncate: dict[str, int] = {}
        self.stall: dict[str, int] = {}
        self.delay = 0.0
        self.release = threading.Event()
        self.log: list[tuple[str, str, str, int, int]] = []
        self.connections: set[tuple[str, int]] = set()  # client (address, port) pairs: one per TCP connection
        self.connects: list[str] = []                    # CONNECT targets (HTTPS through the proxy)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

            def do_CONNECT(self) -> None:  # noqa: N802
                proxy.tunnel(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def blob_gets(self, digest: str) -> list[tuple[str, str, str, int, int]]:
        with self.lock:
            return [e for e in self.log if e[0] == "GET" and e[1].endswith(f"/blobs/{digest}")]

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        import http.client

        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else None
        headers = {k: v for k, v in req.headers.items()
                   if k.lower() not in ("host", "connection", "proxy-connection", "keep-alive")}
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request(req.command, req.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            out_headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in ("connection", "transfer-encoding", "keep-alive", "content-length")]
        finally:
            conn.close()
        digest = req.path.split("?")[0].rsplit("/", 1)[-1] if "/blobs/sha256:" in req.path else ""
        declared = len(data)
        if req.command == "HEAD":
            declared = int(resp.getheader("Content-Length") or 0)
        if digest in self.tamper and data and req.command == "GET":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        req.send_response(status)
        for k, v in out_headers:
            # Redirect targets and upload locations must point back at the proxy.
            if k.lower() == "location":
                v = v.replace(f"127.0.0.1:{self.upstream.port}", self.host)
            req.send_header(k, v)
        req.send_header("Content-Length", str(declared))
        req.end_headers()
        sent = 0
        try:
            if req.command != "HEAD":
                limit = len(data)
                if req.command == "GET" and digest in self.truncate:
                    limit = min(limit, self.truncate[digest])
                if req.command == "GET" and digest in self.stall:
                    limit = min(limit, self.stall[digest])
                step = 65536
                while sent < limit:
                    chunk = data[sent:min(limit, sent + step)]
                    req.wfile.write(chunk)
                    req.wfile.flush()
                    sent += len(chunk)
                    if self.delay and digest:
                        time.sleep(self.delay)
                if req.command == "GET" and digest in self.stall and sent < len(data):
                    self.release.wait(120)
                if sent < len(data):
                    req.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            req.close_connection = True
        with self.lock:
            self.log.append((req.command, req.path.split("?")[0], req.headers.get("Range", ""), status, sent))
            self.connections.add(req.client_address)

    def tunnel(self, req: BaseHTTPRequestHandler) -> None:
        """HTTPS_PROXY: CONNECT host:port is tunnelled to the upstream registry whatever the host."""
        import select

        with self.lock:
            self.connects.append(req.path)
        upstream = socket.create_connection(("127.0.0.1", self.upstream.port), timeout=30)
        req.send_response(200, "Connection established")
        req.end_headers()
        req.wfile.flush()
        client = req.connection
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 30)
                if not ready:
                    break
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            req.close_connection = True

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> testimages.TestImages:
    return testimages.TestImages(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry-http"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return CA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory, test_ca: CA) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry-tls"), tls=test_ca, htpasswd=True)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    issuer = TokenIssuer(tmp_path_factory.mktemp("token-issuer"))
    try:
        yield issuer
    finally:
        issuer.stop()


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry-token"), token=token_issuer)
    try:
        yield reg
    finally:
        reg.stop()


SEEDED = ("busybox", "layered", "docker", "multi", "docker-multi")


@pytest.fixture(scope="session")
def seeded_registry(registry: Registry, test_images: testimages.TestImages) -> Registry:
    """The plain registry holding the standard images as <name>:latest (see SEEDED)."""
    for name in SEEDED:
        registry.push(getattr(test_images, name.replace("-", "_")), name)
    return registry


@pytest.fixture
def fault_proxy(seeded_registry: Registry) -> Iterator[FaultProxy]:
    """A fresh FaultProxy in front of the seeded registry (plain HTTP), stopped after the test."""
    proxy = FaultProxy(seeded_registry)
    try:
        yield proxy
    finally:
        proxy.stop()


def http_get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """A plain GET to 127.0.0.1 with no proxy, for tests that inspect a registry directly."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
