"""ctrpy's TOML configuration, shaped like containerd's config.toml.

`DEFAULTS` is the whole schema: every key, its default and (by the default's type) its type. A user's file
is merged over it; a value of the wrong type is an error naming the key and its line, an unknown key is a
warning (so a config written for a newer ctrpy still loads). Sections under `plugins` are open: plugins
may take keys this file does not know.
"""

from __future__ import annotations

import os

from ctrpy.runtime import errors
from ctrpy.paths import DEFAULT_ROOT, DEFAULT_STATE

# Every command loads the configuration, `images ls` on an empty store too: this module imports no typing,
# dataclasses, copy, re or pathlib at run time (issue 17's start-up budget; tests/test_startup.py checks).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULTS: dict[str, Any] = {
    "version": 1,
    "root": DEFAULT_ROOT,
    "state": DEFAULT_STATE,
    "default_snapshotter": "overlayfs",
    "default_runtime": "ctrpy",
    "registry": {
        # Directories holding <host>/hosts.toml, searched in order (containerd's certs.d layout).
        "config_path": "/etc/ctrpy/certs.d:/etc/containerd/certs.d",
        "max_concurrent_downloads": 3,
        "max_concurrent_uploads": 3,
        # A transfer that moves no byte for this many seconds fails instead of hanging.
        "progress_timeout": 60,
        # Overall pull deadline in seconds; 0 means none.
        "deadline": 0,
    },
    "cgroup": {
        # Parent of every task cgroup (like containerd's cgroup_parent / runc's cgroupsPath prefix).
        "parent": "ctrpy",
    },
    "runtimes": {
        "ctrpy": {"type": "builtin"},
        "runc": {"type": "oci", "binary": "runc", "root": ""},
        "crun": {"type": "oci", "binary": "crun", "root": ""},
    },
    "network": {
        "default": "bridge",
        "bridge": "ctrpy0",
        "subnet": "10.4.0.0/24",
        "mtu": 1500,
        "cni_conf_dir": "",
        "cni_bin_dir": "/usr/lib/cni",
    },
    "cri": {
        # `ctrpy serve` (ctrpy/cri): where it listens, and how it runs pods.
        "address": "unix:///run/ctrpy/ctrpy.sock",
        # "" keeps a pod's namespaces with the helper's built-in pause process (no image pull).
        "sandbox_image": "",
        "restrict_oom_score_adj": True,
        "runtime": "",  # "" means default_runtime
        "snapshotter": "",  # "" means default_snapshotter
        "cni_conf_dir": "/etc/cni/net.d",
        "cni_bin_dir": "/usr/lib/cni",
        # The streaming server for exec/attach/port-forward URLs (port 0: any free port).
        "stream_address": "127.0.0.1",
        "stream_port": 0,
    },
    "plugins": {
        "snapshotter": {
            "overlayfs": {},
            "native": {},
        },
    },
}

# Tables whose keys are free-form (plugin options, user-named runtimes).
_OPEN_TABLES = {("plugins",), ("runtimes",)}

# Numeric keys with a valid range: (lowest, highest, lowest excluded). A value outside is an error naming the
# key and its line, not an `internal error` later.
_RANGES: dict[tuple[str, ...], tuple[float | None, float | None, bool]] = {
    ("registry", "max_concurrent_downloads"): (1, 1024, False),
    ("registry", "max_concurrent_uploads"): (1, 1024, False),
    ("registry", "progress_timeout"): (0, None, True),
    ("registry", "deadline"): (0, None, False),
    ("network", "mtu"): (68, 65535, False),    # 68: the IPv4 minimum (RFC 791)
}
# Keys whose integer default also takes a fraction (seconds).
_SECONDS = {("registry", "progress_timeout"), ("registry", "deadline")}
# A [runtimes.NAME] table: the keys a runtime takes and their types.
_RUNTIME_KEYS: dict[str, type] = {"type": str, "binary": str, "root": str, "options": dict, "path": str}
_RUNTIME_TYPES = ("builtin", "oci")


