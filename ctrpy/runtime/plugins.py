"""The plugin registry: snapshotters, runtimes, network drivers, content stores and CRI services by (type, ID).

Shaped like containerd's `plugin.Register`: each implementation registers a `Registration` with a type, an ID,
the config section it reads and an init function, in a small per-area `plugin.py` beside it:

    ctrpy.runtime.content.plugin     content        local
    ctrpy.runtime.snapshots.plugin   snapshotter    native, overlayfs
    ctrpy.runtime.runtimes_plugin    runtime        builtin, oci      ([runtimes.X] type = "<ID>")
    ctrpy.runtime.network.plugin     network        bridge, cni, host, none

Third-party packages add theirs through the entry point group `ctrpy.plugins`: the entry point names a
module that calls `register()` when imported, or a callable returning a Registration (or a list of them).

    [project.entry-points."ctrpy.plugins"]
    zfs = "ctrpy_zfs.plugin"

Everything is lazy because ctrpy has no daemon and `run` pays for each import: the built-in registrations of a
type are imported the first time that type is looked up, an init function imports its implementation only
when called, and entry points (a scan of every installed distribution) are read only when an unknown ID is
asked for or when everything is listed (`ctrpy plugins ls`). An init function raises `SkipPlugin` when the
plugin cannot work on this host (containerd's ErrSkipPlugin); any other error marks it failed.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

__all__ = [
    "ENTRY_POINT_GROUP",
    "InitContext",
    "PluginType",
    "Registration",
    "SkipPlugin",
    "Status",
    "get",
    "init",
    "list_plugins",
    "register",
    "registrations",
]

ENTRY_POINT_GROUP = "ctrpy.plugins"


class PluginType(str, Enum):
    """Plugin types; containerd's type strings where containerd has the same kind of plugin."""

    CONTENT = "io.containerd.content.v1"
    SNAPSHOTTER = "io.containerd.snapshotter.v1"
    RUNTIME = "io.containerd.runtime.v2"
    NETWORK = "io.ctrpy.network.v1"
    CRI = "io.containerd.grpc.v1"

    def __str__(self) -> str:
        return self.value


class SkipPlugin(Exception):
    """Raised by an init function when the plugin does not apply to this host (status "skip", not "error")."""


@dataclass(frozen=True)
class InitContext:
    """What an init function gets: where the plugin keeps its data and its own config section."""

    type: PluginType
    id: str
    root: Path  # the plugin's own directory under the ctrpy root (see DIRECTORIES); created only when used
    state: Path  # the ctrpy state directory (tmpfs)
    config: dict[str, Any] = field(default_factory=dict)
    client: Client | None = None  # the Client, for plugins that wrap other stores (None when only probing)
    name: str = ""  # the configured instance, where one plugin serves several ([runtimes.<name>])
    probe: bool = False  # only listing (`plugins ls`): check the host, build nothing that lasts


@dataclass(frozen=True)
class Registration:
    """One plugin: `init(ic)` returns the plugin object (a snapshot backend, a runtime, a network driver...).

    `config` is the dotted config section the plugin reads (handed to init as `ic.config`); `requires` lists
    plugin types it uses; `platforms` the OS/arch it supports (shown by `plugins ls`).
    """

    type: PluginType
    id: str
    init: Callable[[InitContext], Any]
    config: str = ""
    requires: tuple[PluginType, ...] = ()
    platforms: tuple[str, ...] = ()  # empty: the host's platform (ctrpy's plugins run where ctrpy runs)
    description: str = ""

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


@dataclass(frozen=True)
class Status:
    """A registration and the outcome of initialising it on this host: "ok", "skip" or "error"."""

    type: str
    id: str
    platforms: tuple[str, ...]
    status: str
    error: str = ""
    source: str = "builtin"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "platforms": list(self.platforms), "status": self.status,
                "error": self.error, "source": self.source}


# Which module holds the built-in registrations of each type (containerd's cmd/containerd/builtins).
BUILTINS: dict[PluginType, str] = {
    PluginType.CONTENT: "ctrpy.runtime.content.plugin",
    PluginType.SNAPSHOTTER: "ctrpy.runtime.snapshots.plugin",
    PluginType.RUNTIME: "ctrpy.runtime.runtimes_plugin",
    PluginType.NETWORK: "ctrpy.runtime.network.plugin",
}

# Where each type's plugins keep data below the ctrpy root (the layout ctrpy has always used).
DIRECTORIES: dict[PluginType, str] = {
    PluginType.CONTENT: "content",
    PluginType.SNAPSHOTTER: "snapshots/{id}",
    PluginType.RUNTIME: "",
    PluginType.NETWORK: "",
    PluginType.CRI: "cri",
}

_registry: dict[tuple[PluginType, str], Registration] = {}
_sources: dict[tuple[PluginType, str], str] = {}
_loaded_types: set[PluginType] = set()
# Entry points are scanned at most once per process; failures are kept to be shown by `plugins ls`.
_entry_points_loaded = False
_entry_point_errors: dict[str, str] = {}
_current_source = "builtin"
# Pull and unpack run threads: a type's built-ins are loaded (and entry points scanned) once, under this lock.
_lock = threading.RLock()


