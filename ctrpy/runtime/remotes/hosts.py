"""Registry host configuration in containerd's format: `<config_path>/<host>/hosts.toml`.

    server = "https://registry-1.docker.io"          # the upstream; default https://<host> (docker.io: registry-1)

    [host."http://127.0.0.1:5000"]                     # mirrors, tried in file order before the server
      capabilities = ["pull", "resolve"]             # default: pull, resolve, push
      ca = "/etc/certs/mirror-ca.crt"                 # or a list
      client = [["/etc/certs/client.crt", "/etc/certs/client.key"]]   # or "/cert" or ["/cert", "/key"]
      skip_verify = false
      override_path = false                          # true: the URL path is the API root (no /v2 added)
      [host."http://127.0.0.1:5000".header]
        x-custom = "value"

The directory for `host:port` is named `host:port`; `_default/hosts.toml` applies to hosts without their own
file. `ca`, `client` and relative paths resolve against the hosts.toml's directory. CLI flags
(--plain-http, --skip-verify, --tlscacert, --tlscert/--tlskey) apply on top, to every host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ctrpy.runtime import errors
from ctrpy.runtime.reference import is_loopback_host, registry_host
from ctrpy.runtime.remotes import ALL_CAPABILITIES, RegistryHost, RegistryOptions

_KNOWN_CAPS = ALL_CAPABILITIES


def find_hosts_file(domain: str, dirs: list[str]) -> Path | None:
    """The first `<dir>/<domain>/hosts.toml`, else the first `<dir>/_default/hosts.toml`."""
    names = [domain] + ([domain.replace(":", "_")] if ":" in domain else [])
    for name in names + ["_default"]:
        for base in dirs:
            candidate = Path(base) / name / "hosts.toml" if base else None
            if candidate is not None and candidate.is_file():
                return candidate
    return None


def _paths(value: Any, where: str, base: Path) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise errors.InvalidArgument(f"{where}: ca must be a path or a list of paths")
    return [str(base / v) if not v.startswith("/") else v for v in items]


def _client_certs(value: Any, where: str, base: Path) -> list[tuple[str, str | None]]:
    if value is None:
        return []

    def fix(p: str) -> str:
        return p if p.startswith("/") else str(base / p)

    if isinstance(value, str):
        return [(fix(value), None)]
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            if len(value) == 2 and not value[1].endswith((".crt", ".cert", ".pem")):
                return [(fix(value[0]), fix(value[1]))]
            return [(fix(v), None) for v in value]
        out = []
        for pair in value:
            if isinstance(pair, list) and 1 <= len(pair) <= 2 and all(isinstance(v, str) for v in pair):
                out.append((fix(pair[0]), fix(pair[1]) if len(pair) == 2 else None))
            else:
                raise errors.InvalidArgument(f"{where}: client must be a path, [cert, key] or a list of them")
        return out
    raise errors.InvalidArgument(f"{where}: client must be a path, [cert, key] or a list of them")


def _host_from_url(url: str, where: str, table: dict[str, Any], base: Path, *, mirror: bool) -> RegistryHost:
    if "://" not in url:
        url = "https://" + url
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise errors.InvalidArgument(f"{where}: invalid host URL {url!r}")
    path = parsed.path.rstrip("/")
    if not path:
        path = "/v2"
    elif not table.get("override_path", False) and not path.endswith("/v2"):
        path += "/v2"
    caps = table.get("capabilities", sorted(ALL_CAPABILITIES))
    if not isinstance(caps, list) or not all(c in _KNOWN_CAPS for c in caps):
        raise errors.InvalidArgument(f"{where}: capabilities must be a list of pull, resolve, push")
    skip = table.get("skip_verify", False)
    if not isinstance(skip, bool):
        raise errors.InvalidArgument(f"{where}: skip_verify must be true or false")
    headers = table.get("header", {})
    if not isinstance(headers, dict):
        raise errors.InvalidArgument(f"{where}: header must be a table")
    return RegistryHost(
        host=parsed.netloc,
        scheme=parsed.scheme,
        path=path,
        capabilities=frozenset(caps),
        ca=_paths(table.get("ca"), where, base),
        client_certs=_client_certs(table.get("client"), where, base),
        skip_verify=skip,
        headers={str(k): (", ".join(v) if isinstance(v, list) else str(v)) for k, v in headers.items()},
        mirror=mirror,
    )


def parse_hosts_toml(domain: str, path: Path) -> list[RegistryHost]:
    """Mirrors in file order, then the server (which always has every capability)."""
    import tomllib as tomli  # tomli's code in the standard library since Python 3.11

    try:
        data = tomli.loads(path.read_text())
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read hosts file") from exc
    except tomli.TOMLDecodeError as exc:
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
    top = {k: v for k, v in data.items() if k not in ("host", "server", "capabilities")}
    server_host = _host_from_url(server or f"https://{registry_host(domain)}", f"{path}: server", top, base,
                                 mirror=False)
    server_host.capabilities = ALL_CAPABILITIES
    # containerd: a mirror with the same URL as the server is just the server.
    out = [h for h in out if (h.scheme, h.host, h.path) != (server_host.scheme, server_host.host, server_host.path)]
    out.append(server_host)
    return out


def registry_hosts(domain: str, opts: RegistryOptions) -> list[RegistryHost]:
    """The endpoints to try for `domain`, in order, with CLI TLS flags applied."""
    hosts_file = find_hosts_file(domain, opts.hosts_dirs)
    if hosts_file is not None:
        hosts = parse_hosts_toml(domain, hosts_file)
    else:
        host = registry_host(domain)
        hosts = [RegistryHost(host=host, scheme="http" if opts.plain_http else "https",
                              http_fallback=(not opts.plain_http and is_loopback_host(host)
                                             and not (opts.tlscacert or opts.tlscert)))]
    for h in hosts:
        if opts.plain_http:
            h.scheme = "http"
        if opts.skip_verify:
            h.skip_verify = True
        h.ca = h.ca + list(opts.tlscacert)
        if opts.tlscert:
            h.client_certs = h.client_certs + [(opts.tlscert, opts.tlskey)]
    return hosts