def _check_range(here: tuple[str, ...], value: Any, text: str, source: str) -> None:
    limits = _RANGES.get(here)
    if limits is None:
        return
    low, high, exclusive = limits
    name = ".".join(here)
    if low is not None and (value <= low if exclusive else value < low):
        bound = f"greater than {low:g}" if exclusive else f"at least {low:g}"
        raise errors.InvalidArgument(f"{_location(text, here, source)}: {name} must be {bound}, not {value!r}")
    if high is not None and value > high:
        raise errors.InvalidArgument(f"{_location(text, here, source)}: {name} must be at most {high:g}, "
                                     f"not {value!r}")


def _location(text: str, here: tuple[str, ...], source: str) -> str:
    """`file:line` of a key for a message (`file` when the line is not found): searched only when a message
    needs it, since the search compiles regular expressions."""
    where = _line_of(text, here)
    return f"{source}:{where}" if where else source


def _check_runtime(name: str, table: Any, text: str, source: str) -> None:
    here = ("runtimes", name)
    where = _line_of(text, here) or _header_line(text, here)
    location = f"{source}:{where}" if where else source
    if not isinstance(table, dict):
        raise errors.InvalidArgument(f"{location}: runtimes.{name} must be a table, not {_type_name(table)}")
    for key, value in table.items():
        line = _line_of(text, here + (key,))
        at = f"{source}:{line}" if line else location
        wanted = _RUNTIME_KEYS.get(key)
        if wanted is not None and not isinstance(value, wanted):
            raise errors.InvalidArgument(
                f"{at}: runtimes.{name}.{key} must be {_type_name(wanted())}, not {_type_name(value)} ({value!r})")
    kind = table.get("type", "oci")
    if kind not in _RUNTIME_TYPES:
        line = _line_of(text, here + ("type",))
        at = f"{source}:{line}" if line else location
        raise errors.InvalidArgument(f"{at}: runtimes.{name}.type must be one of {', '.join(_RUNTIME_TYPES)}, "
                                     f"not {kind!r}")


def _header_line(text: str, path: tuple[str, ...]) -> int | None:
    import re

    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[+([^\]]+)\]+", line)
        if header and tuple(p.strip().strip('"').strip("'") for p in header.group(1).split(".")) == path:
            return number
    return None


class Config:
    """The effective configuration: defaults merged with the user's file."""

    __slots__ = ("data", "path", "warnings")

    def __init__(self, data: dict[str, Any], path: str | None = None, warnings: list[str] | None = None) -> None:
        self.data = data
        self.path = path
        self.warnings: list[str] = [] if warnings is None else warnings

    def __repr__(self) -> str:
        return f"Config(data={self.data!r}, path={self.path!r}, warnings={self.warnings!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (self.data, self.path, self.warnings) == (other.data, other.path, other.warnings)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _copy(node: dict[str, Any]) -> dict[str, Any]:
    # copy.deepcopy for the schema's values (tables and immutable scalars), without importing copy.
    return {key: _copy(value) if isinstance(value, dict) else value for key, value in node.items()}


def default_config() -> Config:
    return Config(_copy(DEFAULTS))


def _line_of(text: str, path: tuple[str, ...]) -> int | None:
    """Best-effort line number of a key: TOML parsers do not report positions, so search the text."""
    import re

    key = path[-1]
    table = path[:-1]
    in_table = not table
    key_re = re.compile(rf"^\s*(?:\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*=")
    dotted_re = re.compile(rf"^\s*{re.escape('.'.join(path))}\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[+([^\]]+)\]+", line)
        if header:
            parts = tuple(p.strip().strip('"').strip("'") for p in header.group(1).split("."))
            in_table = parts == table
            continue
        if (in_table and key_re.match(line)) or dotted_re.match(line):
            return number
    return None


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table", list: "array"}.get(
        type(value), type(value).__name__
    )


