"""Registry host configuration in containerd's format: `<config_path>/<host>/hosts.toml`.

    server = "https://registry-1.docker.io"          # the upstream; default https://<host> (docker.io: registry-1)
    capabilities = ["pull", "resolve", "push"]     # of the server (default: all)
    ca = "server-ca.crt"                           # TLS settings of the server: ca, client, skip_verify

    [host."http://127.0.0.1:5000"]                     # tried in file order before the server
      capabilities = ["pull", "resolve"]             # default: pull, resolve, push (any case)
      ca = "/etc/certs/mirror-ca.crt"                 # or a list
      client = [["/etc/certs/client.crt", "/etc/certs/client.key"]]   # "/pem" or ["/pem1", "/pem2"]: cert+key in one file
      skip_verify = false                            # set either way, it wins over --skip-verify
      override_path = false                          # true: the URL path is the API root (no /v2 added)
      [host."http://127.0.0.1:5000".header]
        x-custom = "value"                           # or a list of values

Resolution follows containerd's remotes/docker/config (hosts.go) rule for rule, and tests/test_hosts_toml.py
checks it against `ctr --hosts-dir` on the same files:
- For each directory of config_path in order, the first that EXISTS of `<host>_<port>_`, `<host:port>` and
  `_default` is the host's directory; later directories are not looked at.
- A directory without hosts.toml (or with an empty one) is docker's certs.d layout: `*.crt` are CAs, `*.cert`
  (with `*.key` beside it) client certificates, for the server.
- Every `[host]` entry is an endpoint of its own, even one whose URL equals `server` (its ca and skip_verify
  hold for that entry); the server comes last with the top-level settings.
- --tlscacert/--tlscert/--tlskey/--skip-verify apply to every endpoint (skip_verify set in the file wins);
  --plain-http changes only the default server's scheme (a URL in the file says its own scheme).
Deviation, on purpose: a hosts.toml that does not parse is an error here; containerd logs it and silently
falls back to the certificate files.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ctrpy.runtime import errors
from ctrpy.runtime.reference import is_loopback_host, is_registry_host, registry_host
from ctrpy.runtime.remotes import ALL_CAPABILITIES, RegistryHost, RegistryOptions

_KNOWN_CAPS = ALL_CAPABILITIES


def host_paths(domain: str) -> list[str]:
    """Directory names to try for `domain`, in containerd's order (hostPaths)."""
    names = []
    colon = domain.rfind(":")
    if colon > 0:
        names.append(f"{domain[:colon]}_{domain[colon + 1:]}_")
    return names + [domain, "_default"]


def find_hosts_dir(domain: str, dirs: list[str]) -> Path | None:
    """The host directory for `domain`: per config directory, the first existing of host_paths()."""
    for base in dirs:
        if not base:
            continue
        for name in host_paths(domain):
            candidate = Path(base) / name
            if candidate.is_dir():
                return candidate
    return None


def _cert_files(directory: Path) -> tuple[list[str], list[tuple[str, str | None]]]:
    """docker's certs.d layout: *.crt are CAs, *.cert client certificates (key in *.key beside, if any)."""
    cas: list[str] = []
    clients: list[tuple[str, str | None]] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read hosts directory") from exc
    for entry in entries:
        if entry.is_dir():
            continue
        if entry.name.endswith(".crt"):
            cas.append(entry.path)
        if entry.name.endswith(".cert"):
            key = directory / (entry.name[:-5] + ".key")
            clients.append((entry.path, str(key) if key.exists() else None))
    return cas, clients


def _paths(value: Any, where: str, base: Path) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise errors.InvalidArgument(f"{where}: ca must be a path or a list of paths")
    return [str(base / v) if not v.startswith("/") else v for v in items]


def _client_certs(value: Any, where: str, base: Path) -> list[tuple[str, str | None]]:
    """containerd: "pem" -> one file with cert and key; a list of "pem" entries and/or [cert, key] pairs."""
    if value is None:
        return []

    def fix(p: str) -> str:
        return p if p.startswith("/") else str(base / p)

    if isinstance(value, str):
        return [(fix(value), None)]
    if isinstance(value, list):
        out: list[tuple[str, str | None]] = []
        for item in value:
            if isinstance(item, str):
                out.append((fix(item), None))
            elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
                out.append((fix(item[0]), fix(item[1])))
            else:
                raise errors.InvalidArgument(f"{where}: client must be a path, a list of paths or [cert, key] "
                                             f"pairs, not {item!r}")
        return out
    raise errors.InvalidArgument(f"{where}: client must be a path, a list of paths or [cert, key] pairs")


def _capabilities(table: dict[str, Any], where: str) -> frozenset[str]:
    caps = table.get("capabilities")
    if caps is None or caps == []:
        return ALL_CAPABILITIES
    if not isinstance(caps, list) or not all(isinstance(c, str) and c.lower() in _KNOWN_CAPS for c in caps):
        raise errors.InvalidArgument(f"{where}: capabilities must be a list of pull, resolve, push")
    return frozenset(c.lower() for c in caps)


def _headers(table: dict[str, Any], where: str) -> dict[str, str]:
    headers = table.get("header", {})
    if not isinstance(headers, dict):
        raise errors.InvalidArgument(f"{where}: header must be a table")
    out = {}
    for key, value in headers.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[str(key)] = ", ".join(value)
        else:
            raise errors.InvalidArgument(f"{where}: header {key!r} must be a string or a list of strings")
    return out