def register(registration: Registration) -> Registration:
    """Add a plugin. A second registration of the same (type, ID) is refused, as in containerd."""
    key = (PluginType(registration.type), registration.id)
    if not registration.id or "/" in registration.id or registration.id.strip() != registration.id:
        raise errors.InvalidArgument(f"plugin ID {registration.id!r} is not valid")
    if key in _registry:
        raise errors.AlreadyExists(f"plugin {registration.uri} is already registered")
    _registry[key] = registration
    _sources[key] = _current_source
    return registration


def _load_builtins(kind: PluginType) -> None:
    if kind in _loaded_types:
        return
    with _lock:
        if kind in _loaded_types:
            return
        module = BUILTINS.get(kind)
        if module:
            importlib.import_module(module)
        _loaded_types.add(kind)


def load_entry_points() -> None:
    """Import every `ctrpy.plugins` entry point once; a failing one is recorded, never raised."""
    if _entry_points_loaded:
        return
    with _lock:
        if not _entry_points_loaded:
            _load_entry_points()


def _load_entry_points() -> None:
    global _entry_points_loaded, _current_source
    if os.environ.get("CTRPY_NO_PLUGINS", "") not in ("", "0"):
        _entry_points_loaded = True
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _current_source = ep.dist.name if ep.dist is not None else ep.value
        try:
            loaded = ep.load()
            if isinstance(loaded, Registration):
                register(loaded)
            elif callable(loaded) and not isinstance(loaded, type):
                result = loaded()
                items: Iterable[Any] = [result] if isinstance(result, Registration) else (result or [])
                for item in items:
                    register(item)
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break ctrpy
            _entry_point_errors[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
        finally:
            _current_source = "builtin"
    _entry_points_loaded = True


def registrations(kind: PluginType | None = None, *, entry_points: bool = True) -> list[Registration]:
    """Registrations of one type (or all), built-ins first, then by ID."""
    kinds = [kind] if kind is not None else list(PluginType)
    for k in kinds:
        _load_builtins(k)
    if entry_points:
        load_entry_points()
    return sorted((r for r in _registry.values() if kind is None or r.type == kind),
                  key=lambda r: (list(PluginType).index(r.type), _sources[(r.type, r.id)] != "builtin", r.id))


def ids(kind: PluginType, *, entry_points: bool = True) -> list[str]:
    return sorted(r.id for r in registrations(kind, entry_points=entry_points))


def get(kind: PluginType, plugin_id: str) -> Registration:
    """The registration (kind, plugin_id); entry points are consulted only for an ID the built-ins lack."""
    _load_builtins(kind)
    found = _registry.get((kind, plugin_id))
    if found is None:
        load_entry_points()
        found = _registry.get((kind, plugin_id))
    if found is None:
        label = kind.name.lower().replace("_", " ")
        known = ", ".join(ids(kind)) or "none"
        raise errors.InvalidArgument(f"unknown {label} {plugin_id!r}: available {label}s are {known}")
    return found


def context(registration: Registration, root: str | os.PathLike[str], state: str | os.PathLike[str],
            config: Any = None, client: Client | None = None, section: dict[str, Any] | None = None,
            name: str = "", probe: bool = False) -> InitContext:
    """The InitContext of a registration under a ctrpy root, with its config section read from `config`."""
    if section is None:
        section = {}
        if config is not None and registration.config:
            section = dict(config.get(registration.config, {}) or {})
    sub = DIRECTORIES.get(registration.type, "").format(id=registration.id)
    # Absolute: mounts may run with another working directory (see ctrpy.runtime.mount).
    directory = Path(root).absolute() / sub if sub else Path(root).absolute()
    return InitContext(registration.type, registration.id, directory, Path(state), section, client,
                       name or registration.id, probe)


def init(kind: PluginType, plugin_id: str, root: str | os.PathLike[str], state: str | os.PathLike[str],
         config: Any = None, client: Client | None = None, section: dict[str, Any] | None = None, name: str = "") -> Any:
    """Look up and initialise a plugin. SkipPlugin becomes FailedPrecondition for a caller that asked for it."""
    registration = get(kind, plugin_id)
    try:
        return registration.init(context(registration, root, state, config, client, section, name))
    except SkipPlugin as exc:
        raise errors.FailedPrecondition(f"{kind.name.lower()} {plugin_id!r} is not available here: {exc}") from None


def list_plugins(root: str | os.PathLike[str], state: str | os.PathLike[str], config: Any = None) -> list[Status]:
    """Every plugin with the outcome of initialising it (nothing is written: init functions only probe)."""
    from ctrpy.runtime.platforms import format_platform, host

    here = (format_platform(host()),)
    out: list[Status] = []
    for reg in registrations():
        source = _sources[(reg.type, reg.id)]
        reg = reg if reg.platforms else replace(reg, platforms=here)
        try:
            obj = reg.init(context(reg, root, state, config, probe=True))
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        except SkipPlugin as exc:
            out.append(Status(str(reg.type), reg.id, reg.platforms, "skip", str(exc), source))
            continue
        except Exception as exc:  # noqa: BLE001 - reported as the plugin's status, like ctr plugins ls
            out.append(Status(str(reg.type), reg.id, reg.platforms, "error", str(exc) or type(exc).__name__,
                              source))
            continue
        out.append(Status(str(reg.type), reg.id, reg.platforms, "ok", "", source))
    for name, message in sorted(_entry_point_errors.items()):
        out.append(Status(ENTRY_POINT_GROUP, name, (), "error", message, "entry point"))
    return out
