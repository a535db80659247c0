"""Snapshotters: layered file systems for images and containers, shaped like containerd's core/snapshots.

A snapshot is a directory tree identified by a key. There are three kinds:

    ACTIVE     writable; created by prepare(key, parent); can be mounted and changed, then committed
    VIEW       read-only; created by view(key, parent); can be mounted, never committed
    COMMITTED  immutable; created by commit(name, key) from an active snapshot; the only kind that can be
               a parent. It cannot be mounted itself: prepare or view on top of it instead.

Lifecycle while unpacking an image (ctrpy.runtime.unpack):

    mounts = sn.prepare("extract-<random> <chainID>", parent=<chainID of the layers below>)
    mount_all(mounts, tmp); apply the layer tar onto tmp; unmount_all(tmp)
    sn.commit(<chainID>, "extract-<random> <chainID>")        # the active snapshot is gone, the name stays

and for a container:

    mounts = sn.prepare(container_id, parent=<top chainID of the image>)   # the container's rootfs
    ...                                                                    # the task mounts `mounts`
    sn.remove(container_id)

Mounts are returned as data (ctrpy.runtime.mount.Mount) and mounted only by whoever needs them.
Removing a snapshot that still has children, or that a container uses as its root, is refused.

Two layers make a snapshotter here, as in containerd:
- the backend (overlay.py, native.py) only manages directories ROOT/snapshots/<name>/snapshots/<id>/ and
  knows nothing about namespaces, keys or labels;
- ctrpy.runtime.metadata.snapshots keeps keys, parents, kinds and labels per namespace in the `snapshots` table and maps them
  to backend ids (`backend_snapshots`). A committed snapshot with the same name and parent in several
  namespaces shares one backend directory, which is removed when its last namespace lets go of it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.snapshots.backend import Backend
    from ctrpy.runtime.mount import Mount

__all__ = ["Info", "Kind", "Snapshotter", "Usage", "open_backend", "open_snapshotter"]


class Kind(str, Enum):
    """The kind of a snapshot."""

    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Info:
    """What is known about a snapshot: kind, name (its key), parent, labels, timestamps (RFC 3339)."""

    kind: Kind
    name: str
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "name": self.name,
            "parent": self.parent,
            "labels": dict(self.labels),
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Usage:
    """Disk used by one snapshot's own layer: inodes and bytes (allocated blocks, like du)."""

    inodes: int = 0
    size: int = 0


class Snapshotter(Protocol):
    """The snapshotter interface, containerd's names in snake_case."""

    name: str

    def stat(self, key: str) -> Info: ...

    def update(self, info: Info, *fieldpaths: str) -> Info: ...

    def usage(self, key: str) -> Usage: ...

    def mounts(self, key: str) -> list[Mount]: ...

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]: ...

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]: ...

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None: ...

    def remove(self, key: str) -> None: ...

    def walk(self, fn: Callable[[Info], None], *filters: str) -> None: ...

    def list(self, *filters: str) -> builtins.list[Info]: ...

    def share(self, name: str, parent: str = "", labels: dict[str, str] | None = None) -> bool:
        """Make committed snapshot `name` (on `parent`) that another namespace already unpacked visible in
        this one, without unpacking it again; False when there is none to share."""
        ...

    def close(self) -> None: ...


def open_backend(name: str, root: Any, state: Any = "", config: Any = None,
                 client: Client | None = None) -> Backend:
    """The backend of snapshotter `name` (directories only), from the plugin registry
    (ctrpy.runtime.snapshots.plugin registers the built-in ones; packages add theirs by entry point)."""
    from ctrpy.runtime import plugins

    backend: Backend = plugins.init(plugins.PluginType.SNAPSHOTTER, name, root, state, config, client)
    return backend


def open_snapshotter(client: Client, name: str) -> Snapshotter:
    """The snapshotter `name` for the client's namespace (metadata wrapper over the backend)."""
    backend = open_backend(name, client.root, client.state, client.config, client)
    from ctrpy.runtime.metadata.snapshots import MetadataSnapshotter

    return MetadataSnapshotter(client.db, client.namespace, name, backend)
