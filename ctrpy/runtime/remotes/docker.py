"""The registry client: distribution API v2 over one keep-alive httpx.Client per endpoint.

`Session(domain, options)` serves one registry name (docker.io, host:port, or a name served by mirrors).
Reads (resolve, fetch) try the endpoints with the needed capability in hosts.toml order and move on when a
mirror fails or lacks the object; writes go to the first endpoint with the push capability.

Every failure becomes one CtrpyError with a one-line message naming the host and what failed: an unknown
host, a refused connection, an untrusted certificate, 401/403/404, rate limits, a stalled or truncated body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from ctrpy.runtime import errors
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.images import ACCEPT, MAX_MANIFEST_SIZE, is_index, is_manifest, kind
from ctrpy.runtime.reference import Reference
from ctrpy.runtime.remotes import PULL, PUSH, RESOLVE, RegistryHost, RegistryOptions
from ctrpy.runtime.remotes import auth as _auth
from ctrpy.runtime.remotes.hosts import registry_hosts

USER_AGENT = "ctrpy/0.1"
CHUNK = 1 << 20
# Bodies read into memory are capped while they stream, and a declared Content-Length above the cap is refused
# before a byte is read: a registry must not be able to exhaust memory. Manifests, indexes and configs get
# MAX_MANIFEST_SIZE; token responses MAX_TOKEN_BODY; error bodies (read only for their message) are cut at
# MAX_ERROR_BODY. A small object must also arrive whole within the progress timeout (a drip of one byte a
# second never trips a read timeout).
MAX_TOKEN_BODY = 1 << 20
MAX_ERROR_BODY = 64 << 10


class BodyTooLarge(errors.InvalidArgument):
    """A response body larger than ctrpy reads into memory."""


def read_capped(resp: httpx.Response, cap: int, what: str, host: str, *, deadline: float | None = None,
                truncate: bool = False) -> bytes:
    """Read `resp` into memory, at most `cap` bytes; stores the body on the response (resp.content works).

    Raises BodyTooLarge when the server declares or sends more than `cap` bytes, unless `truncate` (error
    bodies: keep the first `cap` bytes). `deadline` (time.monotonic()) bounds the whole read."""
    declared = resp.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > cap and not truncate:
        resp.close()
        raise BodyTooLarge(f"{what}: {host} declared a body of {int(declared)} bytes, more than the {cap} "
                           f"allowed; refused without reading it")
    data = bytearray()
    try:
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > cap:
                if truncate:
                    del data[cap:]
                    break
                raise BodyTooLarge(f"{what}: {host} sent more than the {cap} bytes allowed; stopped reading")
            if deadline is not None and time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"{what}: {host} is sending too slowly ({len(data)} bytes so far); "
                                              f"gave up")
    finally:
        resp.close()
    resp._content = bytes(data)  # what resp.read() would have set, without an unbounded read
    return resp._content


def _registry_message(resp: httpx.Response) -> str:
    """The first error of a registry's JSON error body, if any."""
    try:
        body = resp.content[:4096]
        data = json.loads(body)
        first = data["errors"][0]
        text = first.get("message") or first.get("code") or ""
        code = first.get("code")
        return f"{code}: {text}" if code and code != text else str(text)
    except Exception:
        return ""


def _valid_digest(digest: str) -> bool:
    """A Docker-Content-Digest header worth trusting (else the manifest is fetched and hashed here)."""
    from ctrpy.runtime.reference import validate_digest

    try:
        validate_digest(digest)
    except errors.InvalidArgument:
        return False
    return True


def _is_name_error(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in ("name or service not known", "temporary failure in name resolution",
                                      "no address associated", "nodename nor servname", "name resolution",
                                      "errno -2", "errno -3", "errno -5", "getaddrinfo"))


def _root_cause(exc: BaseException) -> BaseException:
    seen = 0
    while (exc.__cause__ or exc.__context__) is not None and seen < 8:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return exc


class HTTPNotFound(errors.NotFound):
    """The registry answered 404 (as opposed to a local lookup failing)."""