def _merge(
    base: dict[str, Any], user: dict[str, Any], path: tuple[str, ...], text: str, source: str, warnings: list[str]
) -> None:
    for key, value in user.items():
        here = path + (key,)
        if path == ("runtimes",):
            _check_runtime(key, value, text, source)
        if key not in base:
            if path[:1] in _OPEN_TABLES or path in _OPEN_TABLES:
                base[key] = value
            else:
                warnings.append(f"{_location(text, here, source)}: unknown key {'.'.join(here)!r} ignored")
            continue
        expected = base[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise errors.InvalidArgument(
                    f"{_location(text, here, source)}: {'.'.join(here)} must be a table, not {_type_name(value)}"
                )
            _merge(expected, value, here, text, source, warnings)
            continue
        ok = isinstance(value, type(expected)) and not (isinstance(value, bool) and not isinstance(expected, bool))
        if isinstance(expected, float) and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if here in _SECONDS and isinstance(value, float):
            ok = value == value and value not in (float("inf"), float("-inf"))
        if not ok:
            expected_name = "a number of seconds" if here in _SECONDS else _type_name(expected)
            raise errors.InvalidArgument(
                f"{_location(text, here, source)}: {'.'.join(here)} must be {expected_name}, not {_type_name(value)} ({value!r})"
            )
        _check_range(here, value, text, source)
        base[key] = value


def load_config(path: str | None, *, required: bool = False) -> Config:
    """Load `path` over the defaults. A missing file is fine unless `required` (the user named it)."""
    config = default_config()
    if path is None:
        return config
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if required:
            raise errors.NotFound(f"config file {path} does not exist") from None
        return config
    except OSError as exc:
        raise errors.from_oserror(exc, "cannot read config file") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise errors.InvalidArgument(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                                     f"{exc.start}); TOML files must be UTF-8") from None
    user = _cached(path, raw)
    if user is None:
        import tomllib as tomli  # tomli's code in the standard library since Python 3.11

        try:
            user = tomli.loads(text)
        except tomli.TOMLDecodeError as exc:
            raise errors.InvalidArgument(f"{path}: invalid TOML: {exc}") from None
        _cache(path, raw, user)
    config.path = path
    _merge(config.data, user, (), text, path, config.warnings)
    if config.data["version"] != 1:
        raise errors.InvalidArgument(f"{path}: unsupported config version {config.data['version']} (expected 1)")
    return config


# The last config file parsed, as (CACHE_FORMAT, path, its bytes, what tomllib made of them), in marshal's
# format: tomllib's import (typing, re, string, datetime) is ~8 ms, a third of a listing's start-up with a
# config file (issue 17). Used only for the same path with byte-identical contents; one entry, root's only.
CACHE_PATH = os.path.join(DEFAULT_STATE, "config.cache")
CACHE_FORMAT = "ctrpy-config-cache-1"


def _cached(path: str, raw: bytes) -> dict[str, Any] | None:
    import marshal

    try:
        fd = os.open(CACHE_PATH, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # not written by us: never trust it
        with os.fdopen(fd, "rb", closefd=False) as f:
            entry = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(fd)
    if isinstance(entry, tuple) and len(entry) == 4 and entry[:3] == (CACHE_FORMAT, path, raw) \
            and isinstance(entry[3], dict):
        return entry[3]
    return None


def _cache(path: str, raw: bytes, user: dict[str, Any]) -> None:
    import marshal

    try:
        data = marshal.dumps((CACHE_FORMAT, path, raw, user))
    except ValueError:
        return  # a value marshal cannot write (a TOML date): parse again next time
    tmp = f"{CACHE_PATH}.{os.getpid()}"
    try:
        os.makedirs(DEFAULT_STATE, mode=0o711, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, CACHE_PATH)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def to_toml(data: dict[str, Any]) -> str:
    """Render a config as TOML (plain tables; enough for the value types the schema uses)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'

    def key_text(key: str) -> str:
        import re

        return key if re.match(r"^[A-Za-z0-9_-]+$", key) else scalar(key)

    def table(node: dict[str, Any], path: tuple[str, ...]) -> None:
        plain = [(k, v) for k, v in node.items() if not isinstance(v, dict)]
        nested = [(k, v) for k, v in node.items() if isinstance(v, dict)]
        if path and (plain or not nested):
            lines.append("")
            lines.append("[" + ".".join(key_text(p) for p in path) + "]")
        for key, value in plain:
            lines.append(f"{key_text(key)} = {scalar(value)}")
        for key, value in nested:
            table(value, path + (key,))

    table(data, ())
    return "\n".join(lines).lstrip("\n") + "\n"
