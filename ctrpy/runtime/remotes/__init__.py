"""Talking to OCI/Docker registries (distribution API v2), like containerd's core/remotes.

    hosts.py      which hosts serve a registry name: containerd's hosts.toml (mirrors, capabilities, TLS),
                  CLI flags (--plain-http, --skip-verify, --tlscacert/--tlscert/--tlskey)
    auth.py       credentials (--user, docker config.json `auths`, credential helpers) and the 401 challenge
                  flow (bearer tokens with per-repository scope, or basic)
    docker.py     the HTTP client over httpx: resolve (HEAD/GET manifests), fetch (streaming, Range resume),
                  push (HEAD, cross-repo mount, upload, manifests), one keep-alive connection pool per host

httpx is imported only by docker.py, and only when a registry is contacted: `images ls` and `run` never pay
for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PULL = "pull"
RESOLVE = "resolve"
PUSH = "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})


@dataclass
class RegistryOptions:
    """Per-invocation registry settings (CLI flags and config), applied on top of hosts.toml."""

    plain_http: bool = False
    skip_verify: bool = False
    tlscacert: list[str] = field(default_factory=list)
    tlscert: str | None = None
    tlskey: str | None = None
    hosts_dirs: list[str] = field(default_factory=list)
    user: str | None = None                  # "user[:password]" from --user
    docker_config: str | None = None         # directory holding config.json (DOCKER_CONFIG)
    progress_timeout: float = 60.0           # seconds without a byte before a transfer fails
    connect_timeout: float = 30.0
    max_concurrent: int = 3


def registry_options(config: Any, *, uploads: bool = False, **flags: Any) -> RegistryOptions:
    """RegistryOptions from the config's [registry] section (config.DEFAULTS where it has no value), with the
    command line's `flags` on top: a flag counts when given (not None, not an empty list). `uploads` picks
    max_concurrent_uploads instead of max_concurrent_downloads."""
    from ctrpy.runtime.config import DEFAULTS

    def setting(key: str) -> Any:
        value = config.get(f"registry.{key}") if config is not None else None
        return DEFAULTS["registry"][key] if value is None else value

    opts = RegistryOptions(
        hosts_dirs=[p for p in str(setting("config_path")).split(":") if p],
        progress_timeout=float(setting("progress_timeout")),
        max_concurrent=int(setting("max_concurrent_uploads" if uploads else "max_concurrent_downloads")),
    )
    for key, value in flags.items():
        if not hasattr(opts, key):
            raise TypeError(f"RegistryOptions has no field {key!r}")
        if value is not None and value != [] and value != ():
            setattr(opts, key, list(value) if isinstance(value, tuple) else value)
    return opts


def pull_deadline(config: Any) -> float:
    """registry.deadline: seconds for a whole pull, 0 for none."""
    from ctrpy.runtime.config import DEFAULTS

    value = config.get("registry.deadline") if config is not None else None
    return float(DEFAULTS["registry"]["deadline"] if value is None else value or 0)


@dataclass
class RegistryHost:
    """One endpoint that can serve a registry name: the server itself or a mirror."""

    host: str                                     # host[:port] as used in URLs
    scheme: str = "https"
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca: list[str] = field(default_factory=list)
    client_certs: list[tuple[str, str | None]] = field(default_factory=list)
    skip_verify: bool = False
    skip_verify_set: bool = False                 # hosts.toml said skip_verify either way: --skip-verify yields
    default_scheme: bool = False                  # no URL gave the scheme: --plain-http may change it
    headers: dict[str, str] = field(default_factory=dict)
    # Loopback registries without configuration: try HTTPS, fall back to HTTP when the server does not
    # speak TLS at all (containerd 2's HTTPFallback). A certificate error never falls back.
    http_fallback: bool = False
    mirror: bool = False

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def can(self, capability: str) -> bool:
        return capability in self.capabilities