class Session:
    """Client for one registry name (a reference's domain)."""

    def __init__(self, domain: str, opts: RegistryOptions, *, credential: _auth.Credential | None = None,
                 timeout: float | None = None) -> None:
        self.domain = domain
        self.opts = opts
        self.hosts = registry_hosts(domain, opts)
        self._explicit_cred = credential
        self._cred_loaded = credential is not None
        self._cred: _auth.Credential | None = credential
        self._clients: dict[tuple[Any, ...], httpx.Client] = {}
        self._auth: dict[tuple[str, str], str] = {}        # (host, scope key) -> Authorization value
        self._lock = threading.Lock()
        self.read_timeout = timeout or opts.progress_timeout

    # -- plumbing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def credential(self) -> _auth.Credential | None:
        with self._lock:
            if not self._cred_loaded:
                self._cred = _auth.lookup(self.domain, self.opts.docker_config)
                self._cred_loaded = True
            return self._cred

    def _ssl_context(self, host: RegistryHost) -> ssl.SSLContext | bool:
        if host.skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
            for ca in host.ca:
                try:
                    ctx.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as exc:
                    raise errors.InvalidArgument(f"cannot load CA certificate {ca}: {exc}") from None
        for cert, key in host.client_certs:
            try:
                ctx.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise errors.InvalidArgument(f"cannot load client certificate {cert}: {exc}") from None
        return ctx

    def _client(self, host: RegistryHost) -> httpx.Client:
        # One pool per endpoint AND its TLS settings: a [host] entry and the server may share a URL and differ
        # in ca/skip_verify (each keeps its own, as containerd gives each its own transport).
        key = (host.scheme, host.host, tuple(host.ca), tuple(host.client_certs), host.skip_verify)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                verify = self._ssl_context(host) if host.scheme == "https" else True
                client = httpx.Client(
                    verify=verify,
                    timeout=httpx.Timeout(self.read_timeout, connect=self.opts.connect_timeout),
                    limits=httpx.Limits(max_connections=max(4, self.opts.max_concurrent * 2),
                                        max_keepalive_connections=max(4, self.opts.max_concurrent * 2)),
                    follow_redirects=True,
                    # HTTP(S)_PROXY/NO_PROXY from the environment, except for loopback, which (as in Go's
                    # ProxyFromEnvironment, hence containerd) never goes through a proxy.
                    trust_env=True,
                    mounts={"all://127.0.0.1": None, "all://localhost": None, "all://[::1]": None},
                    headers={"User-Agent": USER_AGENT, **host.headers},
                )
                self._clients[key] = client
            return client

    def _translate(self, exc: Exception, host: RegistryHost, what: str) -> errors.CtrpyError:
        """One line for a transport failure."""
        cause = _root_cause(exc)
        text = str(cause) or str(exc) or type(exc).__name__
        name = host.host.rsplit(":", 1)[0] if host.host.count(":") == 1 else host.host
        if isinstance(cause, ssl.SSLError) and "ALERT" in text.upper() and "CERTIFICATE" in text.upper():
            return errors.PermissionDenied(
                f"{what}: {host.host} refused the TLS handshake ({getattr(cause, 'reason', None) or text}): it wants "
                f"a client certificate (--tlscert/--tlskey or `client` in hosts.toml)")
        if isinstance(exc, httpx.ProxyError):
            return errors.Unavailable(f"{what}: proxy error: {exc}")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
            return errors.DeadlineExceeded(
                f"{what}: no data from {host.host} for {self.read_timeout:g}s (stalled transfer)")
        if isinstance(exc, httpx.PoolTimeout):
            return errors.DeadlineExceeded(f"{what}: timed out waiting for a connection to {host.host}")
        if isinstance(exc, httpx.ConnectTimeout):
            return errors.Unavailable(f"{what}: timed out connecting to {host.host}")
        if isinstance(exc, httpx.RemoteProtocolError):
            return errors.Unavailable(f"{what}: {host.host} closed the connection early (truncated body: {text})")
        if isinstance(exc, httpx.ConnectError):
            if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
                reason = getattr(cause, "verify_message", "") or text
                return errors.Unavailable(
                    f"{what}: TLS certificate of {host.host} is not trusted ({reason}); give its CA with "
                    f"--tlscacert or `ca` in hosts.toml, or use --skip-verify")
            if _is_name_error(text):
                return errors.Unavailable(f"{what}: cannot resolve registry host {name!r}")
            if "refused" in text.lower():
                return errors.Unavailable(f"{what}: connection refused by {host.host}")
            return errors.Unavailable(f"{what}: cannot connect to {host.host}: {text}")
        if isinstance(exc, httpx.ReadError):
            return errors.Unavailable(f"{what}: connection to {host.host} broke: {text}")
        if isinstance(exc, httpx.HTTPError):
            return errors.Unavailable(f"{what}: {host.host}: {text}")
        return errors.Internal(f"{what}: {type(exc).__name__}: {text}")

    def _read_error_body(self, resp: httpx.Response, host: RegistryHost) -> None:
        """Read (the start of) a body we only want a message from; never fails, never reads without end."""
        try:
            read_capped(resp, MAX_ERROR_BODY, "error body", host.host, truncate=True,
                        deadline=time.monotonic() + min(self.read_timeout, 10.0))
        except (httpx.HTTPError, errors.CtrpyError):
            resp._content = b""
            resp.close()

    def _status_error(self, resp: httpx.Response, host: RegistryHost, what: str) -> errors.CtrpyError:
        detail = _registry_message(resp)
        suffix = f": {detail}" if detail else ""
        code = resp.status_code
        if code == 401:
            if self.credential() is not None:
                return errors.PermissionDenied(f"{what}: {host.host} rejected the credentials (401){suffix}")
            return errors.PermissionDenied(
                f"{what}: {host.host} requires authentication (401); use --user or `ctrpy login`{suffix}")
        if code == 403:
            return errors.PermissionDenied(f"{what}: access denied by {host.host} (403){suffix}")
        if code == 404:
            return HTTPNotFound(f"{what}: not found on {host.host} (404){suffix}")
        if code == 429:
            return errors.Unavailable(f"{what}: {host.host} is rate limiting requests (429){suffix}")
        if code >= 500:
            return errors.Unavailable(f"{what}: {host.host} failed with {code}{suffix}")
        if code == 400 and "HTTP request to an HTTPS server" in resp.text[:500]:
            return errors.InvalidArgument(f"{what}: {host.host} speaks HTTPS; drop --plain-http")
        return errors.CtrpyError(f"{what}: unexpected status {code} from {host.host}{suffix}")

    # -- authorization -------------------------------------------------------------------------------------

    def _fetch_token(self, host: RegistryHost, challenge: _auth.Challenge, scopes: list[str], what: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise errors.PermissionDenied(f"{what}: {host.host} sent a bearer challenge without a realm")
        wanted = sorted(set(scopes) | set(s for s in challenge.params.get("scope", "").split(" ") if s))
        cred = self.credential()
        service = challenge.params.get("service")
        token_host = RegistryHost(host=httpx.URL(realm).netloc.decode(), scheme=httpx.URL(realm).scheme,
                                  ca=host.ca, skip_verify=host.skip_verify, client_certs=host.client_certs)
        client = self._client(token_host)
        try:
            if cred is not None and cred.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": cred.secret, "client_id": USER_AGENT,
                        "scope": " ".join(wanted)}
                if service:
                    form["service"] = service
                resp = client.send(client.build_request("POST", realm, data=form), stream=True)
            else:
                params: list[tuple[str, Any]] = []
                if service:
                    params.append(("service", service))
                params += [("scope", s) for s in wanted]
                if cred is not None:
                    params.append(("account", cred.username))
                headers = {}
                if cred is not None:
                    basic = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()
                    headers["Authorization"] = f"Basic {basic}"
                resp = client.send(client.build_request("GET", realm, params=params, headers=headers),
                                   stream=True)
        except httpx.HTTPError as exc:
            raise self._translate(exc, token_host, f"{what}: fetching a token") from None
        if resp.status_code in (401, 403):
            self._read_error_body(resp, token_host)
            if cred is not None:
                raise errors.PermissionDenied(
                    f"{what}: {token_host.host} rejected the credentials for {self.domain} ({resp.status_code})")
            raise errors.PermissionDenied(f"{what}: {token_host.host} refused an anonymous token "
                                          f"({resp.status_code}); use --user or `ctrpy login`")
        if resp.status_code != 200:
            self._read_error_body(resp, token_host)
            raise errors.Unavailable(f"{what}: token server {token_host.host} answered {resp.status_code}")
        try:
            body = read_capped(resp, MAX_TOKEN_BODY, f"{what}: fetching a token", token_host.host,
                               deadline=time.monotonic() + self.read_timeout)
        except httpx.HTTPError as exc:
            raise self._translate(exc, token_host, f"{what}: fetching a token") from None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise errors.Unavailable(f"{what}: token server {token_host.host} sent invalid JSON") from None
        token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not token or not isinstance(token, str):
            raise errors.Unavailable(f"{what}: token server {token_host.host} sent no token")
        return f"Bearer {token}"

    def _authorize(self, host: RegistryHost, resp: httpx.Response, scope_key: str, scopes: list[str],
                   what: str, sent: str | None) -> bool:
        """Answer a 401: returns True when a new Authorization header is ready for a retry."""
        challenges = _auth.parse_challenges(resp.headers.get_list("www-authenticate"))
        for challenge in challenges:
            if challenge.scheme == "bearer":
                header = self._fetch_token(host, challenge, scopes, what)
                with self._lock:
                    self._auth[(host.host, scope_key)] = header
                return True
        for challenge in challenges:
            if challenge.scheme == "basic":
                cred = self.credential()
                if cred is None:
                    return False
                header = "Basic " + base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode()
                if sent == header:
                    return False  # these very credentials were refused
                with self._lock:
                    # Basic credentials are per host, whatever the scope.
                    self._auth[(host.host, "")] = header
                return True
        return False

    # -- requests ------------------------------------------------------------------------------------------

    def request(self, host: RegistryHost, method: str, path: str, *, scopes: list[str], what: str,
                headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                content: Callable[[], Iterable[bytes] | bytes] | None = None, stream: bool = False,
                timeout: float | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Send one API request with auth; `path` is below /v2 (or an absolute upload URL).

        Returns the response (open when `stream`) when its status is in `ok`; raises a CtrpyError otherwise.
        """
        scope_key = " ".join(sorted(scopes))
        if path.startswith(("http://", "https://")):
            url = path
        else:
            url = host.base_url + path
        query = dict(params or {})
        if host.mirror and self.domain != host.host:
            query.setdefault("ns", self.domain)
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        for attempt in range(3):
            client = self._client(host)
            hdrs = dict(headers or {})
            with self._lock:
                auth_header = self._auth.get((host.host, scope_key)) or self._auth.get((host.host, ""))
            if auth_header:
                hdrs["Authorization"] = auth_header
            body = content() if content is not None else None
            request_timeout = httpx.Timeout(timeout or self.read_timeout, connect=self.opts.connect_timeout)
            try:
                req = client.build_request(method, url, headers=hdrs, content=body, timeout=request_timeout)
                resp = client.send(req, stream=True)
            except httpx.ConnectError as exc:
                cause = _root_cause(exc)
                if (url.startswith("https://") and (host.http_fallback or host.scheme == "http")
                        and isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLCertVerificationError)):
                    # A loopback registry that does not speak TLS: use plain HTTP from now on (another thread
                    # may have switched already).
                    host.scheme = "http"
                    host.http_fallback = False
                    url = url.replace("https://", "http://", 1)
                    continue
                raise self._translate(exc, host, what) from None
            except httpx.HTTPError as exc:
                raise self._translate(exc, host, what) from None
            if resp.status_code == 401 and attempt < 2:
                self._read_error_body(resp, host)
                if self._authorize(host, resp, scope_key, scopes, what, auth_header):
                    continue
                raise self._status_error(resp, host, what)
            if resp.status_code not in ok:
                self._read_error_body(resp, host)
                raise self._status_error(resp, host, what)
            if method == "HEAD":
                resp.close()
                resp._content = b""
            elif not stream:
                try:
                    read_capped(resp, MAX_MANIFEST_SIZE, what, host.host,
                                deadline=time.monotonic() + (timeout or self.read_timeout))
                except httpx.HTTPError as exc:
                    raise self._translate(exc, host, what) from None
            return resp
        raise errors.PermissionDenied(f"{what}: {host.host} keeps asking for authentication")

    def hosts_for(self, capability: str) -> list[RegistryHost]:
        hosts = [h for h in self.hosts if h.can(capability)]
        if not hosts:
            raise errors.FailedPrecondition(f"no host configured for {self.domain} can {capability}")
        return hosts

    # -- pull side -----------------------------------------------------------------------------------------

    def resolve(self, ref: Reference) -> tuple[Descriptor, bytes | None]:
        """The root descriptor of `ref` (and the manifest bytes when a GET was needed)."""
        what = f"resolve {ref}"
        scopes = [f"repository:{ref.path}:pull"]
        last: errors.CtrpyError | None = None
        for host in self.hosts_for(RESOLVE):
            try:
                path = f"/{ref.path}/manifests/{ref.object}"
                resp = self.request(host, "HEAD", path, scopes=scopes, what=what, headers={"Accept": ACCEPT},
                                    ok=(200, 400, 405, 501))
                digest = resp.headers.get("docker-content-digest")
                media_type = resp.headers.get("content-type", "").split(";")[0].strip()
                size = resp.headers.get("content-length")
                if resp.status_code == 200 and digest and _valid_digest(digest) and media_type and size and \
                        size.isdigit() and (is_index(media_type) or is_manifest(media_type)):
                    if ref.digest and digest != ref.digest:
                        raise errors.FailedPrecondition(
                            f"{what}: {host.host} answered with digest {digest}, expected {ref.digest}")
                    return Descriptor(media_type, digest, int(size)), None
                resp = self.request(host, "GET", path, scopes=scopes, what=what, headers={"Accept": ACCEPT})
                data = resp.content
                if len(data) > MAX_MANIFEST_SIZE:
                    raise errors.InvalidArgument(f"{what}: manifest larger than {MAX_MANIFEST_SIZE} bytes")
                media_type = resp.headers.get("content-type", "").split(";")[0].strip()
                if not (is_index(media_type) or is_manifest(media_type)):
                    try:
                        media_type = json.loads(data).get("mediaType", "") or media_type
                    except ValueError:
                        pass
                if not (is_index(media_type) or is_manifest(media_type)):
                    raise errors.NotImplemented_(f"{what}: unsupported manifest media type {media_type!r}")
                actual = "sha256:" + hashlib.sha256(data).hexdigest()
                if ref.digest and actual != ref.digest:
                    raise errors.FailedPrecondition(f"{what}: content digest {actual} does not match {ref.digest}")
                return Descriptor(media_type, actual, len(data)), data
            except HTTPNotFound:
                last = HTTPNotFound(f"{what}: manifest {ref.object!r} not found on {host.host} (404)")
                if not host.mirror:
                    raise last from None
            except (errors.Unavailable, errors.DeadlineExceeded) as exc:
                last = exc
                if not host.mirror:
                    raise
        assert last is not None
        raise last

    def open_blob(self, path: str, desc: Descriptor, offset: int = 0,
                  timeout: float | None = None) -> tuple[RegistryHost, httpx.Response]:
        """Start streaming a blob or manifest; with offset > 0 ask for the rest (206) but accept a full 200."""
        endpoint = "manifests" if (is_index(desc.media_type) or is_manifest(desc.media_type)) else "blobs"
        what = f"fetch {kind(desc.media_type)} {desc.digest[:19]}"
        headers = {"Accept": desc.media_type or "*/*"} if endpoint == "manifests" else {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        last: errors.CtrpyError | None = None
        for host in self.hosts_for(PULL):
            try:
                resp = self.request(host, "GET", f"/{path}/{endpoint}/{desc.digest}",
                                    scopes=[f"repository:{path}:pull"], what=what, headers=headers, stream=True,
                                    timeout=timeout, ok=(200, 206))
                return host, resp
            except (HTTPNotFound, errors.Unavailable, errors.DeadlineExceeded) as exc:
                last = exc
                if not host.mirror:
                    raise
        assert last is not None
        raise last

    def fetch_bytes(self, path: str, desc: Descriptor) -> bytes:
        """A small object (manifest, index, config) fetched whole and verified against its descriptor."""
        if desc.size > MAX_MANIFEST_SIZE:
            raise errors.InvalidArgument(f"{kind(desc.media_type)} {desc.digest} is too large ({desc.size} bytes)")
        host, resp = self.open_blob(path, desc)
        what = f"fetch {kind(desc.media_type)} {desc.digest}"
        declared = resp.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > desc.size:
            resp.close()
            raise errors.FailedPrecondition(
                f"{what}: {host.host} declared {int(declared)} bytes, the descriptor {desc.size}; refused "
                f"without reading it")
        try:
            # One byte more than the descriptor says is enough to tell a lying server.
            data = read_capped(resp, desc.size + 1, what, host.host, truncate=True,
                               deadline=time.monotonic() + self.read_timeout)
        except httpx.HTTPError as exc:
            raise self._translate(exc, host, what) from None
        verify_bytes(data, desc, host.host)
        return data

    # -- push side -----------------------------------------------------------------------------------------

    def push_host(self) -> RegistryHost:
        return self.hosts_for(PUSH)[0]

    def blob_exists(self, path: str, desc: Descriptor) -> bool:
        host = self.push_host()
        endpoint = "manifests" if (is_index(desc.media_type) or is_manifest(desc.media_type)) else "blobs"
        resp = self.request(host, "HEAD", f"/{path}/{endpoint}/{desc.digest}",
                            scopes=[f"repository:{path}:pull,push"], what=f"check {desc.digest[:19]}",
                            headers={"Accept": desc.media_type} if endpoint == "manifests" else None,
                            ok=(200, 404))
        return resp.status_code == 200

    def start_upload(self, path: str, desc: Descriptor, mount_from: str | None = None) -> str | None:
        """POST an upload; with mount_from try a cross-repository mount. None when the blob is now there."""
        host = self.push_host()
        scopes = [f"repository:{path}:pull,push"]
        params = None
        if mount_from and mount_from != path:
            scopes.append(f"repository:{mount_from}:pull")
            params = {"mount": desc.digest, "from": mount_from}
        url = f"/{path}/blobs/uploads/"
        if params:
            url += "?" + urlencode(params)
        resp = self.request(host, "POST", url, scopes=scopes, what=f"upload {desc.digest[:19]}",
                            headers={"Content-Length": "0"}, ok=(201, 202))
        if resp.status_code == 201:
            return None
        location: str | None = resp.headers.get("location")
        if not location:
            raise errors.Unavailable(f"upload {desc.digest[:19]}: {host.host} sent no upload location")
        return urljoin(host.base_url + "/", location)

    def finish_upload(self, path: str, desc: Descriptor, location: str,
                      content: Callable[[], Iterable[bytes]]) -> None:
        host = self.push_host()
        sep = "&" if "?" in location else "?"
        self.request(host, "PUT", f"{location}{sep}{urlencode({'digest': desc.digest})}",
                     scopes=[f"repository:{path}:pull,push"], what=f"upload {desc.digest[:19]}",
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                     content=content, ok=(201, 204))

    def put_manifest(self, path: str, tag_or_digest: str, desc: Descriptor, data: bytes) -> str:
        host = self.push_host()
        resp = self.request(host, "PUT", f"/{path}/manifests/{tag_or_digest}",
                            scopes=[f"repository:{path}:pull,push"], what=f"push manifest {tag_or_digest}",
                            headers={"Content-Type": desc.media_type}, content=lambda: data, ok=(201, 200, 202))
        digest: str = resp.headers.get("docker-content-digest", desc.digest)
        return digest

    def ping(self) -> RegistryHost:
        """GET /v2/ with authentication (login): raises PermissionDenied when the credentials are refused."""
        host = self.hosts[-1]
        self.request(host, "GET", "/", scopes=[], what=f"log in to {self.domain}")
        return host


def verify_bytes(data: bytes, desc: Descriptor, host: str) -> None:
    if len(data) != desc.size:
        raise errors.FailedPrecondition(
            f"{kind(desc.media_type)} {desc.digest} from {host}: got {len(data)} bytes, expected {desc.size}")
    algorithm = desc.digest.split(":", 1)[0]
    actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if actual != desc.digest:
        raise errors.FailedPrecondition(
            f"{kind(desc.media_type)} {desc.digest} from {host}: digest mismatch (got {actual}); nothing stored")


def iter_file(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield block