def _host_from_url(url: str, where: str, table: dict[str, Any], base: Path, *, mirror: bool) -> RegistryHost:
    scheme = url.partition("://")[0] if "://" in url else None
    if scheme is not None and scheme not in ("http", "https"):
        # containerd would prefix https:// and fail later on host "ftp:"; say what is wrong instead
        raise errors.InvalidArgument(f"{where}: invalid host URL {url!r}: the scheme must be http or https")
    if not url.startswith("http"):
        url = "https://" + url
    try:
        parsed = urlparse(url)
        port = parsed.port  # urllib checks the port only when asked
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", NFKC netloc characters
        reason = " ".join(str(exc).split())  # the NFKC message quotes the netloc as it is
        raise errors.InvalidArgument(f"{where}: invalid host URL {url!r}: {reason}") from None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise errors.InvalidArgument(f"{where}: invalid host URL {url!r}")
    # The host part follows the reference grammar (no user info, spaces or stray brackets), so that what the
    # file names is a host that a reference could name and that httpx can connect to.
    if not is_registry_host(parsed.netloc) or port == 0:
        raise errors.InvalidArgument(f"{where}: invalid host {parsed.netloc!r} in URL {url!r}")
    if parsed.query or parsed.fragment or parsed.params:
        raise errors.InvalidArgument(f"{where}: host URL {url!r} must not have a query or fragment")
    override = table.get("override_path", False)
    if not isinstance(override, bool):
        raise errors.InvalidArgument(f"{where}: override_path must be true or false")
    path = posixpath.normpath(parsed.path) if parsed.path else ""
    path = "" if path in ("/", ".") else path
    if path and not path.endswith("/v2") and not override:
        path += "/v2"
    elif not path and not override:
        path = "/v2"
    skip = table.get("skip_verify")
    if skip is not None and not isinstance(skip, bool):
        raise errors.InvalidArgument(f"{where}: skip_verify must be true or false")
    return RegistryHost(
        host=parsed.netloc,
        scheme=parsed.scheme,
        path=path,
        capabilities=_capabilities(table, where),
        ca=_paths(table.get("ca"), where, base),
        client_certs=_client_certs(table.get("client"), where, base),
        skip_verify=bool(skip),
        skip_verify_set=skip is not None,
        headers=_headers(table, where),
        mirror=mirror,
    )


def parse_hosts_toml(domain: str, path: Path) -> list[RegistryHost]:
    """The [host] entries in file order, then the server (top-level settings). None is dropped or merged."""
    import tomllib as tomli  # tomli's code in the standard library since Python 3.11

    try:
        data = tomli.loads(path.read_text())
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read hosts file") from exc
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"{path}: invalid TOML: {exc}") from None
    base = path.parent
    out: list[RegistryHost] = []
    hosts = data.get("host", {})
    if not isinstance(hosts, dict):
        raise errors.InvalidArgument(f"{path}: [host.\"<url>\"] tables expected")
    for url, table in hosts.items():
        if not isinstance(table, dict):
            raise errors.InvalidArgument(f"{path}: host {url!r} must be a table")
        out.append(_host_from_url(url, f"{path}: host {url!r}", table, base, mirror=True))
    server = data.get("server")
    if server is not None and not isinstance(server, str):
        raise errors.InvalidArgument(f"{path}: server must be a URL string")
    top = {k: v for k, v in data.items() if k not in ("host", "server")}
    if server:
        out.append(_host_from_url(server, f"{path}: server", top, base, mirror=False))
    else:
        out.append(_default_server(domain, top, f"{path}: server", base))
    return out


def _default_server(domain: str, top: dict[str, Any], where: str, base: Path) -> RegistryHost:
    """The server when no `server` names it: https://<host> (docker.io: registry-1.docker.io), all
    capabilities, the top-level TLS settings."""
    host = _host_from_url(f"https://{registry_host(domain)}", where, {k: v for k, v in top.items()
                                                                       if k != "capabilities"}, base, mirror=False)
    host.default_scheme = True
    return host


def registry_hosts(domain: str, opts: RegistryOptions) -> list[RegistryHost]:
    """The endpoints to try for `domain`, in order, with CLI TLS flags applied."""
    directory = find_hosts_dir(domain, opts.hosts_dirs)
    hosts_file = directory / "hosts.toml" if directory is not None else None
    if hosts_file is not None and hosts_file.is_file() and hosts_file.stat().st_size > 0:
        hosts = parse_hosts_toml(domain, hosts_file)
    else:
        host = registry_host(domain)
        default = RegistryHost(host=host, scheme="https", default_scheme=True,
                               http_fallback=(not opts.plain_http and is_loopback_host(host)
                                              and not (opts.tlscacert or opts.tlscert) and directory is None))
        if directory is not None:
            default.ca, default.client_certs = _cert_files(directory)
        hosts = [default]
    for h in hosts:
        if opts.plain_http and h.default_scheme:
            h.scheme = "http"
        if opts.skip_verify and not h.skip_verify_set:
            h.skip_verify = True
        h.ca = h.ca + list(opts.tlscacert)
        if opts.tlscert:
            h.client_certs = h.client_certs + [(opts.tlscert, opts.tlskey)]
    return hosts
