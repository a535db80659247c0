"""Client: one namespace's view of a ctrpy root, wiring the stores together (like containerd's client).

Every store is created on first use and imported lazily, so a command pays only for what it touches:
`images ls` never imports the registry client, `run` never imports pyroute2.
"""

from __future__ import annotations

import os
from functools import cached_property  # functools comes with threading and sqlite3 anyway

from ctrpy.runtime import errors
from ctrpy.runtime.config import Config, default_config

# No typing or pathlib at run time: the listings' fast path (commands/_root.py) builds a Client, and those
# two cost more than an empty `images ls` does (issue 17). `root` and `state` become Paths on first use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from ctrpy.runtime.content import Store as ContentStore
    from ctrpy.runtime.metadata import DB
    from ctrpy.runtime.metadata.containers import ContainerStore
    from ctrpy.runtime.metadata.events import EventStore
    from ctrpy.runtime.metadata.images import ImageStore
    from ctrpy.runtime.metadata.leases import LeaseManager
    from ctrpy.runtime.metadata.namespaces import NamespaceStore
    from ctrpy.runtime.snapshots import Snapshotter
    from ctrpy.runtime.tasks import TaskManager


def require_root(what: str = "this command") -> None:
    """Fail with one clear line when not running as root."""
    if os.geteuid() != 0:
        raise errors.PermissionDenied(f"{what} must be run as root (try sudo)")


class Client:
    """Entry point to ctrpy's runtime for one namespace."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        state: str | os.PathLike[str] | None = None,
        namespace: str = "default",
        config: Config | None = None,
    ) -> None:
        from ctrpy.runtime.metadata import validate_namespace

        self.config = config or default_config()
        self._root = os.fspath(root or self.config["root"])
        self._state = os.fspath(state or self.config["state"])
        self.namespace = validate_namespace(namespace)

    @cached_property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @cached_property
    def state(self) -> Path:
        from pathlib import Path

        return Path(self._state)

    @cached_property
    def db(self) -> DB:
        from ctrpy.runtime.metadata import DB

        return DB(self._root)

    def with_namespace(self, namespace: str) -> Client:
        """A client on the same root for another namespace, sharing the database connection."""
        other = Client(self._root, self._state, namespace, self.config)
        other.__dict__["db"] = self.db
        return other

    # Stores are attached by their modules; see each property's import for the owning module.

    @cached_property
    def namespaces(self) -> NamespaceStore:
        from ctrpy.runtime.metadata.namespaces import NamespaceStore

        return NamespaceStore(self.db)

    @cached_property
    def content(self) -> ContentStore:
        from ctrpy.runtime import plugins

        store: ContentStore = plugins.init(plugins.PluginType.CONTENT, "local", self.root, self.state, self.config, self)
        return store

    @cached_property
    def images(self) -> ImageStore:
        from ctrpy.runtime.metadata.images import ImageStore

        return ImageStore(self.db, self.namespace)

    @cached_property
    def containers(self) -> ContainerStore:
        from ctrpy.runtime.metadata.containers import ContainerStore

        return ContainerStore(self.db, self.namespace)

    @cached_property
    def leases(self) -> LeaseManager:
        from ctrpy.runtime.metadata.leases import LeaseManager

        return LeaseManager(self.db, self.namespace)

    @cached_property
    def events(self) -> EventStore:
        from ctrpy.runtime.metadata.events import EventStore

        return EventStore(self.db, self.namespace)

    @cached_property
    def tasks(self) -> TaskManager:
        from ctrpy.runtime.tasks import TaskManager

        return TaskManager(self)

    def snapshotter(self, name: str | None = None) -> Snapshotter:
        """The namespaced snapshotter `name` (default from config), a plugin from ctrpy.runtime.plugins."""
        from ctrpy.runtime.snapshots import open_snapshotter

        return open_snapshotter(self, name or self.config["default_snapshotter"])
